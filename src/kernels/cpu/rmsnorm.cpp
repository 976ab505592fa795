// RMSNorm over the last dimension (LLaMA's), float32 on the CPU: out = x * rstd * w with
// rstd = 1/sqrt(mean(x^2) + eps).
#include <algorithm>
#include <cmath>

#include "kernels/ops.h"

namespace tessera::cpu {

namespace {
constexpr int64_t kChannelBlock = 64;
}  // namespace

void rmsnorm_forward(Context& ctx, Tensor out, Tensor rstd, Tensor inp, Tensor weight, float eps) {
  const int64_t N = inp.size(0), C = inp.size(1);
  const float* x = inp.ptr<float>();
  const float* w = weight.ptr<float>();
  float* o = out.ptr<float>();
  float* rs = rstd.ptr<float>();
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t n = 0; n < N; ++n) {
    const float* x_n = x + n * C;  // (C)
    float sum_sq = 0.0f;
    for (int64_t c = 0; c < C; ++c) sum_sq += x_n[c] * x_n[c];
    const float s = 1.0f / std::sqrt(sum_sq / float(C) + eps);
    float* o_n = o + n * C;
    for (int64_t c = 0; c < C; ++c) o_n[c] = (x_n[c] * s) * w[c];
    rs[n] = s;
  }
}

// With xhat = x * rstd and g = w * dout: dx = rstd * (g - xhat * mean(g * xhat)), dw = sum over
// rows of dout * xhat.
void rmsnorm_backward(Context& ctx, Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight, Tensor rstd) {
  const int64_t N = inp.size(0), C = inp.size(1);
  const float* x = inp.ptr<float>();
  const float* w = weight.ptr<float>();
  const float* d = dout.ptr<float>();
  const float* rs = rstd.ptr<float>();
  float* dx = dinp.ptr<float>();
  float* dw = dweight.ptr<float>();

  // dinp: rows are independent.
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t n = 0; n < N; ++n) {
    const float* x_n = x + n * C;
    const float* d_n = d + n * C;
    float* dx_n = dx + n * C;
    const float s = rs[n];
    float g_xhat_mean = 0.0f;
    for (int64_t c = 0; c < C; ++c) g_xhat_mean += w[c] * d_n[c] * (x_n[c] * s);
    g_xhat_mean /= float(C);
    for (int64_t c = 0; c < C; ++c) dx_n[c] += (w[c] * d_n[c] - (x_n[c] * s) * g_xhat_mean) * s;
  }

  // dweight: each channel owned by one thread that adds the rows in order.
  const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kChannelBlock, c1 = std::min(C, c0 + kChannelBlock);
    for (int64_t n = 0; n < N; ++n) {
      const float* x_n = x + n * C;
      const float* d_n = d + n * C;
      const float s = rs[n];
      for (int64_t c = c0; c < c1; ++c) dw[c] += (x_n[c] * s) * d_n[c];
    }
  }
}

}  // namespace tessera::cpu
