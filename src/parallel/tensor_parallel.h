// Tensor parallelism as Megatron-Core's paired operations, written once for every model family.
//
// The residual stream is (N, C) with N = B*T rows. Without sequence parallelism every rank of the
// tensor-parallel group holds every row; with it, rank r holds rows [r, r+1) * N/tp ("its rows"),
// and the norms and residual adds work on those only. A column-parallel linear (its output columns
// split over the group) needs every row of its input; a row-parallel linear (its input columns
// split) produces a partial sum of every row that the group reduces. The two are mirror images:
//
//   column-parallel input   forward: its rows -> every row   (identity | all-gather under SP)
//                           backward: partial d(every row) -> d(its rows)   (all-reduce | reduce-scatter)
//   row-parallel output     forward: partial every row -> its rows          (all-reduce | reduce-scatter)
//                           backward: d(its rows) -> d(every row)           (identity | all-gather)
//
// With a group of one rank every operation is the identity. A parallel layer knows no model: the
// caller passes the tensors and the scratch the collectives write into.
#pragma once

#include <cstdint>

#include "tessera/communicator.h"
#include "tessera/context.h"
#include "tessera/tensor.h"

namespace tessera::parallel {

class TensorParallel {
 public:
  TensorParallel() = default;  // one rank: no tensor parallelism
  // group null or of size 1: no tensor parallelism (and no sequence parallelism).
  TensorParallel(Context& ctx, Communicator* group, bool sequence_parallel);

  int size() const { return group_ ? group_->size() : 1; }
  int rank() const { return group_ ? group_->rank() : 0; }
  bool sequence_parallel() const { return sp_; }
  Communicator* group() const { return group_; }
  // Rows of the residual stream this rank holds, of `rows` in all.
  int64_t local_rows(int64_t rows) const { return sp_ ? rows / size() : rows; }

  // Column-parallel input, forward: this rank's rows -> every row. Under sequence parallelism
  // all-gathers `rows` into `all` (every row, same columns) and returns `all`; otherwise `rows`
  // already holds every row and is returned (`all` unused, may be empty).
  Tensor column_input_forward(const Tensor& rows, const Tensor& all) const;
  // Column-parallel input, backward: d(every row), a partial sum over the group (each rank's
  // columns contributed to it) -> d(this rank's rows), complete. Under sequence parallelism
  // reduce-scatters into `rows_out` and returns it; otherwise all-reduces `partial` in place and
  // returns it.
  Tensor column_input_backward(const Tensor& partial, const Tensor& rows_out) const;
  // Row-parallel output: the same two collectives the other way round.
  Tensor row_output_forward(const Tensor& partial, const Tensor& rows_out) const {
    return column_input_backward(partial, rows_out);
  }
  Tensor row_output_backward(const Tensor& d_rows, const Tensor& all) const { return column_input_forward(d_rows, all); }
  // A row-parallel linear's bias is replicated: added on rank 0 only, so the reduction counts it once.
  bool adds_replicated_bias() const { return rank() == 0; }

  // Column-parallel output gathered: every rank's columns of one row side by side (out holds
  // size() * mine.numel() elements, rank order), e.g. a whole row of vocabulary-parallel logits.
  void gather_columns(const Tensor& out, const Tensor& mine) const;
  // In place sum over the group (f32): partial gradients made whole.
  void sum(const Tensor& t) const;
  // In place maximum over the group (f32).
  void max(const Tensor& t) const;

 private:
  const Context* ctx_ = nullptr;
  Communicator* group_ = nullptr;  // null: one rank
  bool sp_ = false;
};

}  // namespace tessera::parallel
