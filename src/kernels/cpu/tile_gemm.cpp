#include "kernels/cpu/tile_gemm.h"

#include <algorithm>

#include "kernels/cpu/cpu_math.h"

namespace tessera::cpu {

namespace {

// Eight floats; GCC lowers it to one AVX register in the x86-64-v3 clone and two SSE registers in
// the baseline one. Loads and stores go through memcpy: tiles need not be aligned.
typedef float v8 __attribute__((vector_size(32)));

constexpr int kRows = 4;     // rows of C per register block
constexpr int kVectors = 2;  // v8 columns per register block (16 floats)
constexpr int64_t kWidth = 8 * kVectors;

// By reference: a v8 passed or returned by value would have a different ABI in each clone.
__attribute__((always_inline)) inline void load(v8& v, const float* p) { __builtin_memcpy(&v, p, sizeof v); }
__attribute__((always_inline)) inline void store(float* p, const v8& v) { __builtin_memcpy(p, &v, sizeof v); }

// One register block: ROWS rows x 16 columns starting at c. Always inlined, so that it is
// compiled for the calling clone's instruction set.
template <int ROWS>
__attribute__((always_inline)) inline void block(float* c, int64_t ldc, const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t ldb,
                  int64_t depth, bool accumulate) {
  v8 acc[ROWS][kVectors];
  for (int r = 0; r < ROWS; ++r)
    for (int v = 0; v < kVectors; ++v) {
      acc[r][v] = v8{};
      if (accumulate) load(acc[r][v], c + r * ldc + 8 * v);
    }
  for (int64_t k = 0; k < depth; ++k) {
    const float* bk = b + k * ldb;
    v8 bv[kVectors];
    for (int v = 0; v < kVectors; ++v) load(bv[v], bk + 8 * v);
    for (int r = 0; r < ROWS; ++r) {
      const float ar = a[r * a_row + k * a_col];
      for (int v = 0; v < kVectors; ++v) acc[r][v] += ar * bv[v];
    }
  }
  for (int r = 0; r < ROWS; ++r)
    for (int v = 0; v < kVectors; ++v) store(c + r * ldc + 8 * v, acc[r][v]);
}

// Columns that do not fill a register block: the same sums, one element at a time.
void narrow(float* c, int64_t ldc, const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t ldb,
            int64_t rows, int64_t width, int64_t depth, bool accumulate) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t w = 0; w < width; ++w) {
      float s = accumulate ? c[r * ldc + w] : 0.0f;
      for (int64_t k = 0; k < depth; ++k) s += a[r * a_row + k * a_col] * b[k * ldb + w];
      c[r * ldc + w] = s;
    }
}

}  // namespace

TESSERA_CPU_CLONES void tile_gemm(float* c, int64_t ldc, const float* a, int64_t a_row, int64_t a_col,
                                  const float* b, int64_t ldb, int64_t rows, int64_t width, int64_t depth,
                                  bool accumulate) {
  const int64_t wide = width / kWidth * kWidth;
  for (int64_t w = 0; w < wide; w += kWidth) {
    int64_t r = 0;
    for (; r + kRows <= rows; r += kRows)
      block<kRows>(c + r * ldc + w, ldc, a + r * a_row, a_row, a_col, b + w, ldb, depth, accumulate);
    for (; r < rows; ++r) block<1>(c + r * ldc + w, ldc, a + r * a_row, a_row, a_col, b + w, ldb, depth, accumulate);
  }
  if (wide < width) narrow(c + wide, ldc, a, a_row, a_col, b + wide, ldb, rows, width - wide, depth, accumulate);
}

}  // namespace tessera::cpu
