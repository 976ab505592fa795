// Small in-cache matrix products for the CPU kernels' blocked loops (the fast attention's tiles),
// where a BLAS call's set-up would cost more than the product.
#pragma once

#include <cstdint>

namespace tessera::cpu {

// C (rows x width, row stride ldc) = A B, or += with accumulate, where A(r, k) =
// a[r*a_row + k*a_col] (so A may be read transposed) and B is (depth x width) with row stride ldb.
// Vectorised over the width, with 4 rows x 16 columns held in registers; every element sums its
// depth terms in order, so results are deterministic.
void tile_gemm(float* c, int64_t ldc, const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t ldb,
               int64_t rows, int64_t width, int64_t depth, bool accumulate);

}  // namespace tessera::cpu
