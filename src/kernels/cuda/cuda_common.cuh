// Device helpers shared by the CUDA kernels (private to src/kernels/cuda): element loads and
// stores in float, 16-byte packed vectors, deterministic warp/block reductions, launch sizes.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "core/cuda_check.h"
#include "core/cuda_resources.h"
#include "tessera/context.h"
#include "tessera/tensor.h"

namespace tessera::cuda::common {

// ---------------------------------------------------------------------------------------------
// Element types: kernels are templated on float or __nv_bfloat16 and compute in float.

using bf16_t = __nv_bfloat16;

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bf16_t x) { return __bfloat162float(x); }

template <class T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
// Round to nearest even, the same rounding as tessera::float_to_bf16 on the host.
template <>
__device__ __forceinline__ bf16_t from_float<bf16_t>(float x) {
  return __float2bfloat16_rn(x);
}

// ---------------------------------------------------------------------------------------------
// 16-byte packs: 4 floats or 8 bf16, loaded and stored with one 128-bit access.

template <class T>
struct alignas(16) Pack {
  static constexpr int size = int(16 / sizeof(T));
  T v[size];
};

template <class T>
__device__ __forceinline__ Pack<T> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T>*>(p);
}
template <class T>
__device__ __forceinline__ void store_pack(T* p, const Pack<T>& pack) {
  *reinterpret_cast<Pack<T>*>(p) = pack;
}
// Cache-streaming store for outputs not read again soon.
template <class T>
__device__ __forceinline__ void store_pack_cs(T* p, const Pack<T>& pack) {
  __stcs(reinterpret_cast<float4*>(p), *reinterpret_cast<const float4*>(&pack));
}

__host__ __device__ inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Largest power of two (up to 256) dividing the address: the alignment cuBLASLt may assume.
inline uint32_t pointer_alignment(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && (a & (align - 1)) != 0) align >>= 1;
  return align;
}

// ---------------------------------------------------------------------------------------------
// Reductions in a fixed order (shuffle trees), so results are bitwise reproducible.

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <class T>
__device__ __forceinline__ T warp_max(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets the
// result. `shared` holds at least 32 elements; the call synchronises the block, so it may be
// called repeatedly with the same `shared`.
template <class T>
__device__ __forceinline__ T block_sum(T v, T* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();  // `shared` may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : T(0);
  return warp_sum(v);
}

// ---------------------------------------------------------------------------------------------
// Launch sizes and the context's stream.

template <class A, class B>
__host__ __device__ constexpr A ceil_div(A a, B b) {
  return (a + A(b) - 1) / A(b);
}

// Blocks for a grid-stride loop over n items: enough to fill the GPU, never more than needed.
inline unsigned grid_for(int64_t n, int block, int64_t max_blocks = 65536) {
  int64_t blocks = ceil_div(n, int64_t(block));
  if (blocks < 1) blocks = 1;
  if (blocks > max_blocks) blocks = max_blocks;
  return unsigned(blocks);
}

inline cudaStream_t stream_of(const Context& ctx) { return ctx.cuda()->stream; }

// Offset of the next `align`-byte boundary; for carving several arrays out of one scratch area.
inline size_t align_up(size_t bytes, size_t align = 256) { return (bytes + align - 1) / align * align; }

}  // namespace tessera::cuda::common
