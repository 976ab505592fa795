// SwiGLU (LLaMA's MLP activation), float32 on the CPU: out = silu(gate) * up over a packed
// [gate | up] row. Rows are the OpenMP work items; each row's loop is cloned per instruction set
// and uses the vectorisable exp of cpu_math.h, as GELU does.
#include "kernels/cpu/cpu_math.h"
#include "kernels/ops.h"

namespace tessera::cpu {

namespace {

inline float sigmoid(float x) { return 1.0f / (1.0f + exp_approx(-x)); }

TESSERA_CPU_CLONES void swiglu_row(float* o, const float* gate, const float* up, int64_t F) {
  for (int64_t f = 0; f < F; ++f) o[f] = gate[f] * sigmoid(gate[f]) * up[f];
}

// d silu(g)/dg = s (1 + g (1 - s)) with s = sigmoid(g).
TESSERA_CPU_CLONES void swiglu_backward_row(float* dgate, float* dup, const float* gate, const float* up,
                                            const float* d, int64_t F) {
  for (int64_t f = 0; f < F; ++f) {
    const float g = gate[f], s = sigmoid(g), dn = d[f];
    dgate[f] = dn * up[f] * s * (1.0f + g * (1.0f - s));
    dup[f] = dn * g * s;
  }
}

}  // namespace

void swiglu_forward(Context& ctx, Tensor out, Tensor inp) {
  const int64_t N = out.size(0), F = out.size(1);
  const float* x = inp.ptr<float>();  // (N,2F)
  float* o = out.ptr<float>();        // (N,F)
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t n = 0; n < N; ++n) swiglu_row(o + n * F, x + n * 2 * F, x + n * 2 * F + F, F);
}

void swiglu_backward(Context& ctx, Tensor dinp, Tensor dout, Tensor inp) {
  const int64_t N = dout.size(0), F = dout.size(1);
  const float* x = inp.ptr<float>();   // (N,2F)
  const float* d = dout.ptr<float>();  // (N,F)
  float* dx = dinp.ptr<float>();       // (N,2F)
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t n = 0; n < N; ++n) {
    const float* gate = x + n * 2 * F;
    float* dgate = dx + n * 2 * F;
    swiglu_backward_row(dgate, dgate + F, gate, gate + F, d + n * F, F);
  }
}

}  // namespace tessera::cpu
