// Causal self-attention on the GPU: the entry points choose cuDNN's fused flash attention
// (attention_cudnn.cpp: bf16, head size a multiple of 8 up to 128) or the plain kernels below
// (float32, bf16, any head size up to 256).
//
// The plain kernels favour clarity and determinism over speed: one warp per (b, h, row), the
// head dimension spread over the lanes, every dot product reduced by a butterfly shuffle (all
// lanes get the same bits), fp32 accumulation in a fixed order, and no atomics: dq is computed
// per query row, dk and dv per key row by looping over the queries that attend to it.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <string>
#include <type_traits>

#include "core/cuda_check.h"
#include "core/cuda_resources.h"
#include "kernels/cuda/attention_cudnn.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/ops.h"
#include "tessera/error.h"

namespace tessera::cuda {

namespace {

constexpr int kWarpSize = 32;
constexpr int kWarpsPerBlock = 4;
constexpr int kMaxHeadSize = 256;  // 8 elements per lane

using common::warp_sum;  // butterfly: every lane ends with the same, order-fixed sum

template <class T>
__device__ __forceinline__ float load_float(const T* p) {
  return common::to_float(*p);
}
template <class T>
__device__ __forceinline__ void store_float(T* p, float v) {
  *p = common::from_float<T>(v);
}

// Where one warp's row lives: row = (b*NH + h)*T + t, the layout of stats (B,NH,T).
struct RowIndex {
  int64_t b, h, t;
};

__device__ __forceinline__ RowIndex row_index(int64_t row, int T, int NH) {
  return {row / (int64_t(T) * NH), (row / T) % NH, row % T};
}

// Lane `lane` holds elements lane, lane+32, ... of a head vector: PER_LANE of them.
template <int PER_LANE, class T>
__device__ __forceinline__ void load_head(float (&dst)[PER_LANE], const T* src, int lane, int HS) {
#pragma unroll
  for (int r = 0; r < PER_LANE; r++) {
    int i = lane + r * kWarpSize;
    dst[r] = i < HS ? load_float(src + i) : 0.0f;
  }
}

template <int PER_LANE, class T>
__device__ __forceinline__ void store_head(T* dst, const float (&src)[PER_LANE], float factor, int lane, int HS) {
#pragma unroll
  for (int r = 0; r < PER_LANE; r++) {
    int i = lane + r * kWarpSize;
    if (i < HS) store_float(dst + i, src[r] * factor);
  }
}

// Dot product of a lane-held vector with a head vector in memory, reduced over the warp.
template <int PER_LANE, class T>
__device__ __forceinline__ float warp_dot(const float (&a)[PER_LANE], const T* b, int lane, int HS) {
  float partial = 0.0f;
#pragma unroll
  for (int r = 0; r < PER_LANE; r++) {
    int i = lane + r * kWarpSize;
    if (i < HS) partial += a[r] * load_float(b + i);
  }
  return warp_sum(partial);
}

// out (B,T,C), stats (B,NH,T): one warp per query row, online softmax over keys 0..t.
template <int PER_LANE, class T>
__global__ void attention_forward_kernel(T* out, float* stats, const T* qkv, int B, int T_, int NH, int HS,
                                         float scale) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
  if (row >= int64_t(B) * NH * T_) return;
  const RowIndex at = row_index(row, T_, NH);
  const int64_t C = int64_t(NH) * HS, C3 = 3 * C;
  const T* seq = qkv + at.b * T_ * C3 + at.h * HS;  // head h of token 0 of this sequence: q, +C k, +2C v

  float q[PER_LANE], acc[PER_LANE];
  load_head(q, seq + at.t * C3, lane, HS);
#pragma unroll
  for (int r = 0; r < PER_LANE; r++) acc[r] = 0.0f;
  float maxval = -INFINITY, sum = 0.0f;
  for (int64_t j = 0; j <= at.t; j++) {
    const float s = warp_dot(q, seq + j * C3 + C, lane, HS) * scale;
    const float new_max = fmaxf(maxval, s);
    const float correction = expf(maxval - new_max);  // 0 on the first key (maxval = -inf)
    const float p = expf(s - new_max);
    sum = sum * correction + p;
    const T* v = seq + j * C3 + 2 * C;
#pragma unroll
    for (int r = 0; r < PER_LANE; r++) {
      int i = lane + r * kWarpSize;
      acc[r] = acc[r] * correction + (i < HS ? p * load_float(v + i) : 0.0f);
    }
    maxval = new_max;
  }
  store_head(out + (at.b * T_ + at.t) * C + at.h * HS, acc, 1.0f / sum, lane, HS);
  if (lane == 0) stats[row] = maxval + logf(sum);
}

// D (B,NH,T) = rowsum(dout * out) per head: the softmax backward's correction term.
template <int PER_LANE, class T>
__global__ void attention_backward_d_kernel(float* D, const T* dout, const T* out, int B, int T_, int NH, int HS) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
  if (row >= int64_t(B) * NH * T_) return;
  const RowIndex at = row_index(row, T_, NH);
  const int64_t offset = (at.b * T_ + at.t) * int64_t(NH) * HS + at.h * HS;
  float dO[PER_LANE];
  load_head(dO, dout + offset, lane, HS);
  const float d = warp_dot(dO, out + offset, lane, HS);
  if (lane == 0) D[row] = d;
}

// dq of one query row t: sum over keys j <= t of dS_tj k_j, with P recomputed from the stats.
template <int PER_LANE, class T>
__global__ void attention_backward_dq_kernel(T* dqkv, const T* dout, const T* qkv, const float* stats,
                                             const float* D, int B, int T_, int NH, int HS, float scale) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
  if (row >= int64_t(B) * NH * T_) return;
  const RowIndex at = row_index(row, T_, NH);
  const int64_t C = int64_t(NH) * HS, C3 = 3 * C;
  const T* seq = qkv + at.b * T_ * C3 + at.h * HS;

  float q[PER_LANE], dO[PER_LANE], dq[PER_LANE];
  load_head(q, seq + at.t * C3, lane, HS);
  load_head(dO, dout + (at.b * T_ + at.t) * C + at.h * HS, lane, HS);
#pragma unroll
  for (int r = 0; r < PER_LANE; r++) dq[r] = 0.0f;
  const float lse = stats[row], d = D[row];
  for (int64_t j = 0; j <= at.t; j++) {
    const T* k = seq + j * C3 + C;
    const float p = expf(warp_dot(q, k, lane, HS) * scale - lse);
    const float ds = p * (warp_dot(dO, seq + j * C3 + 2 * C, lane, HS) - d);
#pragma unroll
    for (int r = 0; r < PER_LANE; r++) {
      int i = lane + r * kWarpSize;
      if (i < HS) dq[r] += ds * load_float(k + i);
    }
  }
  store_head(dqkv + (at.b * T_ + at.t) * C3 + at.h * HS, dq, scale, lane, HS);
}

// dk and dv of one key row j: sums over the queries t >= j that attend to it.
template <int PER_LANE, class T>
__global__ void attention_backward_dkv_kernel(T* dqkv, const T* dout, const T* qkv, const float* stats,
                                              const float* D, int B, int T_, int NH, int HS, float scale) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
  if (row >= int64_t(B) * NH * T_) return;
  const RowIndex at = row_index(row, T_, NH);  // at.t is the key index j here
  const int64_t C = int64_t(NH) * HS, C3 = 3 * C;
  const T* seq = qkv + at.b * T_ * C3 + at.h * HS;
  const T* dseq = dout + at.b * T_ * C + at.h * HS;
  const float* row_stats = stats + (row - at.t);  // stats and D of (b, h, query 0)
  const float* row_D = D + (row - at.t);

  float k[PER_LANE], v[PER_LANE], dk[PER_LANE], dv[PER_LANE];
  load_head(k, seq + at.t * C3 + C, lane, HS);
  load_head(v, seq + at.t * C3 + 2 * C, lane, HS);
#pragma unroll
  for (int r = 0; r < PER_LANE; r++) dk[r] = dv[r] = 0.0f;
  for (int64_t t = at.t; t < T_; t++) {
    const T* q = seq + t * C3;
    const T* dO = dseq + t * C;
    const float p = expf(warp_dot(k, q, lane, HS) * scale - row_stats[t]);
    const float ds = p * (warp_dot(v, dO, lane, HS) - row_D[t]);
#pragma unroll
    for (int r = 0; r < PER_LANE; r++) {
      int i = lane + r * kWarpSize;
      if (i < HS) {
        dv[r] += p * load_float(dO + i);
        dk[r] += ds * load_float(q + i);
      }
    }
  }
  T* dst = dqkv + (at.b * T_ + at.t) * C3 + at.h * HS;
  store_head(dst + C, dk, scale, lane, HS);
  store_head(dst + 2 * C, dv, 1.0f, lane, HS);
}

struct Launch {
  int B, T, NH, HS;
  int64_t rows;
  dim3 grid, block;
  float scale;
};

Launch plan(const Tensor& qkv, int n_head) {
  Launch l;
  l.B = int(qkv.size(0));
  l.T = int(qkv.size(1));
  l.NH = n_head;
  l.HS = int(qkv.size(2) / 3 / n_head);
  if (l.HS > kMaxHeadSize)
    throw config_error("attention: head size " + std::to_string(l.HS) + " exceeds the " +
                           std::to_string(kMaxHeadSize) + " the plain CUDA attention kernels support",
                       "use a head size of at most 128 with bf16 and cuDNN, or at most 256 otherwise");
  l.rows = int64_t(l.B) * l.NH * l.T;
  l.grid = dim3(unsigned((l.rows + kWarpsPerBlock - 1) / kWarpsPerBlock));
  l.block = dim3(kWarpsPerBlock * kWarpSize);
  l.scale = 1.0f / sqrtf(float(l.HS));
  return l;
}

// Calls f(std::integral_constant<int, PER_LANE>) with the smallest of 1, 2, 4, 8 elements per
// lane that covers the head size.
template <class F>
void with_per_lane(int HS, F&& f) {
  if (HS <= 32) f(std::integral_constant<int, 1>());
  else if (HS <= 64) f(std::integral_constant<int, 2>());
  else if (HS <= 128) f(std::integral_constant<int, 4>());
  else f(std::integral_constant<int, 8>());
}

template <class T>
void plain_forward(Context& ctx, Tensor out, Tensor stats, Tensor qkv, int n_head) {
  const Launch l = plan(qkv, n_head);
  cudaStream_t stream = common::stream_of(ctx);
  with_per_lane(l.HS, [&](auto per_lane) {
    attention_forward_kernel<decltype(per_lane)::value, T><<<l.grid, l.block, 0, stream>>>(
        out.ptr<T>(), stats.ptr<float>(), qkv.ptr<T>(), l.B, l.T, l.NH, l.HS, l.scale);
    TESSERA_CUDA_CHECK_LAUNCH();
  });
}

template <class T>
void plain_backward(Context& ctx, Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor stats, int n_head) {
  const Launch l = plan(qkv, n_head);
  cudaStream_t stream = common::stream_of(ctx);
  // D lives in the shared scratch area only for the duration of these launches on this stream.
  float* D = static_cast<float*>(ctx.cuda()->scratch(size_t(l.rows) * sizeof(float)));  // (B,NH,T)
  with_per_lane(l.HS, [&](auto per_lane) {
    constexpr int P = decltype(per_lane)::value;
    attention_backward_d_kernel<P, T><<<l.grid, l.block, 0, stream>>>(D, dout.ptr<T>(), out.ptr<T>(), l.B, l.T,
                                                                       l.NH, l.HS);
    TESSERA_CUDA_CHECK_LAUNCH();
    attention_backward_dq_kernel<P, T><<<l.grid, l.block, 0, stream>>>(
        dqkv.ptr<T>(), dout.ptr<T>(), qkv.ptr<T>(), stats.ptr<float>(), D, l.B, l.T, l.NH, l.HS, l.scale);
    TESSERA_CUDA_CHECK_LAUNCH();
    attention_backward_dkv_kernel<P, T><<<l.grid, l.block, 0, stream>>>(
        dqkv.ptr<T>(), dout.ptr<T>(), qkv.ptr<T>(), stats.ptr<float>(), D, l.B, l.T, l.NH, l.HS, l.scale);
    TESSERA_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace

void attention_forward(Context& ctx, Tensor out, Tensor stats, Tensor qkv, int n_head) {
  if (cudnn_attention::try_forward(ctx, out, stats, qkv, n_head)) return;
  if (qkv.dtype == DType::bf16)
    plain_forward<__nv_bfloat16>(ctx, out, stats, qkv, n_head);
  else
    plain_forward<float>(ctx, out, stats, qkv, n_head);
}

void attention_backward(Context& ctx, Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor stats, int n_head) {
  if (cudnn_attention::try_backward(ctx, dqkv, dout, qkv, out, stats, n_head)) return;
  if (qkv.dtype == DType::bf16)
    plain_backward<__nv_bfloat16>(ctx, dqkv, dout, qkv, out, stats, n_head);
  else
    plain_backward<float>(ctx, dqkv, dout, qkv, out, stats, n_head);
}

}  // namespace tessera::cuda
