// Token + position embedding on the GPU. The backward is deterministic without float atomics:
// positions are sorted by token id (a stable radix sort keeps equal ids in position order),
// then one block per run of equal ids adds the rows in position order.
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/ops.h"

namespace tessera::cuda {

namespace {

using namespace common;

constexpr int kBlock = 256;

// One thread per 16-byte pack of output (or per element when packs do not fit).
template <class T>
__global__ void embedding_forward_kernel(T* out, const int32_t* tokens, const T* wte, const T* wpe, int64_t BT,
                                         int T_, int C, int vocab_start, int V, bool vectorized) {
  constexpr int P = Pack<T>::size;
  const int per_row = vectorized ? C / P : C;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < BT * per_row; idx += stride) {
    const int64_t bt = idx / per_row;
    const int j = int(idx % per_row);
    const int t = int(bt % T_);
    const int row = tokens[bt] - vocab_start;  // outside [0, V): another shard's token
    const T* te = row >= 0 && row < V ? wte + int64_t(row) * C : nullptr;
    const T* pe = wpe ? wpe + int64_t(t) * C : nullptr;
    T* o = out + bt * C;
    if (vectorized) {
      Pack<T> a, b;
#pragma unroll
      for (int k = 0; k < P; ++k) a.v[k] = b.v[k] = from_float<T>(0.0f);
      if (te) a = load_pack(te + j * P);
      if (pe) b = load_pack(pe + j * P);
#pragma unroll
      for (int k = 0; k < P; ++k) a.v[k] = from_float<T>(to_float(a.v[k]) + to_float(b.v[k]));
      store_pack(o + j * P, a);
    } else {
      o[j] = from_float<T>((te ? to_float(te[j]) : 0.0f) + (pe ? to_float(pe[j]) : 0.0f));
    }
  }
}

__global__ void iota_kernel(int32_t* out, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) out[i] = i;
}

// Block i handles the run of equal ids starting at sorted position i (other blocks exit): each
// thread owns channels and adds dout rows in position order onto dwte's existing value.
template <class T>
__global__ void embedding_backward_wte_kernel(float* dwte, const T* dout, const uint32_t* sorted_ids,
                                              const int32_t* sorted_positions, int BT, int C, int vocab_start,
                                              int V) {
  const int start = blockIdx.x;
  const uint32_t id = sorted_ids[start];
  if (start > 0 && sorted_ids[start - 1] == id) return;
  const int64_t local = int64_t(id) - vocab_start;
  if (local < 0 || local >= V) return;  // another shard's token
  int end = start + 1;
  while (end < BT && sorted_ids[end] == id) ++end;
  float* row = dwte + local * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float acc = row[c];
    for (int j = start; j < end; ++j) acc += to_float(dout[int64_t(sorted_positions[j]) * C + c]);
    row[c] = acc;
  }
}

// dwpe[t, c] += dout[b, t, c] for b in order, one thread per (t, c).
template <class T>
__global__ void embedding_backward_wpe_kernel(float* dwpe, const T* dout, int B, int T_, int C) {
  const int64_t n = int64_t(T_) * C;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float acc = dwpe[i];
    for (int b = 0; b < B; ++b) acc += to_float(dout[int64_t(b) * n + i]);
    dwpe[i] = acc;
  }
}

template <class T>
void forward(Context& ctx, Tensor out, Tensor tokens, Tensor wte, Tensor wpe, int vocab_start) {
  const int64_t B = out.size(0), T_ = out.size(1), C = out.size(2);
  const bool vec = C % Pack<T>::size == 0 && aligned16(out.data) && aligned16(wte.data) &&
                   (wpe.empty() || aligned16(wpe.data));
  const int64_t items = B * T_ * (vec ? C / Pack<T>::size : C);
  embedding_forward_kernel<T><<<grid_for(items, kBlock), kBlock, 0, stream_of(ctx)>>>(
      out.ptr<T>(), tokens.ptr<int32_t>(), wte.ptr<T>(), wpe.ptr<T>(), B * T_, int(T_), int(C), vocab_start,
      int(wte.size(0)), vec);
  TESSERA_CUDA_CHECK_LAUNCH();
}

template <class T>
void backward(Context& ctx, Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens, int vocab_start) {
  const int B = int(dout.size(0)), T_ = int(dout.size(1)), C = int(dout.size(2));
  const int BT = B * T_;
  cudaStream_t stream = stream_of(ctx);
  // Tokens of other vocabulary shards can be larger than this shard's last row, so the sort
  // covers every bit an id can have.
  const int end_bit = 32;
  const auto* ids = reinterpret_cast<const uint32_t*>(tokens.ptr<int32_t>());  // ids are >= 0

  // Scratch: positions, sorted ids, sorted positions, then cub's temporary storage.
  size_t temp_bytes = 0;
  TESSERA_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, ids, static_cast<uint32_t*>(nullptr),
                                                     static_cast<const int32_t*>(nullptr),
                                                     static_cast<int32_t*>(nullptr), BT, 0, end_bit, stream));
  const size_t array_bytes = align_up(sizeof(int32_t) * size_t(BT));
  auto* base = static_cast<char*>(ctx.cuda()->scratch(3 * array_bytes + temp_bytes));
  auto* positions = reinterpret_cast<int32_t*>(base);
  auto* sorted_ids = reinterpret_cast<uint32_t*>(base + array_bytes);
  auto* sorted_positions = reinterpret_cast<int32_t*>(base + 2 * array_bytes);
  void* temp = base + 3 * array_bytes;

  iota_kernel<<<grid_for(BT, kBlock), kBlock, 0, stream>>>(positions, BT);
  TESSERA_CUDA_CHECK_LAUNCH();
  TESSERA_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, ids, sorted_ids, positions, sorted_positions,
                                                     BT, 0, end_bit, stream));
  embedding_backward_wte_kernel<T><<<BT, kBlock, 0, stream>>>(dwte.ptr<float>(), dout.ptr<T>(), sorted_ids,
                                                              sorted_positions, BT, C, vocab_start,
                                                              int(dwte.size(0)));
  TESSERA_CUDA_CHECK_LAUNCH();
  if (!dwpe.empty()) {
    embedding_backward_wpe_kernel<T><<<grid_for(int64_t(T_) * C, kBlock), kBlock, 0, stream>>>(
        dwpe.ptr<float>(), dout.ptr<T>(), B, T_, C);
    TESSERA_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

void embedding_forward(Context& ctx, Tensor out, Tensor tokens, Tensor wte, Tensor wpe, int vocab_start) {
  if (out.numel() == 0) return;  // no rows (B*T = 0)
  if (out.dtype == DType::bf16)
    forward<bf16_t>(ctx, out, tokens, wte, wpe, vocab_start);
  else
    forward<float>(ctx, out, tokens, wte, wpe, vocab_start);
}

void embedding_backward(Context& ctx, Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens, int vocab_start) {
  if (dout.numel() == 0) return;  // no rows: the gradients gain nothing (and a grid of 0 blocks is an error)
  if (dout.dtype == DType::bf16)
    backward<bf16_t>(ctx, dwte, dwpe, dout, tokens, vocab_start);
  else
    backward<float>(ctx, dwte, dwpe, dout, tokens, vocab_start);
}

}  // namespace tessera::cuda
