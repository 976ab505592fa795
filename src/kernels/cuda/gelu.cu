// GELU, tanh approximation, on the GPU: elementwise, 16-byte packs with a scalar tail.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/ops.h"

namespace tessera::cuda {

namespace {

using namespace common;

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;
constexpr int kBlock = 256;

__device__ __forceinline__ float gelu(float x) {
  const float cube = kCubic * x * x * x;
  return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + cube)));
}

__device__ __forceinline__ float gelu_grad(float x) {
  const float cube = kCubic * x * x * x;
  const float th = tanhf(kSqrt2OverPi * (x + cube));
  const float sech2 = 1.0f - th * th;
  return 0.5f * (1.0f + th) + x * 0.5f * sech2 * kSqrt2OverPi * (1.0f + 3.0f * kCubic * x * x);
}

template <class T>
__global__ void gelu_forward_kernel(T* out, const T* inp, int64_t n, bool vectorized) {
  constexpr int P = Pack<T>::size;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = vectorized ? n / P : 0;
  for (int64_t i = first; i < packs; i += stride) {
    Pack<T> x = load_pack(inp + i * P);
#pragma unroll
    for (int k = 0; k < P; ++k) x.v[k] = from_float<T>(gelu(to_float(x.v[k])));
    store_pack(out + i * P, x);
  }
  for (int64_t i = packs * P + first; i < n; i += stride) out[i] = from_float<T>(gelu(to_float(inp[i])));
}

template <class T>
__global__ void gelu_backward_kernel(T* dinp, const T* inp, const T* dout, int64_t n, bool vectorized) {
  constexpr int P = Pack<T>::size;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = vectorized ? n / P : 0;
  for (int64_t i = first; i < packs; i += stride) {
    const Pack<T> x = load_pack(inp + i * P);
    Pack<T> d = load_pack(dout + i * P);
#pragma unroll
    for (int k = 0; k < P; ++k) d.v[k] = from_float<T>(gelu_grad(to_float(x.v[k])) * to_float(d.v[k]));
    store_pack(dinp + i * P, d);
  }
  for (int64_t i = packs * P + first; i < n; i += stride)
    dinp[i] = from_float<T>(gelu_grad(to_float(inp[i])) * to_float(dout[i]));
}

template <class T>
void forward(Context& ctx, Tensor out, Tensor inp) {
  const int64_t n = inp.numel();
  const bool vec = aligned16(out.data) && aligned16(inp.data);
  const int64_t items = vec ? std::max<int64_t>(n / Pack<T>::size, n % Pack<T>::size) : n;
  gelu_forward_kernel<T><<<grid_for(items, kBlock), kBlock, 0, stream_of(ctx)>>>(out.ptr<T>(), inp.ptr<T>(), n, vec);
  TESSERA_CUDA_CHECK_LAUNCH();
}

template <class T>
void backward(Context& ctx, Tensor dinp, Tensor inp, Tensor dout) {
  const int64_t n = inp.numel();
  const bool vec = aligned16(dinp.data) && aligned16(inp.data) && aligned16(dout.data);
  const int64_t items = vec ? std::max<int64_t>(n / Pack<T>::size, n % Pack<T>::size) : n;
  gelu_backward_kernel<T><<<grid_for(items, kBlock), kBlock, 0, stream_of(ctx)>>>(dinp.ptr<T>(), inp.ptr<T>(),
                                                                                  dout.ptr<T>(), n, vec);
  TESSERA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void gelu_forward(Context& ctx, Tensor out, Tensor inp) {
  if (inp.dtype == DType::bf16)
    forward<bf16_t>(ctx, out, inp);
  else
    forward<float>(ctx, out, inp);
}

void gelu_backward(Context& ctx, Tensor dinp, Tensor inp, Tensor dout) {
  if (inp.dtype == DType::bf16)
    backward<bf16_t>(ctx, dinp, inp, dout);
  else
    backward<float>(ctx, dinp, inp, dout);
}

}  // namespace tessera::cuda
