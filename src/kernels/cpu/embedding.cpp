// Token + position embedding (llm.c's encoder), float32 on the CPU.
#include <algorithm>

#include "kernels/ops.h"

namespace tessera::cpu {

namespace {
// Channels per backward work item: big enough to stream whole cache lines, small enough to
// spread C = 768 over a few threads.
constexpr int64_t kChannelBlock = 64;
}  // namespace

void embedding_forward(Context& ctx, Tensor out, Tensor tokens, Tensor wte, Tensor wpe, int vocab_start) {
  const int64_t B = out.size(0), T = out.size(1), C = out.size(2), V = wte.size(0);
  float* o = out.ptr<float>();
  const int32_t* tok = tokens.ptr<int32_t>();
  const float* te = wte.ptr<float>();
  const float* pe = wpe.ptr<float>();  // null: no position term
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t bt = 0; bt < B * T; ++bt) {
    const int64_t t = bt % T;
    const int64_t row = int64_t(tok[bt]) - vocab_start;  // outside [0, V): another shard's token
    float* out_bt = o + bt * C;                            // (C)
    const float* wte_ix = row >= 0 && row < V ? te + row * C : nullptr;
    const float* wpe_t = pe ? pe + t * C : nullptr;
    for (int64_t c = 0; c < C; ++c) out_bt[c] = (wte_ix ? wte_ix[c] : 0.0f) + (wpe_t ? wpe_t[c] : 0.0f);
  }
}

void embedding_backward(Context& ctx, Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens, int vocab_start) {
  const int64_t B = dout.size(0), T = dout.size(1), C = dout.size(2), V = dwte.size(0);
  float* dte = dwte.ptr<float>();
  float* dpe = dwpe.ptr<float>();
  const float* d = dout.ptr<float>();
  const int32_t* tok = tokens.ptr<int32_t>();
  // Each thread owns a range of channels and walks all positions in order, so every gradient
  // element receives its additions in position order whatever the thread count: deterministic
  // even when the same token appears many times.
  const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kChannelBlock, c1 = std::min(C, c0 + kChannelBlock);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < T; ++t) {
        const int64_t bt = b * T + t;
        const float* dout_bt = d + bt * C;
        const int64_t row = int64_t(tok[bt]) - vocab_start;
        if (row >= 0 && row < V) {
          float* dwte_ix = dte + row * C;
          for (int64_t c = c0; c < c1; ++c) dwte_ix[c] += dout_bt[c];
        }
        if (dpe) {
          float* dwpe_t = dpe + t * C;
          for (int64_t c = c0; c < c1; ++c) dwpe_t[c] += dout_bt[c];
        }
      }
    }
  }
}

}  // namespace tessera::cpu
