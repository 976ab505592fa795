// Residual add on the GPU: elementwise, 16-byte packs with a scalar tail.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/ops.h"

namespace tessera::cuda {

namespace {

using namespace common;

constexpr int kBlock = 256;

template <class T>
__global__ void residual_forward_kernel(T* out, const T* a, const T* b, int64_t n, bool vectorized) {
  constexpr int P = Pack<T>::size;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = vectorized ? n / P : 0;
  for (int64_t i = first; i < packs; i += stride) {
    Pack<T> x = load_pack(a + i * P);
    const Pack<T> y = load_pack(b + i * P);
#pragma unroll
    for (int k = 0; k < P; ++k) x.v[k] = from_float<T>(to_float(x.v[k]) + to_float(y.v[k]));
    store_pack(out + i * P, x);
  }
  for (int64_t i = packs * P + first; i < n; i += stride) out[i] = from_float<T>(to_float(a[i]) + to_float(b[i]));
}

template <class T>
void forward(Context& ctx, Tensor out, Tensor a, Tensor b) {
  const int64_t n = out.numel();
  const bool vec = aligned16(out.data) && aligned16(a.data) && aligned16(b.data);
  const int64_t items = vec ? std::max<int64_t>(n / Pack<T>::size, n % Pack<T>::size) : n;
  residual_forward_kernel<T><<<grid_for(items, kBlock), kBlock, 0, stream_of(ctx)>>>(out.ptr<T>(), a.ptr<T>(),
                                                                                     b.ptr<T>(), n, vec);
  TESSERA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void residual_forward(Context& ctx, Tensor out, Tensor a, Tensor b) {
  if (out.dtype == DType::bf16)
    forward<bf16_t>(ctx, out, a, b);
  else
    forward<float>(ctx, out, a, b);
}

}  // namespace tessera::cuda
