// The registry's entries, one file per op family (src/kernels/registry/<op>.cpp, beside cpu/<op>.cpp
// and cuda/<op>.cu), and the small helpers their float64 maths share.
#pragma once

#include <vector>

#include "kernels/registry.h"

namespace tessera::kernels {

std::vector<OpEntry> embedding_ops();
std::vector<OpEntry> layernorm_ops();
std::vector<OpEntry> rmsnorm_ops();
std::vector<OpEntry> matmul_ops();
std::vector<OpEntry> gelu_ops();
std::vector<OpEntry> residual_ops();
std::vector<OpEntry> swiglu_ops();
std::vector<OpEntry> rope_ops();
std::vector<OpEntry> attention_ops();
std::vector<OpEntry> crossentropy_ops();
std::vector<OpEntry> crossentropy_vp_ops();
std::vector<OpEntry> adamw_ops();
std::vector<OpEntry> reduce_ops();
std::vector<OpEntry> convert_ops();

// sum_i a[i] * b[i] in float64: the loss sum(out * dout) whose gradient a backward computes.
inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b.at(i);
  return s;
}

// A seed per argument of one call.
inline uint64_t seed_of(uint64_t seed, int arg) { return seed * 131u + uint64_t(arg) + 1u; }

}  // namespace tessera::kernels
