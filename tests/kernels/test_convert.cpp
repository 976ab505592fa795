// convert and scale on the CPU against independent bit-level references: f32 <-> bf16 round to
// nearest even (ties both ways), and bf16 scaling through the kernel itself (the ops against the
// registry's maths and on every backend: src/kernels/registry/convert.cpp).
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"
#include "tessera/dtype.h"

using namespace tessera;

namespace {

// Independent round-to-nearest-even reference, by bit manipulation on the float64 value.
uint16_t reference_bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t lower = u & 0xffffu;
  uint32_t upper = u >> 16;
  if (lower > 0x8000u || (lower == 0x8000u && (upper & 1u))) upper += 1;
  return uint16_t(upper);
}

}  // namespace

TEST_CASE("convert: f32 to bf16 rounds to nearest even and back is exact", "[kernels][convert]") {
  Context& ctx = test::cpu_context();
  std::vector<float> host = test::random_normal(1001, 11, 3.0f);
  // Ties: exactly half way between two bf16 values, with even and odd upper halves.
  uint32_t tie_even = 0x3f808000u, tie_odd = 0x3f818000u;
  std::memcpy(&host[0], &tie_even, 4);
  std::memcpy(&host[1], &tie_odd, 4);
  auto src = test::upload(ctx, host, {1001});
  auto dst = test::poisoned(ctx, {1001}, DType::bf16);
  ops::convert(ctx, dst.tensor, src.tensor);
  const bf16* out = dst.tensor.ptr<bf16>();
  for (size_t i = 0; i < host.size(); ++i) REQUIRE(out[i].bits == reference_bf16_bits(host[i]));
  CHECK(out[0].bits == 0x3f80u);
  CHECK(out[1].bits == 0x3f82u);

  auto back = test::poisoned(ctx, {1001}, DType::f32);
  ops::convert(ctx, back.tensor, dst.tensor);
  const float* b = back.tensor.ptr<float>();
  for (size_t i = 0; i < host.size(); ++i) {
    uint32_t u;
    std::memcpy(&u, &b[i], 4);
    REQUIRE(u == uint32_t(out[i].bits) << 16);
    REQUIRE(std::fabs(b[i] - host[i]) <= std::fabs(host[i]) * (1.0f / 256.0f));
  }
  // bf16 -> f32 -> bf16 is the identity.
  auto again = test::poisoned(ctx, {1001}, DType::bf16);
  ops::convert(ctx, again.tensor, back.tensor);
  for (size_t i = 0; i < host.size(); ++i) REQUIRE(again.tensor.ptr<bf16>()[i].bits == out[i].bits);
}

TEST_CASE("scale: multiplies f32 in place, and bf16 with rounding", "[kernels][convert]") {
  Context& ctx = test::cpu_context();
  std::vector<float> host = test::random_uniform(513, 13);
  auto t = test::upload(ctx, host, {513});
  ops::scale(ctx, t.tensor, 0.37f);
  for (size_t i = 0; i < host.size(); ++i) REQUIRE(t.tensor.ptr<float>()[i] == host[i] * 0.37f);

  // bf16 activations are rejected on the CPU by dispatch, but the kernel handles them (the
  // optimizer's bf16 params live on the CPU in tests).
  auto h = test::upload(ctx, host, {513}, DType::bf16);
  std::vector<bf16> before(h.tensor.ptr<bf16>(), h.tensor.ptr<bf16>() + 513);
  cpu::scale(ctx, h.tensor, -2.5f);
  for (size_t i = 0; i < host.size(); ++i)
    REQUIRE(h.tensor.ptr<bf16>()[i].bits == float_to_bf16(bf16_to_float(before[i]) * -2.5f).bits);
}
