// Gradients that a parallel layout leaves unfinished after the backward, made final from what the
// parameter table says (a parallel layer knows no model):
//  - sequence parallelism: an entry marked sequence_parallel_partial (a norm in the
//    sequence-parallel region) gets a partial gradient on each tensor-parallel rank. Partials
//    accumulate in a buffer of their own (so that gradients accumulate over microbatches and
//    backward calls exactly as the others do) and are summed over the group into the gradients
//    when the entry's last backward of the step is done.
//  - pipeline parallelism: an entry marked tied_to_head that two stages hold (the embedding and the
//    tied output layer) has a gradient on each; the copies are summed over the group of the stages
//    holding them after the whole backward.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "parallel/tensor_parallel.h"
#include "tessera/buffer.h"
#include "tessera/communicator.h"
#include "tessera/context.h"
#include "tessera/param_table.h"

namespace tessera::parallel {

class GradientFinishing {
 public:
  // local: this rank's table; grads: its flat f32 gradient buffer. tied_group: the stages holding
  // copies of tied entries (null when no other stage holds one: pp == 1).
  GradientFinishing(Context& ctx, const ParamTable& local, const Tensor& grads, const TensorParallel& tp,
                    Communicator* tied_group);

  // Where entry i's gradient accumulates during the backward: its partial buffer for a
  // sequence-parallel partial entry under sequence parallelism, its gradient otherwise (f32,
  // shaped as the table says).
  Tensor accumulator(size_t i) const;
  // Entries [first, end) get no more gradient this step: their partial gradients are summed over
  // the tensor-parallel group (one reduction for the range) into their gradients.
  void finish_partial(size_t first, size_t end);
  // Whether entry i's gradient becomes final only in finish_tied().
  bool waits_for_tied_copy(size_t i) const;
  // Sums the tied entries' gradients over the stages holding them.
  void finish_tied();
  // Zeroes the partial buffers (the gradients' own zeroing is the caller's).
  void zero();

 private:
  Context* ctx_;
  const ParamTable* local_;
  Tensor grads_;
  TensorParallel tp_;
  Communicator* tied_group_;
  Buffer partial_storage_;
  Tensor partial_;
  std::vector<int64_t> partial_offset_;  // per entry: its offset in partial_, -1 when it has none
};

}  // namespace tessera::parallel
