// CUDA attention (multi-head and grouped-query) against the CPU reference: float32 and bf16,
// through cuDNN's fused attention (the default GPU context) and through the plain kernels (a second
// context with use_cudnn_attention = false); poisoned outputs, odd sequence lengths, determinism.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"
#include "tessera/dtype.h"

using namespace tessera;
using test::bitwise_equal;
using test::round_to_bf16;

namespace {

// NKV key/value heads, each shared by NH/NKV query heads.
struct Shape {
  int64_t B, T, NH, NKV, HS;
  int64_t C() const { return NH * HS; }                // out channels
  int64_t row() const { return (NH + 2 * NKV) * HS; }  // qkv channels
};

struct AttentionResult {
  std::vector<float> out, stats, dqkv;
};

// Forward then backward on ctx, every output poisoned first.
AttentionResult run_attention(Context& ctx, const Shape& s, const std::vector<float>& qkv_host,
                              const std::vector<float>& dout_host, DType dtype) {
  const int64_t C = s.C();
  auto qkv = test::upload(ctx, qkv_host, {s.B, s.T, s.row()}, dtype);
  auto dout = test::upload(ctx, dout_host, {s.B, s.T, C}, dtype);
  auto out = test::poisoned(ctx, {s.B, s.T, C}, dtype);
  auto stats = test::poisoned(ctx, {s.B, s.NH, s.T});
  auto dqkv = test::poisoned(ctx, {s.B, s.T, s.row()}, dtype);
  ops::attention_forward(ctx, out.tensor, stats.tensor, qkv.tensor, int(s.NH), int(s.NKV));
  ops::attention_backward(ctx, dqkv.tensor, dout.tensor, qkv.tensor, out.tensor, stats.tensor, int(s.NH),
                          int(s.NKV));
  return {test::download(ctx, out.tensor), test::download(ctx, stats.tensor), test::download(ctx, dqkv.tensor)};
}

// The values a bf16 tensor holds, so that the CPU reference sees exactly the GPU's inputs.
// Largest |got - ref| / max(|ref|, floor_fraction * max|ref|): relative error, with small
// elements judged against a fraction of the largest one.
double scaled_error(const std::vector<float>& got, const std::vector<float>& ref, double floor_fraction) {
  double largest = 0.0;
  for (float x : ref) largest = std::max(largest, double(std::fabs(x)));
  return test::max_relative_error(got, ref, std::max(floor_fraction * largest, 1e-12));
}

Context& plain_gpu_context() {
  static Context ctx([] {
    ContextOptions o;
    o.device = DevicePreference::cuda;
    o.announce = false;
    o.use_cudnn_attention = false;
    return o;
  }());
  return ctx;
}

// Multi-head, grouped-query (cuDNN-eligible and not) and multi-query.
const Shape kShapes[] = {{2, 37, 3, 3, 64}, {1, 1024, 2, 2, 64}, {3, 1, 2, 2, 16}, {2, 17, 2, 2, 20},
                         {2, 45, 8, 2, 64}, {1, 33, 4, 1, 32}, {2, 9, 6, 3, 20}};

}  // namespace

TEST_CASE("attention: float32 CUDA matches the CPU reference", "[cuda][attention]") {
  TESSERA_REQUIRE_GPU(gpu);
  for (const Shape& s : kShapes) {
    CAPTURE(s.B, s.T, s.NH, s.NKV, s.HS);
    auto qkv = test::random_normal(size_t(s.B * s.T * s.row()), 101);
    auto dout = test::random_normal(size_t(s.B * s.T * s.C()), 102);
    auto ref = run_attention(test::cpu_context(), s, qkv, dout, DType::f32);
    auto got = run_attention(*gpu, s, qkv, dout, DType::f32);
    CHECK(scaled_error(got.out, ref.out, 0.1) < 1e-5);
    CHECK(scaled_error(got.stats, ref.stats, 0.1) < 1e-5);
    CHECK(scaled_error(got.dqkv, ref.dqkv, 0.1) < 1e-5);
  }
}

TEST_CASE("attention: bf16 CUDA matches the CPU reference through cuDNN and the plain kernels",
          "[cuda][attention]") {
  TESSERA_REQUIRE_GPU(gpu);
  for (const Shape& s : kShapes) {
    CAPTURE(s.B, s.T, s.NH, s.NKV, s.HS);
    auto qkv = round_to_bf16(test::random_normal(size_t(s.B * s.T * s.row()), 111));
    auto dout = round_to_bf16(test::random_normal(size_t(s.B * s.T * s.C()), 112));
    auto ref = run_attention(test::cpu_context(), s, qkv, dout, DType::f32);
    for (Context* ctx : {gpu, &plain_gpu_context()}) {
      CAPTURE(ctx->options().use_cudnn_attention);
      auto got = run_attention(*ctx, s, qkv, dout, DType::bf16);
      // bf16 outputs carry 2^-9 relative rounding; errors are judged against the largest value.
      CHECK(scaled_error(got.out, ref.out, 1.0) < 1e-2);
      CHECK(scaled_error(got.stats, ref.stats, 1.0) < 1e-3);  // fp32 in both paths
      CHECK(scaled_error(got.dqkv, ref.dqkv, 1.0) < 1e-2);
    }
  }
}

TEST_CASE("attention: cuDNN and the plain kernels write the same stats, so their passes mix",
          "[cuda][attention]") {
  TESSERA_REQUIRE_GPU(gpu);
  Context& plain = plain_gpu_context();
  const Shape s{2, 64, 4, 2, 64};
  const int64_t C = s.C();
  auto qkv_host = round_to_bf16(test::random_normal(size_t(s.B * s.T * s.row()), 121));
  auto dout_host = round_to_bf16(test::random_normal(size_t(s.B * s.T * C), 122));
  auto ref = run_attention(test::cpu_context(), s, qkv_host, dout_host, DType::f32);

  // Forward through cuDNN (default context), backward through the plain kernels on its outputs.
  auto qkv = test::upload(*gpu, qkv_host, {s.B, s.T, s.row()}, DType::bf16);
  auto out = test::poisoned(*gpu, {s.B, s.T, C}, DType::bf16);
  auto stats = test::poisoned(*gpu, {s.B, s.NH, s.T});
  ops::attention_forward(*gpu, out.tensor, stats.tensor, qkv.tensor, int(s.NH), int(s.NKV));
  auto out_host = test::download(*gpu, out.tensor);
  auto stats_host = test::download(*gpu, stats.tensor);
  CHECK(scaled_error(stats_host, ref.stats, 1.0) < 1e-3);

  auto qkv2 = test::upload(plain, qkv_host, {s.B, s.T, s.row()}, DType::bf16);
  auto out2 = test::upload(plain, out_host, {s.B, s.T, C}, DType::bf16);
  auto stats2 = test::upload(plain, stats_host, {s.B, s.NH, s.T});
  auto dout2 = test::upload(plain, dout_host, {s.B, s.T, C}, DType::bf16);
  auto dqkv2 = test::poisoned(plain, {s.B, s.T, s.row()}, DType::bf16);
  ops::attention_backward(plain, dqkv2.tensor, dout2.tensor, qkv2.tensor, out2.tensor, stats2.tensor, int(s.NH),
                          int(s.NKV));
  CHECK(scaled_error(test::download(plain, dqkv2.tensor), ref.dqkv, 1.0) < 1e-2);

  if (built_with_cudnn_attention()) {
    // The two paths round differently, so bitwise equal outputs would mean cuDNN never ran.
    auto plain_run = run_attention(plain, s, qkv_host, dout_host, DType::bf16);
    auto cudnn_run = run_attention(*gpu, s, qkv_host, dout_host, DType::bf16);
    CHECK(test::max_abs_error(plain_run.dqkv, cudnn_run.dqkv) > 0.0);
  }
}

TEST_CASE("attention: CUDA forward and backward are bitwise reproducible", "[cuda][attention]") {
  TESSERA_REQUIRE_GPU(gpu);
  const Shape s{2, 130, 6, 2, 64};
  auto qkv = round_to_bf16(test::random_normal(size_t(s.B * s.T * s.row()), 131));
  auto dout = round_to_bf16(test::random_normal(size_t(s.B * s.T * s.C()), 132));
  for (Context* ctx : {gpu, &plain_gpu_context()}) {
    for (DType dtype : {DType::f32, DType::bf16}) {
      CAPTURE(ctx->options().use_cudnn_attention, dtype_name(dtype));
      auto first = run_attention(*ctx, s, qkv, dout, dtype);
      auto second = run_attention(*ctx, s, qkv, dout, dtype);
      CHECK(test::max_abs_error(first.out, second.out) == 0.0);
      CHECK(test::max_abs_error(first.stats, second.stats) == 0.0);
      CHECK(test::max_abs_error(first.dqkv, second.dqkv) == 0.0);
    }
  }
}
