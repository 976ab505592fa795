#include "kernels/cpu/gemm.h"

#include <cblas.h>

#include <algorithm>

namespace tessera::cpu {

namespace {

// Tile edges are multiples of this (the width of OpenBLAS's micro-kernels), so no tile is a
// ragged sliver of a register tile.
constexpr int64_t kAlign = 16;
// Tiles per GEMM, at least: enough to balance 2, 4, 8 or 16 threads. The tiling depends on the
// shape only, never on the thread count: OpenBLAS's sum for one element can change with the
// extent of the call it is in (measured: dweight rows after 256 differ by an ulp when M is cut in
// two), so fixed tiles are what keeps results independent of the thread count.
constexpr int64_t kMinTiles = 16;
// ... and at most about this many outputs per tile (256 KiB), so a tile stays in the core's L2
// between its GEMM and a fused epilogue. Re-packing the other operand once per tile costs about
// 1% at the model's shapes.
constexpr int64_t kTileOutputs = 64 * 1024;

void sgemm(const Gemm& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  // Row m of op(A) starts at a + m*lda (stored as is) or at column m (stored transposed);
  // column n of op(B) likewise.
  const float* a = g.a + (g.trans_a ? m0 : m0 * g.lda);
  const float* b = g.b + (g.trans_b ? n0 * g.ldb : n0);
  cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans, g.trans_b ? CblasTrans : CblasNoTrans,
              int(m1 - m0), int(n1 - n0), int(g.K), 1.0f, a, int(g.lda), b, int(g.ldb), g.beta,
              g.c + m0 * g.ldc + n0, int(g.ldc));
}

}  // namespace

void gemm(const Context& ctx, const Gemm& g, GemmEpilogue epilogue) {
  if (g.M <= 0 || g.N <= 0) return;
  // Cut the larger output dimension, so each tile re-packs only the smaller operand.
  const bool by_rows = g.M >= g.N;
  const int64_t extent = by_rows ? g.M : g.N;
  const int64_t units = (extent + kAlign - 1) / kAlign;
  const int64_t tiles = std::min(units, std::max(kMinTiles, (g.M * g.N + kTileOutputs - 1) / kTileOutputs));
  auto run_tile = [&](int64_t t) {
    const int64_t lo = std::min(extent, units * t / tiles * kAlign);
    const int64_t hi = t + 1 == tiles ? extent : std::min(extent, units * (t + 1) / tiles * kAlign);
    const int64_t m0 = by_rows ? lo : 0, m1 = by_rows ? hi : g.M;
    const int64_t n0 = by_rows ? 0 : lo, n1 = by_rows ? g.N : hi;
    if (m1 <= m0 || n1 <= n0) return;
    sgemm(g, m0, m1, n0, n1);
    if (epilogue) epilogue(m0, m1, n0, n1);
  };
  const int threads = ctx.cpu_threads();
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t t = 0; t < tiles; ++t) run_tile(t);
}

}  // namespace tessera::cpu
