// AdamW over a flat range, on the CPU. param f32 (its own master) or bf16 with an f32 master.
// Spans of the range per OpenMP work item, each a vectorised loop (one clone per instruction set).
#include <algorithm>
#include <cmath>

#include "kernels/cpu/cpu_math.h"
#include "kernels/ops.h"

namespace tessera::cpu {

namespace {

constexpr int64_t kSpan = 8192;

struct Step {
  float lr, beta1, beta2, eps, weight_decay, grad_scale, correction1, correction2;
};

// Updates w, m, v over n elements; copies the new weights into p32 or p16 when given.
TESSERA_CPU_CLONES void update_span(float* w, float* m, float* v, const float* g, float* p32, bf16* p16, int64_t n,
                                    const Step& s) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] * s.grad_scale;
    const float mi = s.beta1 * m[i] + (1.0f - s.beta1) * gi;
    const float vi = s.beta2 * v[i] + (1.0f - s.beta2) * gi * gi;
    const float mhat = mi / s.correction1;
    const float vhat = vi / s.correction2;
    const float wi = w[i] - s.lr * (mhat / (std::sqrt(vhat) + s.eps) + s.weight_decay * w[i]);
    m[i] = mi;
    v[i] = vi;
    w[i] = wi;
  }
  if (p32)
    for (int64_t i = 0; i < n; ++i) p32[i] = w[i];
  if (p16)
    for (int64_t i = 0; i < n; ++i) p16[i] = float_to_bf16(w[i]);
}

}  // namespace

void adamw_update(Context& ctx, Tensor param, Tensor master, Tensor m, Tensor v, Tensor grad,
                  const AdamWParams& hp) {
  const int64_t n = param.numel();
  // Bias corrections computed once, in float, exactly as the CUDA kernel receives them.
  const Step step{hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay, hp.grad_scale,
                  1.0f - std::pow(hp.beta1, float(hp.step)), 1.0f - std::pow(hp.beta2, float(hp.step))};
  const bool bf16_param = param.dtype == DType::bf16;
  float* w = master.empty() ? param.ptr<float>() : master.ptr<float>();
  float* mm = m.ptr<float>();
  float* vv = v.ptr<float>();
  const float* g = grad.ptr<float>();
  bf16* p16 = bf16_param ? param.ptr<bf16>() : nullptr;
  float* p32 = (!bf16_param && !master.empty()) ? param.ptr<float>() : nullptr;
  const int64_t spans = (n + kSpan - 1) / kSpan;
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads()) if (spans > 1)
  for (int64_t k = 0; k < spans; ++k) {
    const int64_t i0 = k * kSpan, len = std::min(n, i0 + kSpan) - i0;
    update_span(w + i0, mm + i0, vv + i0, g + i0, p32 ? p32 + i0 : nullptr, p16 ? p16 + i0 : nullptr, len, step);
  }
}

}  // namespace tessera::cpu
