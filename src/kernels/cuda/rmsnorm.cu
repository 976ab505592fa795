// RMSNorm on the GPU, one warp per row, statistics in fp32; the fused residual + RMSNorm writes each
// row's sum first (each lane the columns it later reads back, so the aliases ops.h allows are safe)
// and normalises the rounded sum, as the two ops in turn would. The backward's dweight reduces over
// rows without atomics: fixed chunks of rows write partial sums to scratch, then one thread per
// channel adds the chunks in order, so the result is bitwise reproducible.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/ops.h"

namespace tessera::cuda {

namespace {

using namespace common;

constexpr int kBlock = 256;        // 8 warps: 8 rows per block
constexpr int kRowsPerChunk = 32;  // rows per dweight partial sum

// One row, by the 32 lanes of a warp: lane l reads and writes columns l, l+32, ...
template <class T>
__device__ void rms_normalize_row(T* o, float* rstd, const T* x, const T* weight, int row, int lane, int C, float eps) {
  float sum_sq = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float v = to_float(x[c]);
    sum_sq += v * v;
  }
  const float s = 1.0f / sqrtf(warp_sum(sum_sq) / float(C) + eps);
  for (int c = lane; c < C; c += 32) o[c] = from_float<T>((to_float(x[c]) * s) * to_float(weight[c]));
  if (lane == 0) rstd[row] = s;
}

template <class T>
__global__ void rmsnorm_forward_kernel(T* out, float* rstd, const T* inp, const T* weight, int N, int C, float eps) {
  const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= N) return;
  const int64_t at = int64_t(row) * C;
  rms_normalize_row(out + at, rstd, inp + at, weight, row, lane, C, eps);
}

template <class T>
__global__ void residual_rmsnorm_forward_kernel(T* residual, T* out, float* rstd, const T* a, const T* b,
                                                const T* weight, int N, int C, float eps) {
  const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= N) return;
  const int64_t at = int64_t(row) * C;
  for (int c = lane; c < C; c += 32) residual[at + c] = from_float<T>(to_float(a[at + c]) + to_float(b[at + c]));
  rms_normalize_row(out + at, rstd, residual + at, weight, row, lane, C, eps);
}

// dinp (N,C) += rstd * (g - xhat * mean(g * xhat)), g = weight * dout, xhat = x * rstd; one warp per row.
template <class T>
__global__ void rmsnorm_backward_input_kernel(T* dinp, const T* dout, const T* inp, const T* weight, const float* rstd,
                                              int N, int C) {
  const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= N) return;
  const T* x = inp + int64_t(row) * C;
  const T* d = dout + int64_t(row) * C;
  T* dx = dinp + int64_t(row) * C;
  const float s = rstd[row];
  float g_xhat_mean = 0.0f;
  for (int c = lane; c < C; c += 32) g_xhat_mean += to_float(weight[c]) * to_float(d[c]) * (to_float(x[c]) * s);
  g_xhat_mean = warp_sum(g_xhat_mean) / float(C);
  for (int c = lane; c < C; c += 32) {
    const float g = to_float(weight[c]) * to_float(d[c]);
    dx[c] = from_float<T>(to_float(dx[c]) + (g - (to_float(x[c]) * s) * g_xhat_mean) * s);
  }
}

// partials (chunks, C): dweight sums over each chunk's rows, rows added in order.
template <class T>
__global__ void rmsnorm_backward_weight_partials(float* partials, const T* dout, const T* inp, const float* rstd, int N,
                                                 int C) {
  __shared__ float chunk_rstd[kRowsPerChunk];
  const int row0 = blockIdx.x * kRowsPerChunk;
  const int rows = min(kRowsPerChunk, N - row0);
  if (threadIdx.x < rows) chunk_rstd[threadIdx.x] = rstd[row0 + threadIdx.x];
  __syncthreads();
  float* out = partials + int64_t(blockIdx.x) * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float dw = 0.0f;
    for (int r = 0; r < rows; ++r) {
      const int64_t i = int64_t(row0 + r) * C + c;
      dw += (to_float(inp[i]) * chunk_rstd[r]) * to_float(dout[i]);
    }
    out[c] = dw;
  }
}

// dweight[c] += the chunk partials of channel c, in chunk order.
__global__ void rmsnorm_backward_weight_final(float* dweight, const float* partials, int chunks, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float acc = 0.0f;
  for (int k = 0; k < chunks; ++k) acc += partials[int64_t(k) * C + c];
  dweight[c] += acc;
}

template <class T>
void forward(Context& ctx, Tensor out, Tensor rstd, Tensor inp, Tensor weight, float eps) {
  const int N = int(inp.size(0)), C = int(inp.size(1));
  if (N == 0) return;  // no rows (a grid of 0 blocks is an error)
  rmsnorm_forward_kernel<T><<<unsigned(ceil_div(N, kBlock / 32)), kBlock, 0, stream_of(ctx)>>>(
      out.ptr<T>(), rstd.ptr<float>(), inp.ptr<T>(), weight.ptr<T>(), N, C, eps);
  TESSERA_CUDA_CHECK_LAUNCH();
}

template <class T>
void fused_forward(Context& ctx, Tensor residual, Tensor out, Tensor rstd, Tensor a, Tensor b, Tensor weight,
                   float eps) {
  const int N = int(a.size(0)), C = int(a.size(1));
  if (N == 0) return;  // no rows
  residual_rmsnorm_forward_kernel<T><<<unsigned(ceil_div(N, kBlock / 32)), kBlock, 0, stream_of(ctx)>>>(
      residual.ptr<T>(), out.ptr<T>(), rstd.ptr<float>(), a.ptr<T>(), b.ptr<T>(), weight.ptr<T>(), N, C, eps);
  TESSERA_CUDA_CHECK_LAUNCH();
}

template <class T>
void backward(Context& ctx, Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight, Tensor rstd) {
  const int N = int(inp.size(0)), C = int(inp.size(1));
  if (N == 0) return;  // no rows: dweight gains nothing
  cudaStream_t stream = stream_of(ctx);
  rmsnorm_backward_input_kernel<T><<<unsigned(ceil_div(N, kBlock / 32)), kBlock, 0, stream>>>(
      dinp.ptr<T>(), dout.ptr<T>(), inp.ptr<T>(), weight.ptr<T>(), rstd.ptr<float>(), N, C);
  TESSERA_CUDA_CHECK_LAUNCH();

  const int chunks = ceil_div(N, kRowsPerChunk);
  // The partials live in the shared scratch area only for the duration of these launches on this stream.
  auto* partials = static_cast<float*>(ctx.cuda()->scratch(sizeof(float) * size_t(chunks) * size_t(C)));
  rmsnorm_backward_weight_partials<T>
      <<<unsigned(chunks), kBlock, 0, stream>>>(partials, dout.ptr<T>(), inp.ptr<T>(), rstd.ptr<float>(), N, C);
  TESSERA_CUDA_CHECK_LAUNCH();
  rmsnorm_backward_weight_final<<<unsigned(ceil_div(C, kBlock)), kBlock, 0, stream>>>(dweight.ptr<float>(), partials,
                                                                                      chunks, C);
  TESSERA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void rmsnorm_forward(Context& ctx, Tensor out, Tensor rstd, Tensor inp, Tensor weight, float eps) {
  if (inp.dtype == DType::bf16)
    forward<bf16_t>(ctx, out, rstd, inp, weight, eps);
  else
    forward<float>(ctx, out, rstd, inp, weight, eps);
}

void residual_rmsnorm_forward(Context& ctx, Tensor residual, Tensor out, Tensor rstd, Tensor a, Tensor b,
                              Tensor weight, float eps) {
  if (a.dtype == DType::bf16)
    fused_forward<bf16_t>(ctx, residual, out, rstd, a, b, weight, eps);
  else
    fused_forward<float>(ctx, residual, out, rstd, a, b, weight, eps);
}

void rmsnorm_backward(Context& ctx, Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight, Tensor rstd) {
  if (inp.dtype == DType::bf16)
    backward<bf16_t>(ctx, dinp, dweight, dout, inp, weight, rstd);
  else
    backward<float>(ctx, dinp, dweight, dout, inp, weight, rstd);
}

}  // namespace tessera::cuda
