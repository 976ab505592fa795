// Causal self-attention with grouped-query heads on the GPU: the entry points choose cuDNN's fused
// flash attention (attention_cudnn.cpp: bf16, head size a multiple of 8 up to 128) or the plain
// kernels below (float32, bf16, any head size up to 256).
//
// The plain kernels favour clarity and determinism over speed: one warp per (b, h, row), the
// head dimension spread over the lanes, every dot product reduced by a butterfly shuffle (all
// lanes get the same bits), fp32 accumulation in a fixed order, and no atomics: dq is computed
// per query row, dk and dv per key row of a key/value head by looping over the query heads of its
// group and the queries that attend to it.
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

// The heads of one token in qkv (B,T,(NH+2*NKV)*HS): query head h at h*HS, key head g at
// k_off + g*HS, value head g at v_off + g*HS; query head h uses key/value head h / group.
struct Heads {
  int B, T, NH, NKV, HS;
  int64_t row;          // qkv elements per token, (NH+2*NKV)*HS
  int64_t C;            // out and dout elements per token, NH*HS
  int64_t k_off, v_off;  // NH*HS, (NH+NKV)*HS
  int group;            // NH / NKV
};

// Where one warp's row lives: row = (b*H + h)*T + t for H heads, the layout of stats (B,NH,T).
struct RowIndex {
  int64_t b, h, t;
};

__device__ __forceinline__ RowIndex row_index(int64_t row, int T, int H) {
  return {row / (int64_t(T) * H), (row / T) % H, row % T};
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

// out (B,T,NH*HS), stats (B,NH,T): one warp per query row, online softmax over keys 0..t.
template <int PER_LANE, class T>
__global__ void attention_forward_kernel(T* out, float* stats, const T* qkv, Heads L, float scale) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
  if (row >= int64_t(L.B) * L.NH * L.T) return;
  const RowIndex at = row_index(row, L.T, L.NH);
  const T* seq = qkv + at.b * L.T * L.row;  // token 0 of this sequence
  const T* keys = seq + L.k_off + (at.h / L.group) * L.HS;
  const T* values = seq + L.v_off + (at.h / L.group) * L.HS;

  float q[PER_LANE], acc[PER_LANE];
  load_head(q, seq + at.t * L.row + at.h * L.HS, lane, L.HS);
#pragma unroll
  for (int r = 0; r < PER_LANE; r++) acc[r] = 0.0f;
  float maxval = -INFINITY, sum = 0.0f;
  for (int64_t j = 0; j <= at.t; j++) {
    const float s = warp_dot(q, keys + j * L.row, lane, L.HS) * scale;
    const float new_max = fmaxf(maxval, s);
    const float correction = expf(maxval - new_max);  // 0 on the first key (maxval = -inf)
    const float p = expf(s - new_max);
    sum = sum * correction + p;
    const T* v = values + j * L.row;
#pragma unroll
    for (int r = 0; r < PER_LANE; r++) {
      int i = lane + r * kWarpSize;
      acc[r] = acc[r] * correction + (i < L.HS ? p * load_float(v + i) : 0.0f);
    }
    maxval = new_max;
  }
  store_head(out + (at.b * L.T + at.t) * L.C + at.h * L.HS, acc, 1.0f / sum, lane, L.HS);
  if (lane == 0) stats[row] = maxval + logf(sum);
}

// D (B,NH,T) = rowsum(dout * out) per head: the softmax backward's correction term.
template <int PER_LANE, class T>
__global__ void attention_backward_d_kernel(float* D, const T* dout, const T* out, Heads L) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
  if (row >= int64_t(L.B) * L.NH * L.T) return;
  const RowIndex at = row_index(row, L.T, L.NH);
  const int64_t offset = (at.b * L.T + at.t) * L.C + at.h * L.HS;
  float dO[PER_LANE];
  load_head(dO, dout + offset, lane, L.HS);
  const float d = warp_dot(dO, out + offset, lane, L.HS);
  if (lane == 0) D[row] = d;
}

// dq of one query row t: sum over keys j <= t of dS_tj k_j, with P recomputed from the stats.
template <int PER_LANE, class T>
__global__ void attention_backward_dq_kernel(T* dqkv, const T* dout, const T* qkv, const float* stats,
                                             const float* D, Heads L, float scale) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
  if (row >= int64_t(L.B) * L.NH * L.T) return;
  const RowIndex at = row_index(row, L.T, L.NH);
  const T* seq = qkv + at.b * L.T * L.row;
  const T* keys = seq + L.k_off + (at.h / L.group) * L.HS;
  const T* values = seq + L.v_off + (at.h / L.group) * L.HS;

  float q[PER_LANE], dO[PER_LANE], dq[PER_LANE];
  load_head(q, seq + at.t * L.row + at.h * L.HS, lane, L.HS);
  load_head(dO, dout + (at.b * L.T + at.t) * L.C + at.h * L.HS, lane, L.HS);
#pragma unroll
  for (int r = 0; r < PER_LANE; r++) dq[r] = 0.0f;
  const float lse = stats[row], d = D[row];
  for (int64_t j = 0; j <= at.t; j++) {
    const T* k = keys + j * L.row;
    const float p = expf(warp_dot(q, k, lane, L.HS) * scale - lse);
    const float ds = p * (warp_dot(dO, values + j * L.row, lane, L.HS) - d);
#pragma unroll
    for (int r = 0; r < PER_LANE; r++) {
      int i = lane + r * kWarpSize;
      if (i < L.HS) dq[r] += ds * load_float(k + i);
    }
  }
  store_head(dqkv + (at.b * L.T + at.t) * L.row + at.h * L.HS, dq, scale, lane, L.HS);
}

// dk and dv of one key row j of key/value head g: sums over the group's query heads, in head
// order, and over the queries t >= j that attend to it. Rows are (b*NKV + g)*T + j.
template <int PER_LANE, class T>
__global__ void attention_backward_dkv_kernel(T* dqkv, const T* dout, const T* qkv, const float* stats,
                                              const float* D, Heads L, float scale) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
  if (row >= int64_t(L.B) * L.NKV * L.T) return;
  const RowIndex at = row_index(row, L.T, L.NKV);  // at.h is the key/value head g, at.t the key index j
  const T* seq = qkv + at.b * L.T * L.row;
  const T* dseq = dout + at.b * L.T * L.C;

  float k[PER_LANE], v[PER_LANE], dk[PER_LANE], dv[PER_LANE];
  load_head(k, seq + at.t * L.row + L.k_off + at.h * L.HS, lane, L.HS);
  load_head(v, seq + at.t * L.row + L.v_off + at.h * L.HS, lane, L.HS);
#pragma unroll
  for (int r = 0; r < PER_LANE; r++) dk[r] = dv[r] = 0.0f;
  for (int h = int(at.h) * L.group; h < (int(at.h) + 1) * L.group; h++) {
    const float* head_stats = stats + (at.b * L.NH + h) * L.T;  // stats and D of (b, h, query 0)
    const float* head_D = D + (at.b * L.NH + h) * L.T;
    for (int64_t t = at.t; t < L.T; t++) {
      const T* q = seq + t * L.row + h * L.HS;
      const T* dO = dseq + t * L.C + h * L.HS;
      const float p = expf(warp_dot(k, q, lane, L.HS) * scale - head_stats[t]);
      const float ds = p * (warp_dot(v, dO, lane, L.HS) - head_D[t]);
#pragma unroll
      for (int r = 0; r < PER_LANE; r++) {
        int i = lane + r * kWarpSize;
        if (i < L.HS) {
          dv[r] += p * load_float(dO + i);
          dk[r] += ds * load_float(q + i);
        }
      }
    }
  }
  T* dst = dqkv + (at.b * L.T + at.t) * L.row;
  store_head(dst + L.k_off + at.h * L.HS, dk, scale, lane, L.HS);
  store_head(dst + L.v_off + at.h * L.HS, dv, 1.0f, lane, L.HS);
}

// One warp per row, kWarpsPerBlock rows per block of kBlock threads.
constexpr unsigned kBlock = kWarpsPerBlock * kWarpSize;
dim3 blocks_for(int64_t rows) { return dim3(unsigned((rows + kWarpsPerBlock - 1) / kWarpsPerBlock)); }

Heads heads_of(const Tensor& qkv, int n_head, int n_kv_head) {
  Heads L;
  L.B = int(qkv.size(0));
  L.T = int(qkv.size(1));
  L.NH = n_head;
  L.NKV = n_kv_head;
  L.HS = int(qkv.size(2) / (n_head + 2 * n_kv_head));
  if (L.HS > kMaxHeadSize)
    throw config_error("attention: head size " + std::to_string(L.HS) + " exceeds the " +
                           std::to_string(kMaxHeadSize) + " the plain CUDA attention kernels support",
                       "use a head size of at most 128 with bf16 and cuDNN, or at most 256 otherwise");
  L.row = int64_t(n_head + 2 * n_kv_head) * L.HS;
  L.C = int64_t(n_head) * L.HS;
  L.k_off = L.C;
  L.v_off = int64_t(n_head + n_kv_head) * L.HS;
  L.group = n_head / n_kv_head;
  return L;
}

float scale_of(const Heads& L) { return 1.0f / sqrtf(float(L.HS)); }

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
void plain_forward(Context& ctx, Tensor out, Tensor stats, Tensor qkv, int n_head, int n_kv_head) {
  const Heads L = heads_of(qkv, n_head, n_kv_head);
  cudaStream_t stream = common::stream_of(ctx);
  with_per_lane(L.HS, [&](auto per_lane) {
    attention_forward_kernel<decltype(per_lane)::value, T>
        <<<blocks_for(int64_t(L.B) * L.NH * L.T), kBlock, 0, stream>>>(out.ptr<T>(), stats.ptr<float>(),
                                                                        qkv.ptr<T>(), L, scale_of(L));
    TESSERA_CUDA_CHECK_LAUNCH();
  });
}

template <class T>
void plain_backward(Context& ctx, Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor stats, int n_head,
                    int n_kv_head) {
  const Heads L = heads_of(qkv, n_head, n_kv_head);
  const int64_t query_rows = int64_t(L.B) * L.NH * L.T, key_rows = int64_t(L.B) * L.NKV * L.T;
  cudaStream_t stream = common::stream_of(ctx);
  // D lives in the shared scratch area only for the duration of these launches on this stream.
  float* D = static_cast<float*>(ctx.cuda()->scratch(size_t(query_rows) * sizeof(float)));  // (B,NH,T)
  with_per_lane(L.HS, [&](auto per_lane) {
    constexpr int P = decltype(per_lane)::value;
    attention_backward_d_kernel<P, T><<<blocks_for(query_rows), kBlock, 0, stream>>>(D, dout.ptr<T>(),
                                                                                      out.ptr<T>(), L);
    TESSERA_CUDA_CHECK_LAUNCH();
    attention_backward_dq_kernel<P, T><<<blocks_for(query_rows), kBlock, 0, stream>>>(
        dqkv.ptr<T>(), dout.ptr<T>(), qkv.ptr<T>(), stats.ptr<float>(), D, L, scale_of(L));
    TESSERA_CUDA_CHECK_LAUNCH();
    attention_backward_dkv_kernel<P, T><<<blocks_for(key_rows), kBlock, 0, stream>>>(
        dqkv.ptr<T>(), dout.ptr<T>(), qkv.ptr<T>(), stats.ptr<float>(), D, L, scale_of(L));
    TESSERA_CUDA_CHECK_LAUNCH();
  });
}

// Counts a cuDNN attempt in the context's fast-path counts; true when cuDNN ran.
bool counted(FastPathCount& count, cudnn_attention::Outcome outcome) {
  if (outcome == cudnn_attention::Outcome::ran) ++count.ran;
  if (outcome == cudnn_attention::Outcome::fell_back) ++count.fell_back;
  return outcome == cudnn_attention::Outcome::ran;
}

}  // namespace

void attention_forward(Context& ctx, Tensor out, Tensor stats, Tensor qkv, int n_head, int n_kv_head) {
  if (out.numel() == 0) return;  // no rows (B*T = 0): nothing to launch
  if (counted(ctx.fast_paths().cudnn_attention_forward,
              cudnn_attention::try_forward(ctx, out, stats, qkv, n_head, n_kv_head)))
    return;
  if (qkv.dtype == DType::bf16)
    plain_forward<__nv_bfloat16>(ctx, out, stats, qkv, n_head, n_kv_head);
  else
    plain_forward<float>(ctx, out, stats, qkv, n_head, n_kv_head);
}

void attention_backward(Context& ctx, Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor stats, int n_head,
                        int n_kv_head) {
  if (dqkv.numel() == 0) return;
  if (counted(ctx.fast_paths().cudnn_attention_backward,
              cudnn_attention::try_backward(ctx, dqkv, dout, qkv, out, stats, n_head, n_kv_head)))
    return;
  if (qkv.dtype == DType::bf16)
    plain_backward<__nv_bfloat16>(ctx, dqkv, dout, qkv, out, stats, n_head, n_kv_head);
  else
    plain_backward<float>(ctx, dqkv, dout, qkv, out, stats, n_head, n_kv_head);
}

}  // namespace tessera::cuda
