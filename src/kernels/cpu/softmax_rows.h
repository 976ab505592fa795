// Vectorised pieces of a row softmax, shared by the fused and the vocabulary-parallel
// cross-entropy. Sums run in 8 lanes added in a fixed order (deterministic, thread-independent).
#pragma once

#include <cstdint>

namespace tessera::cpu {

// Largest of x[0, n), -inf when n == 0 (NaNs are skipped, as fmax does).
float softmax_row_max(const float* x, int64_t n);
// sum over x[0, n) of exp(x - max), accumulated in double (up to ~50k terms).
double softmax_row_sum_exp(const float* x, int64_t n, float max);
// dx[i] = exp(x[i] - lse) * dloss over [0, n); dx may alias x.
void softmax_row_scaled(float* dx, const float* x, int64_t n, float lse, float dloss);

}  // namespace tessera::cpu
