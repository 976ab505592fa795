// LayerNorm on the GPU (eps 1e-5), one warp per row; the fused residual + LayerNorm writes each row's
// sum first (each lane the columns it later reads back and normalises, so the aliases ops.h allows
// are safe) and normalises the rounded sum, as the two ops in turn would. The backward's dweight/dbias reduce over
// rows without atomics: fixed chunks of rows write partial sums to scratch, then one thread per
// channel adds the chunks in order, so the result is bitwise reproducible.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/ops.h"

namespace tessera::cuda {

namespace {

using namespace common;

constexpr float kEps = 1e-5f;
constexpr int kBlock = 256;               // 8 warps: 8 rows per block
constexpr int kRowsPerChunk = 32;         // rows per dweight/dbias partial sum

// One row, by the 32 lanes of a warp: lane l reads and writes columns l, l+32, ...
template <class T>
__device__ void normalize_row(T* o, float* mean, float* rstd, const T* x, const T* weight, const T* bias, int row,
                              int lane, int C) {
  float sum = 0.0f;
  for (int c = lane; c < C; c += 32) sum += to_float(x[c]);
  const float m = warp_sum(sum) / float(C);
  float var = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float shift = to_float(x[c]) - m;
    var += shift * shift;
  }
  var = warp_sum(var) / float(C);
  const float s = 1.0f / sqrtf(var + kEps);
  for (int c = lane; c < C; c += 32)
    o[c] = from_float<T>((s * (to_float(x[c]) - m)) * to_float(weight[c]) + to_float(bias[c]));
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
}

template <class T>
__global__ void layernorm_forward_kernel(T* out, float* mean, float* rstd, const T* inp, const T* weight,
                                         const T* bias, int N, int C) {
  const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= N) return;
  const int64_t at = int64_t(row) * C;
  normalize_row(out + at, mean, rstd, inp + at, weight, bias, row, lane, C);
}

template <class T>
__global__ void residual_layernorm_forward_kernel(T* residual, T* out, float* mean, float* rstd, const T* a,
                                                  const T* b, const T* weight, const T* bias, int N, int C) {
  const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= N) return;
  const int64_t at = int64_t(row) * C;
  for (int c = lane; c < C; c += 32) residual[at + c] = from_float<T>(to_float(a[at + c]) + to_float(b[at + c]));
  normalize_row(out + at, mean, rstd, residual + at, weight, bias, row, lane, C);
}

// dinp (N,C) += ..., one warp per row.
template <class T>
__global__ void layernorm_backward_input_kernel(T* dinp, const T* dout, const T* inp, const T* weight,
                                                const float* mean, const float* rstd, int N, int C) {
  const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= N) return;
  const T* x = inp + int64_t(row) * C;
  const T* d = dout + int64_t(row) * C;
  T* dx = dinp + int64_t(row) * C;
  const float m = mean[row], s = rstd[row];
  float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float norm = (to_float(x[c]) - m) * s;
    const float dnorm = to_float(weight[c]) * to_float(d[c]);
    dnorm_mean += dnorm;
    dnorm_norm_mean += dnorm * norm;
  }
  dnorm_mean = warp_sum(dnorm_mean) / float(C);
  dnorm_norm_mean = warp_sum(dnorm_norm_mean) / float(C);
  for (int c = lane; c < C; c += 32) {
    const float norm = (to_float(x[c]) - m) * s;
    const float dnorm = to_float(weight[c]) * to_float(d[c]);
    dx[c] = from_float<T>(to_float(dx[c]) + (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s);
  }
}

// partials (chunks, 2C): [dweight | dbias] sums over the chunk's rows, rows added in order.
template <class T>
__global__ void layernorm_backward_param_partials(float* partials, const T* dout, const T* inp, const float* mean,
                                                  const float* rstd, int N, int C) {
  __shared__ float chunk_mean[kRowsPerChunk], chunk_rstd[kRowsPerChunk];
  const int row0 = blockIdx.x * kRowsPerChunk;
  const int rows = min(kRowsPerChunk, N - row0);
  if (threadIdx.x < rows) {
    chunk_mean[threadIdx.x] = mean[row0 + threadIdx.x];
    chunk_rstd[threadIdx.x] = rstd[row0 + threadIdx.x];
  }
  __syncthreads();
  float* out = partials + int64_t(blockIdx.x) * 2 * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float dw = 0.0f, db = 0.0f;
    for (int r = 0; r < rows; ++r) {
      const int64_t i = int64_t(row0 + r) * C + c;
      const float d = to_float(dout[i]);
      db += d;
      dw += (to_float(inp[i]) - chunk_mean[r]) * chunk_rstd[r] * d;
    }
    out[c] = dw;
    out[C + c] = db;
  }
}

// dweight[c] += sum of chunk partials in chunk order; same for dbias.
__global__ void layernorm_backward_param_final(float* dweight, float* dbias, const float* partials, int chunks,
                                               int C) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= 2 * C) return;
  float acc = 0.0f;
  for (int k = 0; k < chunks; ++k) acc += partials[int64_t(k) * 2 * C + j];
  float* dst = j < C ? dweight + j : dbias + (j - C);
  *dst += acc;
}

template <class T>
void forward(Context& ctx, Tensor out, Tensor mean, Tensor rstd, Tensor inp, Tensor weight, Tensor bias) {
  const int N = int(inp.size(0)), C = int(inp.size(1));
  const unsigned grid = unsigned(ceil_div(N, kBlock / 32));
  layernorm_forward_kernel<T><<<grid, kBlock, 0, stream_of(ctx)>>>(out.ptr<T>(), mean.ptr<float>(), rstd.ptr<float>(),
                                                                   inp.ptr<T>(), weight.ptr<T>(), bias.ptr<T>(), N, C);
  TESSERA_CUDA_CHECK_LAUNCH();
}

template <class T>
void fused_forward(Context& ctx, Tensor residual, Tensor out, Tensor mean, Tensor rstd, Tensor a, Tensor b,
                   Tensor weight, Tensor bias) {
  const int N = int(a.size(0)), C = int(a.size(1));
  const unsigned grid = unsigned(ceil_div(N, kBlock / 32));
  residual_layernorm_forward_kernel<T><<<grid, kBlock, 0, stream_of(ctx)>>>(
      residual.ptr<T>(), out.ptr<T>(), mean.ptr<float>(), rstd.ptr<float>(), a.ptr<T>(), b.ptr<T>(), weight.ptr<T>(),
      bias.ptr<T>(), N, C);
  TESSERA_CUDA_CHECK_LAUNCH();
}

template <class T>
void backward(Context& ctx, Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight,
              Tensor mean, Tensor rstd) {
  const int N = int(inp.size(0)), C = int(inp.size(1));
  cudaStream_t stream = stream_of(ctx);
  layernorm_backward_input_kernel<T><<<unsigned(ceil_div(N, kBlock / 32)), kBlock, 0, stream>>>(
      dinp.ptr<T>(), dout.ptr<T>(), inp.ptr<T>(), weight.ptr<T>(), mean.ptr<float>(), rstd.ptr<float>(), N, C);
  TESSERA_CUDA_CHECK_LAUNCH();

  const int chunks = ceil_div(N, kRowsPerChunk);
  auto* partials = static_cast<float*>(ctx.cuda()->scratch(sizeof(float) * size_t(chunks) * 2 * size_t(C)));
  layernorm_backward_param_partials<T><<<unsigned(chunks), kBlock, 0, stream>>>(
      partials, dout.ptr<T>(), inp.ptr<T>(), mean.ptr<float>(), rstd.ptr<float>(), N, C);
  TESSERA_CUDA_CHECK_LAUNCH();
  layernorm_backward_param_final<<<unsigned(ceil_div(2 * C, kBlock)), kBlock, 0, stream>>>(
      dweight.ptr<float>(), dbias.ptr<float>(), partials, chunks, C);
  TESSERA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void layernorm_forward(Context& ctx, Tensor out, Tensor mean, Tensor rstd, Tensor inp, Tensor weight, Tensor bias) {
  if (inp.size(0) == 0) return;  // no rows (a grid of 0 blocks is an error)
  if (inp.dtype == DType::bf16)
    forward<bf16_t>(ctx, out, mean, rstd, inp, weight, bias);
  else
    forward<float>(ctx, out, mean, rstd, inp, weight, bias);
}

void residual_layernorm_forward(Context& ctx, Tensor residual, Tensor out, Tensor mean, Tensor rstd, Tensor a,
                                Tensor b, Tensor weight, Tensor bias) {
  if (a.size(0) == 0) return;  // no rows
  if (a.dtype == DType::bf16)
    fused_forward<bf16_t>(ctx, residual, out, mean, rstd, a, b, weight, bias);
  else
    fused_forward<float>(ctx, residual, out, mean, rstd, a, b, weight, bias);
}

void layernorm_backward(Context& ctx, Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                        Tensor weight, Tensor mean, Tensor rstd) {
  if (inp.size(0) == 0) return;  // no rows: dweight and dbias gain nothing
  if (inp.dtype == DType::bf16)
    backward<bf16_t>(ctx, dinp, dweight, dbias, dout, inp, weight, mean, rstd);
  else
    backward<float>(ctx, dinp, dweight, dbias, dout, inp, weight, mean, rstd);
}

}  // namespace tessera::cuda
