// GELU, tanh approximation (as GPT-2 and llm.c), float32 on the CPU.
#include <cmath>

#include "kernels/ops.h"

namespace tessera::cpu {

namespace {
constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;
}  // namespace

void gelu_forward(Context& ctx, Tensor out, Tensor inp) {
  const int64_t n = inp.numel();
  const float* x = inp.ptr<float>();
  float* o = out.ptr<float>();
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t i = 0; i < n; ++i) {
    const float xi = x[i];
    const float cube = kCubic * xi * xi * xi;
    o[i] = 0.5f * xi * (1.0f + std::tanh(kSqrt2OverPi * (xi + cube)));
  }
}

void gelu_backward(Context& ctx, Tensor dinp, Tensor inp, Tensor dout) {
  const int64_t n = inp.numel();
  const float* x = inp.ptr<float>();
  const float* d = dout.ptr<float>();
  float* dx = dinp.ptr<float>();
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t i = 0; i < n; ++i) {
    const float xi = x[i];
    const float cube = kCubic * xi * xi * xi;
    const float th = std::tanh(kSqrt2OverPi * (xi + cube));
    const float sech2 = 1.0f - th * th;
    const float local = 0.5f * (1.0f + th) + xi * 0.5f * sech2 * kSqrt2OverPi * (1.0f + 3.0f * kCubic * xi * xi);
    dx[i] = local * d[i];
  }
}

}  // namespace tessera::cpu
