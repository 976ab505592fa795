#include "parallel/grad_finishing.h"

#include "kernels/ops.h"
#include "tessera/error.h"

namespace tessera::parallel {

namespace {

Tensor shaped(const Tensor& flat, int64_t offset, const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  Tensor t = flat.flat_range(offset, n);
  t.ndim = int(shape.size());
  for (size_t k = 0; k < shape.size(); ++k) t.dims[k] = shape[k];
  return t;
}

}  // namespace

GradientFinishing::GradientFinishing(Context& ctx, const ParamTable& local, const Tensor& grads,
                                     const TensorParallel& tp, Communicator* tied_group)
    : ctx_(&ctx), local_(&local), grads_(grads), tp_(tp), tied_group_(tied_group) {
  partial_offset_.assign(local.size(), -1);
  int64_t total = 0;
  if (tp.sequence_parallel()) {
    for (size_t i = 0; i < local.size(); ++i) {
      if (!local[i].sequence_parallel_partial) continue;
      TESSERA_CHECK(local[i].split_dim < 0, "a sequence-parallel partial gradient belongs to a replicated parameter");
      partial_offset_[i] = total;
      total += local.numel(i);
    }
  }
  if (total > 0) {
    partial_storage_ = Buffer(ctx, size_t(total) * sizeof(float), ctx.device());
    partial_ = partial_storage_.view({total}, DType::f32);
    zero_tensor(ctx, partial_);
  }
}

Tensor GradientFinishing::accumulator(size_t i) const {
  TESSERA_CHECK(i < local_->size(), "parameter index out of range");
  if (partial_offset_[i] >= 0) return shaped(partial_, partial_offset_[i], (*local_)[i].shape);
  return shaped(grads_, local_->offset(i), (*local_)[i].shape);
}

void GradientFinishing::finish_partial(size_t first, size_t end) {
  int64_t begin = -1, stop = -1;
  for (size_t i = first; i < end; ++i) {
    if (partial_offset_[i] < 0) continue;
    if (begin < 0) begin = partial_offset_[i];
    stop = partial_offset_[i] + local_->numel(i);
  }
  if (begin < 0) return;
  const Tensor range = partial_.flat_range(begin, stop - begin);
  tp_.sum(range);
  for (size_t i = first; i < end; ++i) {
    if (partial_offset_[i] < 0) continue;
    const Tensor grad = grads_.flat_range(local_->offset(i), local_->numel(i));
    ops::residual_forward(*ctx_, grad, grad, partial_.flat_range(partial_offset_[i], local_->numel(i)));
  }
  zero_tensor(*ctx_, range);
}

bool GradientFinishing::waits_for_tied_copy(size_t i) const {
  return tied_group_ != nullptr && (*local_)[i].tied_to_head;
}

void GradientFinishing::finish_tied() {
  for (size_t i = 0; i < local_->size(); ++i)
    if (waits_for_tied_copy(i))
      tied_group_->all_reduce(grads_.flat_range(local_->offset(i), local_->numel(i)), ReduceOp::sum).wait();
}

void GradientFinishing::zero() {
  if (!partial_.empty()) zero_tensor(*ctx_, partial_);
}

}  // namespace tessera::parallel
