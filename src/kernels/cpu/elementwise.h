// Element-wise loops shared by the CPU kernels (GELU alone, and as the matmul's fused epilogue).
// Each works on one contiguous span and is cloned per CPU (cpu_math.h), so the caller's OpenMP
// loop hands out spans and the compiler vectorises the body.
#pragma once

#include <cstdint>

namespace tessera::cpu {

// out = gelu_tanh(inp); out may alias inp.
void gelu_span(float* out, const float* inp, int64_t n);
// dinp = dout * gelu_tanh'(inp); dinp may alias dout.
void gelu_backward_span(float* dinp, const float* inp, const float* dout, int64_t n);
// y += bias (n each).
void add_bias_span(float* y, const float* bias, int64_t n);
// pre += bias, then out = gelu_tanh(pre) (n each).
void bias_gelu_span(float* out, float* pre, const float* bias, int64_t n);

}  // namespace tessera::cpu
