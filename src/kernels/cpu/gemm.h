// Single-precision GEMM on tessera's own OpenMP team (used by the CPU kernels, not an op).
//
// One thread pool: the BLAS runs single-threaded (the Context pins it to one thread) and each
// OpenMP thread calls it on its own slab of the output. Measured on the 2-core development
// machine (benchmarks/RESULTS.md), OpenBLAS's pthread pool spinning against OpenMP's made the
// model's GEMMs 1.5-2x slower than this, and whole steps several times slower; OpenBLAS built for
// OpenMP was slower still on these small shapes, and its openblas_set_num_threads() resizes the
// caller's OpenMP team. The output is cut into tiles that depend on the shape and the machine
// (its cores per rank), not on the thread count, each one BLAS call over the whole K, so results
// do not depend on the thread count.
#pragma once

#include <cstdint>

#include "tessera/context.h"

namespace tessera::cpu {

struct Gemm {
  bool trans_a = false, trans_b = false;  // row-major A (M,K) or A^T stored (K,M); likewise B (K,N)
  int64_t M = 0, N = 0, K = 0;
  const float* a = nullptr;
  int64_t lda = 0;
  const float* b = nullptr;
  int64_t ldb = 0;
  float beta = 0.0f;  // C = A B + beta C
  float* c = nullptr;
  int64_t ldc = 0;
};

// Runs on the thread that computed rows [m0, m1) and columns [n0, n1) of C, right after their GEMM
// (no second pass over C, no second parallel region): a fused epilogue such as bias + GELU. A non-owning
// reference to a callable (std::function would allocate on every call): the callable must
// outlive the gemm() call it is passed to.
class GemmEpilogue {
 public:
  GemmEpilogue() = default;
  template <class F>
  GemmEpilogue(const F& f)  // NOLINT: implicit, like std::function
      : object_(&f), call_([](const void* o, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
          (*static_cast<const F*>(o))(m0, m1, n0, n1);
        }) {}
  explicit operator bool() const { return call_ != nullptr; }
  void operator()(int64_t m0, int64_t m1, int64_t n0, int64_t n1) const { call_(object_, m0, m1, n0, n1); }

 private:
  const void* object_ = nullptr;
  void (*call_)(const void*, int64_t, int64_t, int64_t, int64_t) = nullptr;
};

void gemm(const Context& ctx, const Gemm& g, GemmEpilogue epilogue = {});

}  // namespace tessera::cpu
