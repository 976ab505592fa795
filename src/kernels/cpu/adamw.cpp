// AdamW over a flat range, on the CPU. param f32 (its own master) or bf16 with an f32 master.
#include <cmath>

#include "kernels/ops.h"

namespace tessera::cpu {

void adamw_update(Context& ctx, Tensor param, Tensor master, Tensor m, Tensor v, Tensor grad,
                  const AdamWParams& hp) {
  const int64_t n = param.numel();
  // Bias corrections computed once, in float, exactly as the CUDA kernel receives them.
  const float correction1 = 1.0f - std::pow(hp.beta1, float(hp.step));
  const float correction2 = 1.0f - std::pow(hp.beta2, float(hp.step));
  const bool bf16_param = param.dtype == DType::bf16;
  float* w = master.empty() ? param.ptr<float>() : master.ptr<float>();
  float* mm = m.ptr<float>();
  float* vv = v.ptr<float>();
  const float* g = grad.ptr<float>();
  bf16* p16 = bf16_param ? param.ptr<bf16>() : nullptr;
  float* p32 = (!bf16_param && !master.empty()) ? param.ptr<float>() : nullptr;
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] * hp.grad_scale;
    const float mi = hp.beta1 * mm[i] + (1.0f - hp.beta1) * gi;
    const float vi = hp.beta2 * vv[i] + (1.0f - hp.beta2) * gi * gi;
    const float mhat = mi / correction1;
    const float vhat = vi / correction2;
    const float wi = w[i] - hp.lr * (mhat / (std::sqrt(vhat) + hp.eps) + hp.weight_decay * w[i]);
    mm[i] = mi;
    vv[i] = vi;
    w[i] = wi;
    if (p16) p16[i] = float_to_bf16(wi);
    if (p32) p32[i] = wi;
  }
}

}  // namespace tessera::cpu
