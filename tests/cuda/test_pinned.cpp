// Host staging memory for GPU copies is page-locked: Buffer::pinned_host on a GPU context (what the
// MPI backend stages GPU tensors through), and ordinary memory on a CPU context.
#include "core/device_api.h"
#include "support/test_support.h"
#include "tessera/buffer.h"

using namespace tessera;

TEST_CASE("pinned host buffers are page-locked on a GPU context", "[cuda][pinned]") {
  TESSERA_REQUIRE_GPU(gpu);
  Buffer pinned = Buffer::pinned_host(*gpu, size_t(1) << 20);
  CHECK(pinned.pinned());
  CHECK(pinned.device() == Device::cpu);
  CHECK(detail::cuda_host_pinned(pinned.data()));
  Buffer plain(*gpu, 4096, Device::cpu);
  CHECK_FALSE(plain.pinned());
  CHECK_FALSE(detail::cuda_host_pinned(plain.data()));
  // Copies through it round-trip.
  auto values = test::random_uniform(1000, 3);
  auto device = test::upload(*gpu, values, {1000});
  Tensor host(pinned.data(), {1000}, DType::f32, Device::cpu);
  copy_tensor(*gpu, host, device.tensor);
  CHECK(test::bitwise_equal(std::vector<float>(host.ptr<float>(), host.ptr<float>() + 1000), values));
}

TEST_CASE("pinned host buffers are ordinary memory on a CPU context", "[core][pinned]") {
  Buffer b = Buffer::pinned_host(test::cpu_context(), 4096);
  CHECK_FALSE(b.pinned());
  CHECK(b.data() != nullptr);
}
