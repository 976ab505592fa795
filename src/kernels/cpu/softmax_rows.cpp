#include "kernels/cpu/softmax_rows.h"

#include <limits>

#include "kernels/cpu/cpu_math.h"

namespace tessera::cpu {

namespace {
constexpr int kLanes = 8;
}  // namespace

TESSERA_CPU_CLONES float softmax_row_max(const float* x, int64_t n) {
  float lane[kLanes];
  for (float& l : lane) l = -std::numeric_limits<float>::infinity();
  const int64_t full = n / kLanes * kLanes;
  for (int64_t i = 0; i < full; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lane[l] = x[i + l] > lane[l] ? x[i + l] : lane[l];
  for (int64_t i = full; i < n; ++i) lane[i - full] = x[i] > lane[i - full] ? x[i] : lane[i - full];
  float m = lane[0];
  for (int l = 1; l < kLanes; ++l) m = lane[l] > m ? lane[l] : m;
  return m;
}

TESSERA_CPU_CLONES double softmax_row_sum_exp(const float* x, int64_t n, float max) {
  double lane[kLanes] = {};
  const int64_t full = n / kLanes * kLanes;
  for (int64_t i = 0; i < full; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lane[l] += double(exp_approx(x[i + l] - max));
  for (int64_t i = full; i < n; ++i) lane[i - full] += double(exp_approx(x[i] - max));
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

TESSERA_CPU_CLONES void softmax_row_scaled(float* dx, const float* x, int64_t n, float lse, float dloss) {
  for (int64_t i = 0; i < n; ++i) dx[i] = exp_approx(x[i] - lse) * dloss;
}

}  // namespace tessera::cpu
