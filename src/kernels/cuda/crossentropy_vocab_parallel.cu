// Vocabulary-parallel cross-entropy on the GPU: the per-rank steps between which the model
// all-reduces (max, then sums). Row kernels run one block per row with fp32 math and fixed-order
// block reductions, so the same inputs give bitwise identical results. In the backward each
// thread rewrites exactly the elements it read, so dlogits may alias logits.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/cuda_check.h"
#include "core/cuda_resources.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/ops.h"

namespace tessera::cuda {

namespace {

constexpr int kThreads = 512;  // per row
constexpr int kLossThreads = 256;
constexpr int kWarpSize = 32;

using common::from_float;
using common::Pack;
using common::to_float;

// The block's max (blockDim.x a multiple of 32); every thread gets it. `shared` holds 32 floats.
__device__ __forceinline__ float block_max(float v, float* shared) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize, warps = blockDim.x / kWarpSize;
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : -INFINITY;
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Calls f(i, x[i]) for every i in [0, valid) that this thread owns. VECTOR: the row starts
// 16-byte aligned and Vl is a multiple of the pack size, so whole packs up to ceil(valid / W) lie
// inside the row; their elements at or past `valid` (padding) are skipped.
template <class T, bool VECTOR, class F>
__device__ __forceinline__ void for_each_valid(const T* x, int64_t valid, F f) {
  constexpr int W = Pack<T>::size;
  if constexpr (VECTOR) {
    const int64_t packs = (valid + W - 1) / W;
    for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      const Pack<T> pack = common::load_pack(x + p * W);
#pragma unroll
      for (int e = 0; e < W; e++)
        if (p * W + e < valid) f(p * W + e, to_float(pack.v[e]));
    }
  } else {
    for (int64_t i = threadIdx.x; i < valid; i += blockDim.x) f(i, to_float(x[i]));
  }
}

// row_max (N) = max of the first `valid` columns of logits (N,Vl); -inf when valid == 0.
template <class T, bool VECTOR>
__global__ void vp_max_kernel(float* row_max, const T* logits, int64_t Vl, int64_t valid) {
  __shared__ float shared[kWarpSize];
  const int64_t n = blockIdx.x;
  float local = -INFINITY;
  for_each_valid<T, VECTOR>(logits + n * Vl, valid, [&](int64_t, float xi) { local = fmaxf(local, xi); });
  const float m = block_max(local, shared);
  if (threadIdx.x == 0) row_max[n] = m;
}

// sum_exp (N) = sum of exp(x - row_max) over the valid columns; target_logit (N) = the target's
// logit when this rank holds it, else 0.
template <class T, bool VECTOR>
__global__ void vp_sums_kernel(float* sum_exp, float* target_logit, const T* logits, const float* row_max,
                               const int32_t* targets, int64_t Vl, int64_t vocab_start, int64_t valid) {
  __shared__ float shared[kWarpSize];
  const int64_t n = blockIdx.x;
  const T* x = logits + n * Vl;
  const float m = row_max[n];
  float local = 0.0f;
  for_each_valid<T, VECTOR>(x, valid, [&](int64_t, float xi) { local += expf(xi - m); });
  const float sum = common::block_sum(local, shared);
  if (threadIdx.x == 0) {
    sum_exp[n] = sum;
    const int64_t t = int64_t(targets[n]) - vocab_start;
    target_logit[n] = t >= 0 && t < valid ? to_float(x[t]) : 0.0f;
  }
}

// losses (N) = log(sum_exp) + row_max - target_logit, the statistics already summed over ranks.
__global__ void vp_loss_kernel(float* losses, const float* sum_exp, const float* target_logit, const float* row_max,
                               int64_t N) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t n = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; n < N; n += stride)
    losses[n] = logf(sum_exp[n]) + row_max[n] - target_logit[n];
}

// dlogits (N,Vl) = (softmax - onehot) * dloss on the valid columns, 0 on padding. VECTOR: both
// rows start 16-byte aligned and Vl is a multiple of the pack size.
template <class T, bool VECTOR>
__global__ void vp_backward_kernel(T* dlogits, const T* logits, const float* row_max, const float* sum_exp,
                                   const int32_t* targets, int64_t Vl, int64_t vocab_start, int64_t valid,
                                   float dloss) {
  constexpr int W = Pack<T>::size;
  const int64_t n = blockIdx.x;
  const T* x = logits + n * Vl;
  T* dx = dlogits + n * Vl;
  // exp(x - max) / sum as one exp of x - logsumexp, as in the fused kernel.
  const float lse = row_max[n] + logf(sum_exp[n]);
  const int64_t target = int64_t(targets[n]) - vocab_start;  // may lie outside this rank
  auto grad = [&](int64_t i, float xi) {
    if (i >= valid) return 0.0f;
    return (expf(xi - lse) - (i == target ? 1.0f : 0.0f)) * dloss;
  };
  if constexpr (VECTOR) {
    const int64_t packs = Vl / W;
    for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      Pack<T> pack;
      if (p * W < valid) {
        pack = common::load_pack(x + p * W);
#pragma unroll
        for (int e = 0; e < W; e++) pack.v[e] = from_float<T>(grad(p * W + e, to_float(pack.v[e])));
      } else {
#pragma unroll
        for (int e = 0; e < W; e++) pack.v[e] = from_float<T>(0.0f);
      }
      common::store_pack(dx + p * W, pack);
    }
  } else {
    for (int64_t i = threadIdx.x; i < Vl; i += blockDim.x)
      dx[i] = i < valid ? from_float<T>(grad(i, to_float(x[i]))) : from_float<T>(0.0f);
  }
}

// Whole packs may be read along every row: rows start 16-byte aligned.
template <class T>
bool rows_vectorizable(int64_t Vl, const void* a, const void* b = nullptr) {
  return Vl % Pack<T>::size == 0 && common::aligned16(a) && (b == nullptr || common::aligned16(b));
}

template <class T>
void launch_max(Context& ctx, Tensor row_max, Tensor logits, int valid) {
  const int64_t N = logits.size(0), Vl = logits.size(1);
  if (N == 0) return;
  cudaStream_t stream = common::stream_of(ctx);
  if (rows_vectorizable<T>(Vl, logits.data))
    vp_max_kernel<T, true><<<unsigned(N), kThreads, 0, stream>>>(row_max.ptr<float>(), logits.ptr<T>(), Vl, valid);
  else
    vp_max_kernel<T, false><<<unsigned(N), kThreads, 0, stream>>>(row_max.ptr<float>(), logits.ptr<T>(), Vl, valid);
  TESSERA_CUDA_CHECK_LAUNCH();
}

template <class T>
void launch_sums(Context& ctx, Tensor sum_exp, Tensor target_logit, Tensor logits, Tensor row_max, Tensor targets,
                 int vocab_start, int valid) {
  const int64_t N = logits.size(0), Vl = logits.size(1);
  if (N == 0) return;
  cudaStream_t stream = common::stream_of(ctx);
  if (rows_vectorizable<T>(Vl, logits.data))
    vp_sums_kernel<T, true><<<unsigned(N), kThreads, 0, stream>>>(sum_exp.ptr<float>(), target_logit.ptr<float>(),
                                                                  logits.ptr<T>(), row_max.ptr<float>(),
                                                                  targets.ptr<int32_t>(), Vl, vocab_start, valid);
  else
    vp_sums_kernel<T, false><<<unsigned(N), kThreads, 0, stream>>>(sum_exp.ptr<float>(), target_logit.ptr<float>(),
                                                                   logits.ptr<T>(), row_max.ptr<float>(),
                                                                   targets.ptr<int32_t>(), Vl, vocab_start, valid);
  TESSERA_CUDA_CHECK_LAUNCH();
}

template <class T>
void launch_backward(Context& ctx, Tensor dlogits, Tensor logits, Tensor row_max, Tensor sum_exp, Tensor targets,
                     int vocab_start, int valid, float dloss) {
  const int64_t N = logits.size(0), Vl = logits.size(1);
  if (N == 0) return;
  cudaStream_t stream = common::stream_of(ctx);
  if (rows_vectorizable<T>(Vl, logits.data, dlogits.data))
    vp_backward_kernel<T, true><<<unsigned(N), kThreads, 0, stream>>>(
        dlogits.ptr<T>(), logits.ptr<T>(), row_max.ptr<float>(), sum_exp.ptr<float>(), targets.ptr<int32_t>(), Vl,
        vocab_start, valid, dloss);
  else
    vp_backward_kernel<T, false><<<unsigned(N), kThreads, 0, stream>>>(
        dlogits.ptr<T>(), logits.ptr<T>(), row_max.ptr<float>(), sum_exp.ptr<float>(), targets.ptr<int32_t>(), Vl,
        vocab_start, valid, dloss);
  TESSERA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void crossentropy_vp_max(Context& ctx, Tensor row_max, Tensor logits, int valid) {
  if (logits.dtype == DType::bf16)
    launch_max<__nv_bfloat16>(ctx, row_max, logits, valid);
  else
    launch_max<float>(ctx, row_max, logits, valid);
}

void crossentropy_vp_sums(Context& ctx, Tensor sum_exp, Tensor target_logit, Tensor logits, Tensor row_max,
                          Tensor targets, int vocab_start, int valid) {
  if (logits.dtype == DType::bf16)
    launch_sums<__nv_bfloat16>(ctx, sum_exp, target_logit, logits, row_max, targets, vocab_start, valid);
  else
    launch_sums<float>(ctx, sum_exp, target_logit, logits, row_max, targets, vocab_start, valid);
}

void crossentropy_vp_loss(Context& ctx, Tensor losses, Tensor sum_exp, Tensor target_logit, Tensor row_max) {
  const int64_t N = losses.size(0);
  if (N == 0) return;
  vp_loss_kernel<<<common::grid_for(N, kLossThreads), kLossThreads, 0, common::stream_of(ctx)>>>(
      losses.ptr<float>(), sum_exp.ptr<float>(), target_logit.ptr<float>(), row_max.ptr<float>(), N);
  TESSERA_CUDA_CHECK_LAUNCH();
}

void crossentropy_vp_backward(Context& ctx, Tensor dlogits, Tensor logits, Tensor row_max, Tensor sum_exp,
                              Tensor targets, int vocab_start, int valid, float dloss) {
  if (logits.dtype == DType::bf16)
    launch_backward<__nv_bfloat16>(ctx, dlogits, logits, row_max, sum_exp, targets, vocab_start, valid, dloss);
  else
    launch_backward<float>(ctx, dlogits, logits, row_max, sum_exp, targets, vocab_start, valid, dloss);
}

}  // namespace tessera::cuda
