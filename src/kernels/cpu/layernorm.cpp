// LayerNorm over the last dimension (llm.c's layernorm), float32 on the CPU. eps = 1e-5.
#include <algorithm>
#include <cmath>

#include "kernels/ops.h"

namespace tessera::cpu {

namespace {
constexpr float kEps = 1e-5f;
constexpr int64_t kChannelBlock = 64;
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
  for (int64_t n = 0; n < N; ++n) {
    const float* x_n = x + n * C;  // (C)
    float m = 0.0f;
    for (int64_t c = 0; c < C; ++c) m += x_n[c];
    m /= float(C);
    float var = 0.0f;
    for (int64_t c = 0; c < C; ++c) {
      float shift = x_n[c] - m;
      var += shift * shift;
    }
    var /= float(C);
    const float s = 1.0f / std::sqrt(var + kEps);
    float* o_n = o + n * C;
    for (int64_t c = 0; c < C; ++c) o_n[c] = (s * (x_n[c] - m)) * w[c] + b[c];
    mu[n] = m;
    rs[n] = s;
  }
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

  // dinp: rows are independent.
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t n = 0; n < N; ++n) {
    const float* x_n = x + n * C;
    const float* d_n = d + n * C;
    float* dx_n = dx + n * C;
    const float m = mu[n], s = rs[n];
    float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
    for (int64_t c = 0; c < C; ++c) {
      const float norm = (x_n[c] - m) * s;
      const float dnorm = w[c] * d_n[c];
      dnorm_mean += dnorm;
      dnorm_norm_mean += dnorm * norm;
    }
    dnorm_mean /= float(C);
    dnorm_norm_mean /= float(C);
    for (int64_t c = 0; c < C; ++c) {
      const float norm = (x_n[c] - m) * s;
      const float dnorm = w[c] * d_n[c];
      dx_n[c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
    }
  }

  // dweight, dbias: a reduction over rows, so each channel is owned by one thread that adds the
  // rows in order (the same order whatever the thread count).
  const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kChannelBlock, c1 = std::min(C, c0 + kChannelBlock);
    for (int64_t n = 0; n < N; ++n) {
      const float* x_n = x + n * C;
      const float* d_n = d + n * C;
      const float m = mu[n], s = rs[n];
      for (int64_t c = c0; c < c1; ++c) {
        db[c] += d_n[c];
        dw[c] += (x_n[c] - m) * s * d_n[c];
      }
    }
  }
}

}  // namespace tessera::cpu
