// convert and scale: CUDA against the CPU kernels, bit for bit (both round to nearest even).
#include <cstring>
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"
#include "tessera/dtype.h"

using namespace tessera;
using test::bitwise_equal;
using test::round_to_bf16;

TEST_CASE("convert: CUDA f32 <-> bf16 equals the CPU bit for bit", "[cuda][convert]") {
  TESSERA_REQUIRE_GPU(gpu);
  Context& cpu = test::cpu_context();
  const int64_t n = 100003;
  auto x = test::random_normal(size_t(n), 281, 10.0f);
  uint32_t tie = 0x3f818000u;  // half way between two bf16 values: rounds to even
  std::memcpy(&x[7], &tie, 4);
  for (int64_t offset : {int64_t(0), int64_t(1)}) {
    INFO("offset " << offset);
    const int64_t m = n - offset;
    auto c_src = test::upload(cpu, x, {n});
    auto g_src = test::upload(*gpu, x, {n});
    auto c_h = test::poisoned(cpu, {n}, DType::bf16);
    auto g_h = test::poisoned(*gpu, {n}, DType::bf16);
    ops::convert(cpu, c_h.tensor.flat_range(offset, m), c_src.tensor.flat_range(offset, m));
    ops::convert(*gpu, g_h.tensor.flat_range(offset, m), g_src.tensor.flat_range(offset, m));
    const auto want_h = test::download(cpu, c_h.tensor.flat_range(offset, m));
    CHECK(bitwise_equal(test::download(*gpu, g_h.tensor.flat_range(offset, m)), want_h));

    auto g_back = test::poisoned(*gpu, {n});
    ops::convert(*gpu, g_back.tensor.flat_range(offset, m), g_h.tensor.flat_range(offset, m));
    CHECK(bitwise_equal(test::download(*gpu, g_back.tensor.flat_range(offset, m)), want_h));

    auto g_copy = test::poisoned(*gpu, {n});
    ops::convert(*gpu, g_copy.tensor.flat_range(offset, m), g_src.tensor.flat_range(offset, m));
    CHECK(bitwise_equal(test::download(*gpu, g_copy.tensor.flat_range(offset, m)),
                        test::download(cpu, c_src.tensor.flat_range(offset, m))));
  }
}

TEST_CASE("scale: CUDA equals the CPU bit for bit, f32 and bf16", "[cuda][convert]") {
  TESSERA_REQUIRE_GPU(gpu);
  Context& cpu = test::cpu_context();
  const int64_t n = 100003;
  const auto x = test::random_normal(size_t(n), 282);
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (int64_t offset : {int64_t(0), int64_t(1)}) {
      INFO("dtype " << dtype_name(dtype) << " offset " << offset);
      const int64_t m = n - offset;
      auto c_t = test::upload(cpu, x, {n}, dtype);
      auto g_t = test::upload(*gpu, x, {n}, dtype);
      cpu::scale(cpu, c_t.tensor.flat_range(offset, m), 0.3f);  // the CPU kernel also takes bf16
      ops::scale(*gpu, g_t.tensor.flat_range(offset, m), 0.3f);
      CHECK(bitwise_equal(test::download(*gpu, g_t.tensor), test::download(cpu, c_t.tensor)));
    }
  }
}
