// The vocabulary-parallel embedding and cross-entropy (Megatron-Core's VocabParallelEmbedding and
// vocab_parallel_cross_entropy): each rank of the tensor-parallel group holds the rows of its range
// of the padded vocabulary, of the embedding and of the output layer alike. The embedding's partial
// rows are reduced over the group like a row-parallel output; the loss is computed from row
// statistics reduced over the group, never from gathered logits.
#pragma once

#include "parallel/tensor_parallel.h"
#include "tessera/context.h"
#include "tessera/tensor.h"

namespace tessera::parallel {

// This rank's rows [start, start + rows) of the padded vocabulary, of which the first `valid` are
// real tokens (the rest padding).
struct VocabShard {
  int start = 0, rows = 0, valid = 0;
};
VocabShard vocab_shard(int padded_vocab_size, int vocab_size, const TensorParallel& tp);

// out_rows (this rank's rows of the residual stream, (local_rows(B*T), C)) = the embedding of
// tokens (B,T) i32: wte_shard's rows (tokens outside the shard give zero) plus wpe (maxT,C, or
// empty: no position table; added on tensor-parallel rank 0 only), reduced over the group. `all`
// (B*T, C) is scratch for the partial rows under sequence parallelism.
void vocab_parallel_embedding_forward(Context& ctx, const TensorParallel& tp, const VocabShard& shard,
                                      const Tensor& out_rows, const Tensor& all, const Tensor& tokens,
                                      const Tensor& wte_shard, const Tensor& wpe);
// dwte_shard +=, dwpe += (may be empty) from d_rows (this rank's rows); `all` (B*T, C) is scratch
// for every row's gradient under sequence parallelism.
void vocab_parallel_embedding_backward(Context& ctx, const TensorParallel& tp, const VocabShard& shard,
                                       const Tensor& dwte_shard, const Tensor& dwpe, const Tensor& d_rows,
                                       const Tensor& all, const Tensor& tokens);

// losses (N) f32 = -log softmax(logits)[targets] over the real vocabulary, from logits (N, rows)
// of this rank's vocabulary shard and targets (N) i32 (global ids). stats (3N) f32 (tp > 1) keeps
// the row maximum, sum of exponentials and target logit for the backward.
void vocab_parallel_cross_entropy_forward(Context& ctx, const TensorParallel& tp, const VocabShard& shard,
                                          int vocab_size, const Tensor& losses, const Tensor& logits,
                                          const Tensor& targets, const Tensor& stats);
// dlogits (N, rows) = (softmax - onehot(target)) * dloss, zero in padded columns; may alias logits.
// losses is rewritten (one process: the fused kernel computes both).
void vocab_parallel_cross_entropy_backward(Context& ctx, const TensorParallel& tp, const VocabShard& shard,
                                           int vocab_size, const Tensor& dlogits, const Tensor& losses,
                                           const Tensor& logits, const Tensor& targets, const Tensor& stats,
                                           float dloss);

}  // namespace tessera::parallel
