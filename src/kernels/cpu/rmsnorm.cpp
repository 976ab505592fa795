// RMSNorm over the last dimension (LLaMA's), float32 on the CPU: out = x * rstd * w with
// rstd = 1/sqrt(mean(x^2) + eps). As LayerNorm: one row per work item for the forward and the input
// gradient, row sums in lanes (cpu_math.h) so they vectorise and do not depend on the thread count,
// row functions cloned per instruction set; the weight gradient sums over rows with each thread
// owning a block of channels and adding the rows in order. The fused residual + RMSNorm (plain: the
// two ops in turn; one pass: each row's sum, then its norm while the row is in cache) shares the row.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/cpu_math.h"
#include "kernels/cpu/fused_norms.h"
#include "kernels/ops.h"

namespace tessera::cpu {

namespace {

constexpr int64_t kChannelBlock = 64;

TESSERA_CPU_CLONES void rms_normalize_row(float* o, float* rstd, const float* x, const float* w, float eps,
                                          int64_t C) {
  const float sum_sq = lane_sum(C, [&](int64_t c) { return x[c] * x[c]; });
  const float s = 1.0f / std::sqrt(sum_sq / float(C) + eps);
  for (int64_t c = 0; c < C; ++c) o[c] = (x[c] * s) * w[c];
  *rstd = s;
}

// r = a + b (residual_forward's rounding), then rms_normalize_row of r.
TESSERA_CPU_CLONES void residual_rms_normalize_row(float* r, float* o, float* rstd, const float* a, const float* b,
                                                   const float* w, float eps, int64_t C) {
  for (int64_t c = 0; c < C; ++c) r[c] = a[c] + b[c];
  rms_normalize_row(o, rstd, r, w, eps, C);
}

// With xhat = x * rstd and g = w * dout: dx += rstd * (g - xhat * mean(g * xhat)).
TESSERA_CPU_CLONES void rms_input_gradient_row(float* dx, const float* x, const float* d, const float* w, float s,
                                               int64_t C) {
  const float g_xhat_mean = lane_sum(C, [&](int64_t c) { return w[c] * d[c] * (x[c] * s); }) / float(C);
  for (int64_t c = 0; c < C; ++c) dx[c] += (w[c] * d[c] - (x[c] * s) * g_xhat_mean) * s;
}

// dw[c] += xhat * d over channels [0, n) of one row.
TESSERA_CPU_CLONES void rms_weight_gradient_row(float* dw, const float* x, const float* d, float s, int64_t n) {
  for (int64_t c = 0; c < n; ++c) dw[c] += (x[c] * s) * d[c];
}

}  // namespace

void rmsnorm_forward(Context& ctx, Tensor out, Tensor rstd, Tensor inp, Tensor weight, float eps) {
  const int64_t N = inp.size(0), C = inp.size(1);
  const float* x = inp.ptr<float>();
  const float* w = weight.ptr<float>();
  float* o = out.ptr<float>();
  float* rs = rstd.ptr<float>();
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t n = 0; n < N; ++n) rms_normalize_row(o + n * C, rs + n, x + n * C, w, eps, C);
}

void residual_rmsnorm_forward(Context& ctx, Tensor residual, Tensor out, Tensor rstd, Tensor a, Tensor b,
                              Tensor weight, float eps) {
  residual_forward(ctx, residual, a, b);
  rmsnorm_forward(ctx, out, rstd, residual, weight, eps);
}

void residual_rmsnorm_forward_one_pass(Context& ctx, Tensor residual, Tensor out, Tensor rstd, Tensor a, Tensor b,
                                       Tensor weight, float eps) {
  const int64_t N = a.size(0), C = a.size(1);
  const float* pa = a.ptr<float>();
  const float* pb = b.ptr<float>();
  const float* w = weight.ptr<float>();
  float* r = residual.ptr<float>();
  float* o = out.ptr<float>();
  float* rs = rstd.ptr<float>();
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t n = 0; n < N; ++n)
    residual_rms_normalize_row(r + n * C, o + n * C, rs + n, pa + n * C, pb + n * C, w, eps, C);
}

void rmsnorm_backward(Context& ctx, Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight, Tensor rstd) {
  const int64_t N = inp.size(0), C = inp.size(1);
  const float* x = inp.ptr<float>();
  const float* w = weight.ptr<float>();
  const float* d = dout.ptr<float>();
  const float* rs = rstd.ptr<float>();
  float* dx = dinp.ptr<float>();
  float* dw = dweight.ptr<float>();
  const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
#pragma omp parallel num_threads(ctx.cpu_threads())
  {
#pragma omp for schedule(static) nowait
    for (int64_t n = 0; n < N; ++n) rms_input_gradient_row(dx + n * C, x + n * C, d + n * C, w, rs[n], C);
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t c0 = blk * kChannelBlock, c1 = std::min(C, c0 + kChannelBlock);
      for (int64_t n = 0; n < N; ++n) rms_weight_gradient_row(dw + c0, x + n * C + c0, d + n * C + c0, rs[n], c1 - c0);
    }
  }
}

}  // namespace tessera::cpu
