// dtype conversion and in-place scaling on the GPU (bf16 rounds to nearest even).
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/ops.h"

namespace tessera::cuda {

namespace {

using namespace common;

constexpr int kBlock = 256;

// Scalar elements, so that any alignment of either side works; the loads still coalesce.
template <class Dst, class Src>
__global__ void convert_kernel(Dst* dst, const Src* src, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = from_float<Dst>(to_float(src[i]));
}

template <class T>
__global__ void scale_kernel(T* t, float factor, int64_t n, bool vectorized) {
  constexpr int P = Pack<T>::size;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = vectorized ? n / P : 0;
  for (int64_t i = first; i < packs; i += stride) {
    Pack<T> x = load_pack(t + i * P);
#pragma unroll
    for (int k = 0; k < P; ++k) x.v[k] = from_float<T>(to_float(x.v[k]) * factor);
    store_pack(t + i * P, x);
  }
  for (int64_t i = packs * P + first; i < n; i += stride) t[i] = from_float<T>(to_float(t[i]) * factor);
}

template <class T>
void scale_as(Context& ctx, Tensor t, float factor) {
  const int64_t n = t.numel();
  const bool vec = aligned16(t.data);
  const int64_t items = vec ? std::max<int64_t>(n / Pack<T>::size, n % Pack<T>::size) : n;
  scale_kernel<T><<<grid_for(items, kBlock), kBlock, 0, stream_of(ctx)>>>(t.ptr<T>(), factor, n, vec);
  TESSERA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void convert(Context& ctx, Tensor dst, Tensor src) {
  const int64_t n = src.numel();
  if (dst.dtype == src.dtype) {
    if (dst.data != src.data)
      TESSERA_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, src.nbytes(), cudaMemcpyDeviceToDevice, stream_of(ctx)));
    return;
  }
  if (dst.dtype == DType::bf16)
    convert_kernel<<<grid_for(n, kBlock), kBlock, 0, stream_of(ctx)>>>(dst.ptr<bf16_t>(), src.ptr<float>(), n);
  else
    convert_kernel<<<grid_for(n, kBlock), kBlock, 0, stream_of(ctx)>>>(dst.ptr<float>(), src.ptr<bf16_t>(), n);
  TESSERA_CUDA_CHECK_LAUNCH();
}

void scale(Context& ctx, Tensor t, float factor) {
  if (t.dtype == DType::bf16)
    scale_as<bf16_t>(ctx, t, factor);
  else
    scale_as<float>(ctx, t, factor);
}

}  // namespace tessera::cuda
