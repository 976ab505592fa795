#include "kernels/cpu/gemm.h"

#include <cblas.h>

#include <algorithm>
#include <thread>

namespace tessera::cpu {

namespace {

// Tile edges are multiples of this (the width of OpenBLAS's micro-kernels), so no tile is a
// ragged sliver of a register tile.
constexpr int64_t kAlign = 16;

// Tiles per GEMM: the cores this rank has by default (cores / ranks on the node), whatever thread
// count it runs with. OpenBLAS's sum for one element can change with the extent of the call it is
// in (measured: dweight rows after 256 differ by an ulp when M is cut in two), so the tiling must
// not follow the thread count for results not to. Each extra tile costs: one thread ran these
// shapes 2-5% slower in 4 tiles and 10-20% slower in 16 than in one call.
int64_t tiles_per_gemm(const Context& ctx) {
  const int64_t cores = std::max(1u, std::thread::hardware_concurrency());
  return std::max<int64_t>(1, cores / std::max(1, ctx.options().local_size));
}

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
  const int64_t tiles = std::min(units, tiles_per_gemm(ctx));
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
