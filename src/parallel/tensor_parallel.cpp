#include "parallel/tensor_parallel.h"

#include "tessera/buffer.h"
#include "tessera/error.h"

namespace tessera::parallel {

TensorParallel::TensorParallel(Context& ctx, Communicator* group, bool sequence_parallel) : ctx_(&ctx) {
  if (group && group->size() > 1) {
    group_ = group;
    sp_ = sequence_parallel;
  }
}

Tensor TensorParallel::column_input_forward(const Tensor& rows, const Tensor& all) const {
  if (!sp_) return rows;
  group_->all_gather(all, rows).wait();
  return all;
}

Tensor TensorParallel::column_input_backward(const Tensor& partial, const Tensor& rows_out) const {
  if (!group_) return partial;
  if (sp_) {
    group_->reduce_scatter(rows_out, partial, ReduceOp::sum).wait();
    return rows_out;
  }
  group_->all_reduce(partial, ReduceOp::sum).wait();
  return partial;
}

void TensorParallel::gather_columns(const Tensor& out, const Tensor& mine) const {
  if (!group_) {
    TESSERA_CHECK(ctx_ != nullptr, "TensorParallel made without a context");
    copy_tensor(*ctx_, out, mine);
    return;
  }
  group_->all_gather(out, mine).wait();
}

void TensorParallel::sum(const Tensor& t) const {
  if (group_) group_->all_reduce(t, ReduceOp::sum).wait();
}

void TensorParallel::max(const Tensor& t) const {
  if (group_) group_->all_reduce(t, ReduceOp::max).wait();
}

}  // namespace tessera::parallel
