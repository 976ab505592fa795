#include "parallel/vocab_parallel.h"

#include <algorithm>

#include "kernels/ops.h"

namespace tessera::parallel {

VocabShard vocab_shard(int padded_vocab_size, int vocab_size, const TensorParallel& tp) {
  VocabShard s;
  s.rows = padded_vocab_size / tp.size();
  s.start = tp.rank() * s.rows;
  s.valid = std::clamp(vocab_size - s.start, 0, s.rows);
  return s;
}

void vocab_parallel_embedding_forward(Context& ctx, const TensorParallel& tp, const VocabShard& shard,
                                      const Tensor& out_rows, const Tensor& all, const Tensor& tokens,
                                      const Tensor& wte_shard, const Tensor& wpe) {
  const int64_t B = tokens.size(0), T = tokens.size(1), C = out_rows.size(-1);
  // Positions once: on rank 0, before the reduction over the vocabulary shards.
  const Tensor wpe_here = tp.rank() == 0 ? wpe : Tensor();
  // Partial rows of every position, reduced over the vocabulary shards into this rank's rows.
  const Tensor partial = tp.sequence_parallel() ? all : out_rows;
  ops::embedding_forward(ctx, partial.reshape({B, T, C}), tokens, wte_shard, wpe_here, shard.start);
  tp.row_output_forward(partial, out_rows);
}

void vocab_parallel_embedding_backward(Context& ctx, const TensorParallel& tp, const VocabShard& shard,
                                       const Tensor& dwte_shard, const Tensor& dwpe, const Tensor& d_rows,
                                       const Tensor& all, const Tensor& tokens) {
  const int64_t B = tokens.size(0), T = tokens.size(1), C = d_rows.size(-1);
  // Every rank sees every row's gradient, so the (replicated) position table's gradient is
  // complete everywhere.
  const Tensor d = tp.row_output_backward(d_rows, all);
  ops::embedding_backward(ctx, dwte_shard, dwpe, d.reshape({B, T, C}), tokens, shard.start);
}

void vocab_parallel_cross_entropy_forward(Context& ctx, const TensorParallel& tp, const VocabShard& shard,
                                          int vocab_size, const Tensor& losses, const Tensor& logits,
                                          const Tensor& targets, const Tensor& stats) {
  if (tp.size() == 1) {
    ops::crossentropy_forward_backward(ctx, losses, Tensor(), logits, targets, vocab_size, 0.0f);
    return;
  }
  const int64_t N = losses.numel();
  const Tensor row_max = stats.flat_range(0, N), sums = stats.flat_range(N, 2 * N);
  const Tensor sum_exp = stats.flat_range(N, N), target_logit = stats.flat_range(2 * N, N);
  ops::crossentropy_vp_max(ctx, row_max, logits, shard.valid);
  tp.max(row_max);
  ops::crossentropy_vp_sums(ctx, sum_exp, target_logit, logits, row_max, targets, shard.start, shard.valid);
  tp.sum(sums);  // sum_exp and target_logit in one reduction
  ops::crossentropy_vp_loss(ctx, losses, sum_exp, target_logit, row_max);
}

void vocab_parallel_cross_entropy_backward(Context& ctx, const TensorParallel& tp, const VocabShard& shard,
                                           int vocab_size, const Tensor& dlogits, const Tensor& losses,
                                           const Tensor& logits, const Tensor& targets, const Tensor& stats,
                                           float dloss) {
  if (tp.size() == 1) {
    ops::crossentropy_forward_backward(ctx, losses, dlogits, logits, targets, vocab_size, dloss);
    return;
  }
  const int64_t N = losses.numel();
  ops::crossentropy_vp_backward(ctx, dlogits, logits, stats.flat_range(0, N), stats.flat_range(N, N), targets,
                                shard.start, shard.valid, dloss);
}

}  // namespace tessera::parallel
