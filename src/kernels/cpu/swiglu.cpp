// SwiGLU (LLaMA's MLP activation), float32 on the CPU: out = silu(gate) * up over a packed
// [gate | up] row.
#include <cmath>

#include "kernels/ops.h"

namespace tessera::cpu {

namespace {
float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
}  // namespace

void swiglu_forward(Context& ctx, Tensor out, Tensor inp) {
  const int64_t N = out.size(0), F = out.size(1);
  const float* x = inp.ptr<float>();  // (N,2F)
  float* o = out.ptr<float>();        // (N,F)
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t n = 0; n < N; ++n) {
    const float* gate = x + n * 2 * F;
    const float* up = gate + F;
    for (int64_t f = 0; f < F; ++f) o[n * F + f] = gate[f] * sigmoid(gate[f]) * up[f];
  }
}

// d silu(g)/dg = s (1 + g (1 - s)) with s = sigmoid(g).
void swiglu_backward(Context& ctx, Tensor dinp, Tensor dout, Tensor inp) {
  const int64_t N = dout.size(0), F = dout.size(1);
  const float* x = inp.ptr<float>();   // (N,2F)
  const float* d = dout.ptr<float>();  // (N,F)
  float* dx = dinp.ptr<float>();       // (N,2F)
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t n = 0; n < N; ++n) {
    const float* gate = x + n * 2 * F;
    const float* up = gate + F;
    float* dgate = dx + n * 2 * F;
    float* dup = dgate + F;
    for (int64_t f = 0; f < F; ++f) {
      const float g = gate[f], s = sigmoid(g), dn = d[n * F + f];
      dgate[f] = dn * up[f] * s * (1.0f + g * (1.0f - s));
      dup[f] = dn * g * s;
    }
  }
}

}  // namespace tessera::cpu
