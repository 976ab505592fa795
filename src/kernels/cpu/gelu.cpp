// GELU, tanh approximation (as GPT-2 and llm.c), float32 on the CPU. Written as
// 0.5 x (1 + tanh u) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3), with the vectorisable
// exp of cpu_math.h: the same function within a few float ulps, at SIMD speed.
#include <algorithm>

#include "kernels/cpu/cpu_math.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/ops.h"

namespace tessera::cpu {

namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;
// Elements per OpenMP work item: long enough to amortise a clone's call, short enough to share.
constexpr int64_t kSpan = 4096;

// sigmoid(2u) = 0.5 (1 + tanh u); exp overflows to inf for very negative x, giving 0.
inline float gelu_gate(float x) {
  const float u = kSqrt2OverPi * (x + kCubic * x * x * x);
  return 1.0f / (1.0f + exp_approx(-2.0f * u));
}

template <class Body>
void parallel_spans(const Context& ctx, int64_t n, Body body) {
  const int64_t spans = (n + kSpan - 1) / kSpan;
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads()) if (spans > 1)
  for (int64_t s = 0; s < spans; ++s) body(s * kSpan, std::min(n, (s + 1) * kSpan));
}

}  // namespace

TESSERA_CPU_CLONES void gelu_span(float* out, const float* inp, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = inp[i];
    out[i] = x * gelu_gate(x);
  }
}

// d/dx [x s] with s = sigmoid(2u): s + 2 x s (1 - s) du/dx.
TESSERA_CPU_CLONES void gelu_backward_span(float* dinp, const float* inp, const float* dout, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = inp[i];
    const float s = gelu_gate(x);
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kCubic * x * x);
    dinp[i] = (s + 2.0f * x * s * (1.0f - s) * du) * dout[i];
  }
}

TESSERA_CPU_CLONES void add_bias_span(float* y, const float* bias, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += bias[i];
}

TESSERA_CPU_CLONES void bias_gelu_span(float* out, float* pre, const float* bias, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = bias ? pre[i] + bias[i] : pre[i];
    pre[i] = x;
    out[i] = x * gelu_gate(x);
  }
}

void gelu_forward(Context& ctx, Tensor out, Tensor inp) {
  const float* x = inp.ptr<float>();
  float* o = out.ptr<float>();
  parallel_spans(ctx, inp.numel(), [&](int64_t i0, int64_t i1) { gelu_span(o + i0, x + i0, i1 - i0); });
}

void gelu_backward(Context& ctx, Tensor dinp, Tensor inp, Tensor dout) {
  const float* x = inp.ptr<float>();
  const float* d = dout.ptr<float>();
  float* dx = dinp.ptr<float>();
  parallel_spans(ctx, inp.numel(), [&](int64_t i0, int64_t i1) { gelu_backward_span(dx + i0, x + i0, d + i0, i1 - i0); });
}

}  // namespace tessera::cpu
