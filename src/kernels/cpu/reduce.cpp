// Sum of squares (for the gradient norm), on the CPU.
#include <algorithm>

#include "kernels/cpu/cpu_math.h"
#include "kernels/ops.h"

namespace tessera::cpu {

namespace {

// Fixed chunks summed in chunk order: the result does not depend on the thread count.
constexpr int64_t kChunk = 4096;
constexpr int kLanes = 8;

// Within a chunk, element i goes to lane i % 8 (vectorisable), and the lanes add in a fixed tree.
TESSERA_CPU_CLONES double chunk_sum_of_squares(const float* g, int64_t n) {
  double lane[kLanes] = {};
  const int64_t full = n / kLanes * kLanes;
  for (int64_t i = 0; i < full; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lane[l] += double(g[i + l]) * double(g[i + l]);
  for (int64_t i = full; i < n; ++i) lane[i - full] += double(g[i]) * double(g[i]);
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

}  // namespace

double sum_of_squares(Context& ctx, Tensor grad) {
  const int64_t n = grad.numel();
  const float* g = grad.ptr<float>();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  double* partial = static_cast<double*>(ctx.host_scratch(sizeof(double) * size_t(chunks)));
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t k = 0; k < chunks; ++k) {
    const int64_t i0 = k * kChunk;
    partial[k] = chunk_sum_of_squares(g + i0, std::min(n, i0 + kChunk) - i0);
  }
  double total = 0.0;
  for (int64_t k = 0; k < chunks; ++k) total += partial[k];
  return total;
}

}  // namespace tessera::cpu
