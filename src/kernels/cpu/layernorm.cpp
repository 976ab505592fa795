// LayerNorm over the last dimension (llm.c's layernorm), float32 on the CPU. eps = 1e-5.
// One row per work item for the forward and the input gradient; the row sums run in 8 lanes
// (element c in lane c % 8) added in a fixed order, so they vectorise and do not depend on the
// thread count. The weight and bias gradients sum over rows: each thread owns a block of
// channels and adds the rows in order. The fused residual + LayerNorm (plain: the two ops one after
// the other; one pass: each row's sum, then its norm while the row is in cache) shares the row code.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/cpu_math.h"
#include "kernels/cpu/fused_norms.h"
#include "kernels/ops.h"

namespace tessera::cpu {

namespace {

constexpr float kEps = 1e-5f;
constexpr int64_t kChannelBlock = 64;

TESSERA_CPU_CLONES void normalize_row(float* o, float* mean, float* rstd, const float* x, const float* w,
                                      const float* b, int64_t C) {
  const float m = lane_sum(C, [&](int64_t c) { return x[c]; }) / float(C);
  const float var = lane_sum(C, [&](int64_t c) {
                      const float shift = x[c] - m;
                      return shift * shift;
                    }) / float(C);
  const float s = 1.0f / std::sqrt(var + kEps);
  for (int64_t c = 0; c < C; ++c) o[c] = (s * (x[c] - m)) * w[c] + b[c];
  *mean = m;
  *rstd = s;
}

TESSERA_CPU_CLONES void input_gradient_row(float* dx, const float* x, const float* d, const float* w, float m,
                                           float s, int64_t C) {
  const float dnorm_mean = lane_sum(C, [&](int64_t c) { return w[c] * d[c]; }) / float(C);
  const float dnorm_norm_mean = lane_sum(C, [&](int64_t c) { return w[c] * d[c] * ((x[c] - m) * s); }) / float(C);
  for (int64_t c = 0; c < C; ++c) {
    const float norm = (x[c] - m) * s;
    const float dnorm = w[c] * d[c];
    dx[c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
  }
}

// r = a + b, then normalize_row of r (residual_forward's rounding: one float add).
TESSERA_CPU_CLONES void residual_normalize_row(float* r, float* o, float* mean, float* rstd, const float* a,
                                               const float* b, const float* w, const float* bias, int64_t C) {
  for (int64_t c = 0; c < C; ++c) r[c] = a[c] + b[c];
  normalize_row(o, mean, rstd, r, w, bias, C);
}

// dw[c] += norm * d, db[c] += d over channels [0, n) of one row.
TESSERA_CPU_CLONES void parameter_gradient_row(float* dw, float* db, const float* x, const float* d, float m,
                                               float s, int64_t n) {
  for (int64_t c = 0; c < n; ++c) {
    db[c] += d[c];
    dw[c] += (x[c] - m) * s * d[c];
  }
}

}  // namespace

void layernorm_forward(Context& ctx, Tensor out, Tensor mean, Tensor rstd, Tensor inp, Tensor weight,
                       Tensor bias) {
  const int64_t N = inp.size(0), C = inp.size(1);
  const float* x = inp.ptr<float>();
  const float* w = weight.ptr<float>();
  const float* b = bias.ptr<float>();
  float* o = out.ptr<float>();
  float* mu = mean.ptr<float>();
  float* rs = rstd.ptr<float>();
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t n = 0; n < N; ++n) normalize_row(o + n * C, mu + n, rs + n, x + n * C, w, b, C);
}

void residual_layernorm_forward(Context& ctx, Tensor residual, Tensor out, Tensor mean, Tensor rstd, Tensor a,
                                Tensor b, Tensor weight, Tensor bias) {
  residual_forward(ctx, residual, a, b);
  layernorm_forward(ctx, out, mean, rstd, residual, weight, bias);
}

void residual_layernorm_forward_one_pass(Context& ctx, Tensor residual, Tensor out, Tensor mean, Tensor rstd, Tensor a,
                                         Tensor b, Tensor weight, Tensor bias) {
  const int64_t N = a.size(0), C = a.size(1);
  const float* pa = a.ptr<float>();
  const float* pb = b.ptr<float>();
  const float* w = weight.ptr<float>();
  const float* bi = bias.ptr<float>();
  float* r = residual.ptr<float>();
  float* o = out.ptr<float>();
  float* mu = mean.ptr<float>();
  float* rs = rstd.ptr<float>();
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t n = 0; n < N; ++n)
    residual_normalize_row(r + n * C, o + n * C, mu + n, rs + n, pa + n * C, pb + n * C, w, bi, C);
}

void layernorm_backward(Context& ctx, Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                        Tensor weight, Tensor mean, Tensor rstd) {
  const int64_t N = inp.size(0), C = inp.size(1);
  const float* x = inp.ptr<float>();
  const float* w = weight.ptr<float>();
  const float* d = dout.ptr<float>();
  const float* mu = mean.ptr<float>();
  const float* rs = rstd.ptr<float>();
  float* dx = dinp.ptr<float>();
  float* dw = dweight.ptr<float>();
  float* db = dbias.ptr<float>();
  const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
#pragma omp parallel num_threads(ctx.cpu_threads())
  {
#pragma omp for schedule(static) nowait
    for (int64_t n = 0; n < N; ++n) input_gradient_row(dx + n * C, x + n * C, d + n * C, w, mu[n], rs[n], C);
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t c0 = blk * kChannelBlock, c1 = std::min(C, c0 + kChannelBlock);
      for (int64_t n = 0; n < N; ++n)
        parameter_gradient_row(dw + c0, db + c0, x + n * C + c0, d + n * C + c0, mu[n], rs[n], c1 - c0);
    }
  }
}

}  // namespace tessera::cpu
