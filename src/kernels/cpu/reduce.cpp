// Sum of squares (for the gradient norm), on the CPU.
#include <algorithm>
#include <vector>

#include "kernels/ops.h"

namespace tessera::cpu {

namespace {
// Fixed chunks summed in chunk order: the result does not depend on the thread count.
constexpr int64_t kChunk = 4096;
}  // namespace

double sum_of_squares(Context& ctx, Tensor grad) {
  const int64_t n = grad.numel();
  const float* g = grad.ptr<float>();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(size_t(chunks), 0.0);
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t k = 0; k < chunks; ++k) {
    const int64_t i0 = k * kChunk, i1 = std::min(n, i0 + kChunk);
    double s = 0.0;
    for (int64_t i = i0; i < i1; ++i) s += double(g[i]) * double(g[i]);
    partial[size_t(k)] = s;
  }
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace tessera::cpu
