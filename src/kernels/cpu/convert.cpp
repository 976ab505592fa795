// dtype conversion and in-place scaling on the CPU (f32 and bf16; bf16 round to nearest even).
#include <cstring>

#include "kernels/ops.h"

namespace tessera::cpu {

void convert(Context& ctx, Tensor dst, Tensor src) {
  const int64_t n = src.numel();
  if (dst.dtype == src.dtype) {
    if (dst.data != src.data) std::memcpy(dst.data, src.data, src.nbytes());
    return;
  }
  if (dst.dtype == DType::bf16) {
    const float* s = src.ptr<float>();
    bf16* d = dst.ptr<bf16>();
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
    for (int64_t i = 0; i < n; ++i) d[i] = float_to_bf16(s[i]);
  } else {
    const bf16* s = src.ptr<bf16>();
    float* d = dst.ptr<float>();
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
    for (int64_t i = 0; i < n; ++i) d[i] = bf16_to_float(s[i]);
  }
}

void scale(Context& ctx, Tensor t, float factor) {
  const int64_t n = t.numel();
  if (t.dtype == DType::bf16) {
    bf16* p = t.ptr<bf16>();
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
    for (int64_t i = 0; i < n; ++i) p[i] = float_to_bf16(bf16_to_float(p[i]) * factor);
  } else {
    float* p = t.ptr<float>();
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
    for (int64_t i = 0; i < n; ++i) p[i] *= factor;
  }
}

}  // namespace tessera::cpu
