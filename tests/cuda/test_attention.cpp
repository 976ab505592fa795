// CUDA attention's special cases beyond test-backend-ops (which runs the default context: cuDNN's
// fused attention for bf16): every registered case through the plain kernels (a context with
// use_cudnn_attention = false), and a forward on cuDNN mixed with a backward on the plain kernels.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/ops.h"
#include "support/op_harness.h"
#include "tessera/dtype.h"

using namespace tessera;
using test::round_to_bf16;

namespace {

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
  auto qkv = test::upload(ctx, qkv_host, {s.B, s.T, s.row()}, dtype);
  auto dout = test::upload(ctx, dout_host, {s.B, s.T, s.C()}, dtype);
  auto out = test::poisoned(ctx, {s.B, s.T, s.C()}, dtype);
  auto stats = test::poisoned(ctx, {s.B, s.NH, s.T});
  auto dqkv = test::poisoned(ctx, {s.B, s.T, s.row()}, dtype);
  ops::attention_forward(ctx, out.tensor, stats.tensor, qkv.tensor, int(s.NH), int(s.NKV));
  ops::attention_backward(ctx, dqkv.tensor, dout.tensor, qkv.tensor, out.tensor, stats.tensor, int(s.NH), int(s.NKV));
  return {test::download(ctx, out.tensor), test::download(ctx, stats.tensor), test::download(ctx, dqkv.tensor)};
}

// Largest |got - want| relative to the largest |want|: bf16 rounding is relative to the scale.
double error(const std::vector<float>& got, const std::vector<float>& want) {
  double largest = 0.0;
  for (float x : want) largest = std::max(largest, double(std::fabs(x)));
  return test::max_relative_error(got, want, largest);
}

}  // namespace

TEST_CASE("attention: the plain CUDA kernels pass test-backend-ops where cuDNN would run", "[cuda][attention]") {
  TESSERA_REQUIRE_GPU(gpu);
  for (const char* name : {"attention_forward", "attention_backward"})
    test::check_op_on_backend(plain_gpu_context(), kernels::find_op(name));
}

TEST_CASE("attention: cuDNN and the plain kernels write the same stats, so their passes mix", "[cuda][attention]") {
  TESSERA_REQUIRE_GPU(gpu);
  Context& plain = plain_gpu_context();
  const Shape s{2, 64, 4, 2, 64};
  auto qkv_host = round_to_bf16(test::random_normal(size_t(s.B * s.T * s.row()), 121));
  auto dout_host = round_to_bf16(test::random_normal(size_t(s.B * s.T * s.C()), 122));
  auto ref = run_attention(test::cpu_context(), s, qkv_host, dout_host, DType::f32);

  // Forward through cuDNN (default context), backward through the plain kernels on its outputs.
  auto qkv = test::upload(*gpu, qkv_host, {s.B, s.T, s.row()}, DType::bf16);
  auto out = test::poisoned(*gpu, {s.B, s.T, s.C()}, DType::bf16);
  auto stats = test::poisoned(*gpu, {s.B, s.NH, s.T});
  ops::attention_forward(*gpu, out.tensor, stats.tensor, qkv.tensor, int(s.NH), int(s.NKV));
  auto out_host = test::download(*gpu, out.tensor);
  auto stats_host = test::download(*gpu, stats.tensor);
  CHECK(error(stats_host, ref.stats) < 1e-3);

  auto qkv2 = test::upload(plain, qkv_host, {s.B, s.T, s.row()}, DType::bf16);
  auto out2 = test::upload(plain, out_host, {s.B, s.T, s.C()}, DType::bf16);
  auto stats2 = test::upload(plain, stats_host, {s.B, s.NH, s.T});
  auto dout2 = test::upload(plain, dout_host, {s.B, s.T, s.C()}, DType::bf16);
  auto dqkv2 = test::poisoned(plain, {s.B, s.T, s.row()}, DType::bf16);
  ops::attention_backward(plain, dqkv2.tensor, dout2.tensor, qkv2.tensor, out2.tensor, stats2.tensor, int(s.NH),
                          int(s.NKV));
  CHECK(error(test::download(plain, dqkv2.tensor), ref.dqkv) < 1e-2);

  if (built_with_cudnn_attention()) {
    // The two paths round differently, so bitwise equal outputs would mean cuDNN never ran.
    auto plain_run = run_attention(plain, s, qkv_host, dout_host, DType::bf16);
    auto cudnn_run = run_attention(*gpu, s, qkv_host, dout_host, DType::bf16);
    CHECK(test::max_abs_error(plain_run.dqkv, cudnn_run.dqkv) > 0.0);
  }
}
