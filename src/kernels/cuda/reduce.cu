// Sum of squares on the GPU, bitwise reproducible: a fixed grid (a function of n only) writes
// per-block partials in double, then one block adds them in a fixed order.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/ops.h"

namespace tessera::cuda {

namespace {

using namespace common;

constexpr int kBlock = 512;
constexpr int kMaxBlocks = 1024;  // partials at most; the final block has this many threads

__global__ void sum_of_squares_partials(double* partials, const float* g, int64_t n) {
  __shared__ double shared[32];
  double acc = 0.0;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const double x = double(g[i]);
    acc += x * x;
  }
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

__global__ void sum_of_squares_final(double* result, const double* partials, int count) {
  __shared__ double shared[32];
  double acc = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) *result = acc;
}

}  // namespace

double sum_of_squares(Context& ctx, Tensor grad) {
  const int64_t n = grad.numel();
  const unsigned blocks = grid_for(n, kBlock, kMaxBlocks);
  auto* scratch = static_cast<double*>(ctx.cuda()->scratch(sizeof(double) * (blocks + 1)));
  double* result = scratch + blocks;
  cudaStream_t stream = stream_of(ctx);
  sum_of_squares_partials<<<blocks, kBlock, 0, stream>>>(scratch, grad.ptr<float>(), n);
  TESSERA_CUDA_CHECK_LAUNCH();
  sum_of_squares_final<<<1, kMaxBlocks, 0, stream>>>(result, scratch, int(blocks));
  TESSERA_CUDA_CHECK_LAUNCH();
  double host = 0.0;
  TESSERA_CUDA_CHECK(cudaMemcpyAsync(&host, result, sizeof(double), cudaMemcpyDeviceToHost, stream));
  TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream));
  return host;
}

}  // namespace tessera::cuda
