// Fused softmax + cross-entropy on the GPU: one block per row. Each thread runs an online
// (max, sum) over its strided share of the real columns, the block combines those in a fixed
// order, then every thread rewrites the elements it read, so dlogits may alias logits.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/cuda_check.h"
#include "core/cuda_resources.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/ops.h"

namespace tessera::cuda {

namespace {

constexpr int kThreads = 512;
constexpr int kWarpSize = 32;

using common::from_float;
using common::Pack;
using common::to_float;

// A running softmax denominator: sum of exp(x - max) over the elements seen.
struct MaxSum {
  float max;
  float sum;
};

__device__ __forceinline__ MaxSum add(MaxSum a, float x) {
  if (x > a.max) return {x, a.sum * expf(a.max - x) + 1.0f};
  return {a.max, a.sum + expf(x - a.max)};
}

__device__ __forceinline__ MaxSum combine(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.max, b.max);
  if (m == -INFINITY) return {m, 0.0f};  // both empty
  return {m, a.sum * expf(a.max - m) + b.sum * expf(b.max - m)};
}

// The block's (max, sum): warps by butterfly shuffles, then warp 0 over the warps' results,
// in the same order every time.
__device__ MaxSum block_combine(MaxSum local) {
  __shared__ MaxSum per_warp[kThreads / kWarpSize];
  __shared__ MaxSum total;
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
    MaxSum other{__shfl_xor_sync(0xffffffffu, local.max, offset), __shfl_xor_sync(0xffffffffu, local.sum, offset)};
    local = combine(local, other);
  }
  if (lane == 0) per_warp[warp] = local;
  __syncthreads();
  if (warp == 0) {
    MaxSum m = lane < kThreads / kWarpSize ? per_warp[lane] : MaxSum{-INFINITY, 0.0f};
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
      MaxSum other{__shfl_xor_sync(0xffffffffu, m.max, offset), __shfl_xor_sync(0xffffffffu, m.sum, offset)};
      m = combine(m, other);
    }
    if (lane == 0) total = m;
  }
  __syncthreads();
  return total;
}

// VECTOR: the row starts 16-byte aligned and Vp is a multiple of the pack size, so whole packs
// can be read up to Vp; elements at or past vocab_size are skipped (their gradient is 0).
template <class T, bool VECTOR>
__global__ void crossentropy_kernel(float* losses, T* dlogits, const T* logits, const int32_t* targets,
                                    int64_t Vp, int64_t V, float dloss) {
  constexpr int W = Pack<T>::size;
  const int64_t n = blockIdx.x;
  const T* x = logits + n * Vp;
  const int64_t target = targets[n];
  __shared__ float target_logit;
  // Read before the barrier inside block_combine: no thread writes the row before that.
  if (threadIdx.x == 0) target_logit = to_float(x[target]);

  MaxSum local{-INFINITY, 0.0f};
  if constexpr (VECTOR) {
    const int64_t packs = (V + W - 1) / W;
    for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      const Pack<T> pack = common::load_pack(x + p * W);
#pragma unroll
      for (int e = 0; e < W; e++)
        if (p * W + e < V) local = add(local, to_float(pack.v[e]));
    }
  } else {
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) local = add(local, to_float(x[i]));
  }
  const MaxSum row = block_combine(local);
  const float lse = row.max + logf(row.sum);
  if (threadIdx.x == 0) losses[n] = lse - target_logit;
  if (dlogits == nullptr) return;

  // Each element's gradient, written by the thread that read it (for in-place use).
  T* dx = dlogits + n * Vp;
  auto grad = [&](int64_t i, float xi) {
    if (i >= V) return 0.0f;
    return (expf(xi - lse) - (i == target ? 1.0f : 0.0f)) * dloss;
  };
  if constexpr (VECTOR) {
    const int64_t packs = Vp / W;
    for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      Pack<T> pack = common::load_pack(x + p * W);
#pragma unroll
      for (int e = 0; e < W; e++) pack.v[e] = from_float<T>(grad(p * W + e, to_float(pack.v[e])));
      common::store_pack(dx + p * W, pack);
    }
  } else {
    for (int64_t i = threadIdx.x; i < Vp; i += blockDim.x) dx[i] = from_float<T>(grad(i, to_float(x[i])));
  }
}

template <class T>
void launch(Context& ctx, Tensor losses, Tensor dlogits, Tensor logits, Tensor targets, int vocab_size,
            float dloss) {
  const int64_t N = logits.size(0), Vp = logits.size(1);
  if (N == 0) return;
  T* dx = dlogits.empty() ? nullptr : dlogits.ptr<T>();
  constexpr int W = Pack<T>::size;
  const bool vector = Vp % W == 0 && common::aligned16(logits.data) && (dx == nullptr || common::aligned16(dx));
  cudaStream_t stream = common::stream_of(ctx);
  if (vector)
    crossentropy_kernel<T, true><<<unsigned(N), kThreads, 0, stream>>>(
        losses.ptr<float>(), dx, logits.ptr<T>(), targets.ptr<int32_t>(), Vp, vocab_size, dloss);
  else
    crossentropy_kernel<T, false><<<unsigned(N), kThreads, 0, stream>>>(
        losses.ptr<float>(), dx, logits.ptr<T>(), targets.ptr<int32_t>(), Vp, vocab_size, dloss);
  TESSERA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void crossentropy_forward_backward(Context& ctx, Tensor losses, Tensor dlogits, Tensor logits, Tensor targets,
                                   int vocab_size, float dloss) {
  if (logits.dtype == DType::bf16)
    launch<__nv_bfloat16>(ctx, losses, dlogits, logits, targets, vocab_size, dloss);
  else
    launch<float>(ctx, losses, dlogits, logits, targets, vocab_size, dloss);
}

}  // namespace tessera::cuda
