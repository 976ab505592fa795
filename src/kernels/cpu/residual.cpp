// Residual add, float32 on the CPU.
#include "kernels/ops.h"

namespace tessera::cpu {

void residual_forward(Context& ctx, Tensor out, Tensor a, Tensor b) {
  const int64_t n = out.numel();
  const float* pa = a.ptr<float>();
  const float* pb = b.ptr<float>();
  float* o = out.ptr<float>();
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t i = 0; i < n; ++i) o[i] = pa[i] + pb[i];
}

}  // namespace tessera::cpu
