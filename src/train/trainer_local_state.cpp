// The local checkpoint tier's view of a Trainer: this rank's flat parameter buffer and the optimizer
// state it owns, copied as they are. Unlike a durable checkpoint it is not split into pieces of the
// global tensors (it never loads under another layout), so saving and restoring are plain copies.
#include <fmt/format.h>

#include <cstring>

#include "tessera/error.h"
#include "tessera/parallel.h"
#include "tessera/trainer.h"

namespace tessera {

namespace {

std::vector<Tensor> state_tensors(Model& model, DistributedAdamW& optimizer) {
  std::vector<Tensor> parts = {model.param_buffer()};
  for (const Tensor& t : {optimizer.master(), optimizer.m(), optimizer.v()})
    if (!t.empty()) parts.push_back(t);
  return parts;
}

}  // namespace

std::string Trainer::local_state_layout() const {
  const ParallelLayout l = grid_ ? grid_->layout() : ParallelLayout{};
  std::string s = fmt::format("model {}, {}, ", model_->config().to_json(), dtype_name(model_->dtype()));
  s += grid_ ? fmt::format("{} of {} ranks, rank {} (tp {}, pp {}, dp {})", l.describe(), grid_->world_size(),
                           grid_->world_rank(), grid_->tp_rank(), grid_->pp_rank(), grid_->dp_rank())
             : std::string("one process");
  s += fmt::format(", batch {} x {}", options_.batch_size, options_.seq_len);
  return s;
}

LocalTrainerState Trainer::local_state() {
  if (!optimizer_) make_optimizer();
  LocalTrainerState state;
  state.layout = local_state_layout();
  state.optimizer_step = optimizer_->step_count();
  size_t total = 0;
  const std::vector<Tensor> parts = state_tensors(*model_, *optimizer_);
  for (const Tensor& t : parts) total += t.nbytes();
  state.bytes.resize(total);
  size_t at = 0;
  for (const Tensor& t : parts) {
    copy_tensor(*ctx_, Tensor(state.bytes.data() + at, {t.numel()}, t.dtype, Device::cpu), t.flat_range(0, t.numel()));
    at += t.nbytes();
  }
  return state;
}

void Trainer::restore_local_state(const LocalTrainerState& state) {
  if (state.layout != local_state_layout())
    throw data_error(fmt::format("the local state was saved by '{}', this rank is '{}'", state.layout, local_state_layout()),
                     "local checkpoint tier", "restore it under the same model and layout, or use the durable checkpoint");
  if (!optimizer_) make_optimizer();
  const std::vector<Tensor> parts = state_tensors(*model_, *optimizer_);
  size_t total = 0;
  for (const Tensor& t : parts) total += t.nbytes();
  if (total != state.bytes.size())
    throw data_error(fmt::format("the local state holds {} bytes, this rank's state is {}", state.bytes.size(), total),
                     "local checkpoint tier");
  size_t at = 0;
  for (const Tensor& t : parts) {
    copy_tensor(*ctx_, t.flat_range(0, t.numel()),
                Tensor(const_cast<char*>(state.bytes.data()) + at, {t.numel()}, t.dtype, Device::cpu));
    at += t.nbytes();
  }
  optimizer_->state_loaded(state.optimizer_step);
}

}  // namespace tessera
