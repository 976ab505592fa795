// AdamW over a flat range on the GPU. Elementwise, so deterministic.
#include <cmath>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/ops.h"

namespace tessera::cuda {

namespace {

using namespace common;

constexpr int kBlock = 256;

struct Step {
  float lr, beta1, beta2, eps, weight_decay, grad_scale;
  float correction1, correction2;  // 1 - beta^step, computed on the host as the CPU kernel does
};

// master is null when param is f32 and its own master.
template <class T>
__global__ void adamw_kernel(T* param, float* master, float* m, float* v, const float* grad, int64_t n, Step s) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float w = master ? master[i] : to_float(param[i]);
    const float g = grad[i] * s.grad_scale;
    const float mi = s.beta1 * m[i] + (1.0f - s.beta1) * g;
    const float vi = s.beta2 * v[i] + (1.0f - s.beta2) * g * g;
    const float mhat = mi / s.correction1;
    const float vhat = vi / s.correction2;
    const float updated = w - s.lr * (mhat / (sqrtf(vhat) + s.eps) + s.weight_decay * w);
    m[i] = mi;
    v[i] = vi;
    if (master) master[i] = updated;
    param[i] = from_float<T>(updated);
  }
}

}  // namespace

void adamw_update(Context& ctx, Tensor param, Tensor master, Tensor m, Tensor v, Tensor grad,
                  const AdamWParams& hp) {
  const int64_t n = param.numel();
  Step s{hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay, hp.grad_scale,
         1.0f - std::pow(hp.beta1, float(hp.step)), 1.0f - std::pow(hp.beta2, float(hp.step))};
  float* master_ptr = master.empty() ? nullptr : master.ptr<float>();
  const unsigned grid = grid_for(n, kBlock);
  if (param.dtype == DType::bf16)
    adamw_kernel<<<grid, kBlock, 0, stream_of(ctx)>>>(param.ptr<bf16_t>(), master_ptr, m.ptr<float>(), v.ptr<float>(),
                                                      grad.ptr<float>(), n, s);
  else
    adamw_kernel<<<grid, kBlock, 0, stream_of(ctx)>>>(param.ptr<float>(), master_ptr, m.ptr<float>(), v.ptr<float>(),
                                                      grad.ptr<float>(), n, s);
  TESSERA_CUDA_CHECK_LAUNCH();
}

}  // namespace tessera::cuda
