// SwiGLU on the GPU: elementwise over the (N,F) outputs of a packed [gate | up] input, fp32 maths.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/ops.h"

namespace tessera::cuda {

namespace {

using namespace common;

constexpr int kBlock = 256;

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// out (N,F) = silu(gate) * up with gate = inp[n, f], up = inp[n, F + f].
template <class T>
__global__ void swiglu_forward_kernel(T* out, const T* inp, int64_t N, int64_t F) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < N * F; i += stride) {
    const T* row = inp + (i / F) * 2 * F;
    const int64_t f = i % F;
    const float g = to_float(row[f]);
    out[i] = from_float<T>(g * sigmoid(g) * to_float(row[F + f]));
  }
}

// dinp (N,2F) = [dout * up * silu'(gate) | dout * silu(gate)], silu'(g) = s (1 + g (1 - s)).
template <class T>
__global__ void swiglu_backward_kernel(T* dinp, const T* dout, const T* inp, int64_t N, int64_t F) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < N * F; i += stride) {
    const int64_t offset = (i / F) * 2 * F + i % F;  // gate's element; up's is F further
    const float g = to_float(inp[offset]), s = sigmoid(g), d = to_float(dout[i]);
    dinp[offset] = from_float<T>(d * to_float(inp[offset + F]) * s * (1.0f + g * (1.0f - s)));
    dinp[offset + F] = from_float<T>(d * g * s);
  }
}

template <class T>
void forward(Context& ctx, Tensor out, Tensor inp) {
  const int64_t N = out.size(0), F = out.size(1);
  swiglu_forward_kernel<T><<<grid_for(N * F, kBlock), kBlock, 0, stream_of(ctx)>>>(out.ptr<T>(), inp.ptr<T>(), N, F);
  TESSERA_CUDA_CHECK_LAUNCH();
}

template <class T>
void backward(Context& ctx, Tensor dinp, Tensor dout, Tensor inp) {
  const int64_t N = dout.size(0), F = dout.size(1);
  swiglu_backward_kernel<T>
      <<<grid_for(N * F, kBlock), kBlock, 0, stream_of(ctx)>>>(dinp.ptr<T>(), dout.ptr<T>(), inp.ptr<T>(), N, F);
  TESSERA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void swiglu_forward(Context& ctx, Tensor out, Tensor inp) {
  if (inp.dtype == DType::bf16)
    forward<bf16_t>(ctx, out, inp);
  else
    forward<float>(ctx, out, inp);
}

void swiglu_backward(Context& ctx, Tensor dinp, Tensor dout, Tensor inp) {
  if (inp.dtype == DType::bf16)
    backward<bf16_t>(ctx, dinp, dout, inp);
  else
    backward<float>(ctx, dinp, dout, inp);
}

}  // namespace tessera::cuda
