#include "tessera/trainer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "train/memory_bound.h"
#include "tessera/buffer.h"
#include "tessera/error.h"
#include "tessera/parallel.h"
#include "tessera/pipeline.h"

namespace tessera {

namespace {

// Activation slots a rank needs per chunk: the most microbatches whose input has arrived (or whose
// forward ran) and whose backward has not, on any one chunk, walking the rank's actions in order.
int slots_in_flight(const PipelineSchedule& s, int rank) {
  std::vector<int> live(size_t(s.virtual_stages), 0);
  std::vector<std::vector<bool>> started(size_t(s.microbatches), std::vector<bool>(size_t(s.virtual_stages), false));
  int peak = 1;
  for (const PipelineAction& a : s.per_rank[size_t(rank)]) {
    using Type = PipelineAction::Type;
    const bool arrives = a.type == Type::forward || a.type == Type::recv_activation;
    if (arrives && !started[size_t(a.microbatch)][size_t(a.chunk)]) {
      started[size_t(a.microbatch)][size_t(a.chunk)] = true;
      peak = std::max(peak, ++live[size_t(a.chunk)]);
    } else if (a.type == Type::backward) {
      --live[size_t(a.chunk)];
    }
  }
  return peak;
}

// A host float through a device buffer, for the loss's reductions.
float one_float(Context& ctx, float value, const std::function<void(const Tensor&)>& reduce) {
  Buffer buffer(ctx, sizeof(float), ctx.device());
  Tensor t = buffer.view({1}, DType::f32);
  copy_tensor(ctx, t, Tensor(&value, {1}, DType::f32, Device::cpu));
  reduce(t);
  copy_tensor(ctx, Tensor(&value, {1}, DType::f32, Device::cpu), t);
  return value;
}

}  // namespace

Trainer::Trainer(Context& ctx, const ModelConfig& config, const TrainerOptions& options,
                 const ModelOptions& model_options)
    : ctx_(&ctx), options_(options) {
  if (options.batch_size < 1 || options.seq_len < 1)
    throw config_error(fmt::format("Trainer: batch size {} and sequence length {} must be positive",
                                   options.batch_size, options.seq_len),
                       "set --batch-size and --seq-len to 1 or more");
  if (options.microbatches < 0)
    throw config_error(fmt::format("Trainer: {} microbatches per step", options.microbatches),
                       "set --microbatches 1 or more");
  if (model_options.grid) {
    grid_ = model_options.grid;
  } else {
    // One process: a grid of one rank whose layout has the requested microbatches.
    ParallelLayout single;
    single.microbatches = std::max(options.microbatches, 1);
    own_world_ = make_self_communicator(ctx);
    own_grid_ = std::make_unique<ProcessGrid>(*own_world_, single);
    grid_ = own_grid_.get();
  }
  const ParallelLayout& layout = grid_->layout();
  microbatches_ = options.microbatches == 0 ? layout.microbatches : options.microbatches;
  if (microbatches_ != layout.microbatches)
    throw config_error(fmt::format("Trainer: {} microbatches requested, but the grid's layout has {}", microbatches_,
                                   layout.microbatches),
                       "leave TrainerOptions::microbatches at 0 to use the layout's");
  // Every check before any work: the memory the model needs, the layout against the model, the
  // schedule, the batch shape.
  config.validate();
  const bool bf16 = model_options.precision == Precision::bf16 ||
                    (model_options.precision == Precision::automatic && ctx.on_gpu());
  train::check_fits_in_memory(ctx, config, layout, bf16 ? DType::bf16 : DType::f32);
  ModelOptions mo = model_options;
  mo.grid = grid_;
  model_ = make_model(ctx, config, mo);
  schedule_ = make_schedule(layout.schedule, layout.pp, layout.virtual_stages, microbatches_);
  forward_schedule_ = make_forward_schedule(layout.pp, layout.virtual_stages, 1);
  slots_ = slots_in_flight(schedule_, grid_->pp_rank());
  model_->begin_step(microbatches_, options.batch_size, options.seq_len, slots_);
  bubble_fraction_ = simulate(schedule_).bubble_fraction;
  model_->init_weights(options.seed);
}

Trainer::~Trainer() = default;

void Trainer::make_optimizer() {
  const ParallelLayout& l = grid_->layout();
  DistributedOptions o;
  o.bucket_bytes = options_.bucket_bytes;
  o.dp = &grid_->dp();
  o.zero1 = l.zero_stage == 1;
  // Ranks of a tensor- or pipeline-parallel group hold different gradients: the norm sums over
  // them. Copies (replicated parameters on tp rank != 0, the last stage's tied embedding) count once.
  o.norm_groups = {l.tp > 1 ? &grid_->tp() : nullptr, l.pp > 1 ? &grid_->pp() : nullptr};
  for (size_t i = 0; i < model_->params().size(); ++i) o.norm_counts.push_back(model_->is_primary_copy(i) ? 1 : 0);
  optimizer_ = std::make_unique<DistributedAdamW>(*ctx_, model_->params(), model_->param_buffer(),
                                                  model_->grad_buffer(), options_.adamw, o);
  model_->set_grads_ready_hook([this](size_t first_final_entry) { optimizer_->grads_ready(first_final_entry); });
}

PipelineHooks Trainer::hooks(float loss_scale) {
  Model& m = *model_;
  PipelineHooks h;
  h.forward = [&m](int mb, int chunk) { m.forward_chunk(mb, chunk); };
  h.backward = [&m, loss_scale](int mb, int chunk) { m.backward_chunk(mb, chunk, loss_scale); };
  h.activation_to_send = [&m](int mb, int chunk) { return m.activation_to_send(mb, chunk); };
  h.activation_to_receive = [&m](int mb, int chunk) { return m.activation_to_receive(mb, chunk); };
  h.gradient_to_send = [&m](int mb, int chunk) { return m.gradient_to_send(mb, chunk); };
  h.gradient_to_receive = [&m](int mb, int chunk) { return m.gradient_to_receive(mb, chunk); };
  return h;
}

float Trainer::reduce_loss(double local_sum, int count) {
  // The last stage holds the losses: average over data-parallel replicas, then broadcast along the pipeline.
  const ParallelLayout& l = grid_->layout();
  const float mine = model_->has_head() ? float(local_sum / double(count)) : 0.0f;
  if (l.dp == 1 && l.pp == 1) return mine;
  return one_float(*ctx_, mine, [&](const Tensor& t) {
    if (l.dp > 1) grid_->dp().all_reduce(t, ReduceOp::avg).wait();
    if (l.pp > 1) grid_->pp().broadcast(t, l.pp - 1).wait();
  });
}

StepStats Trainer::step(DataLoader& loader, float lr) {
  const int B = options_.batch_size, T = options_.seq_len;
  if (loader.batch_size() != B || loader.seq_len() != T)
    throw config_error(fmt::format("Trainer::step: the loader reads {} x {} batches, the trainer trains on {} x {}",
                                   loader.batch_size(), loader.seq_len(), B, T),
                       "make the loader with the trainer's batch size and sequence length");
  const size_t n = size_t(B) * size_t(T);
  tokens_.resize(n * size_t(microbatches_));
  targets_.resize(n * size_t(microbatches_));
  token_rows_.clear();
  target_rows_.clear();
  step_samples_.clear();
  for (int mb = 0; mb < microbatches_; ++mb) {
    loader.next_batch(tokens_.data() + n * size_t(mb), targets_.data() + n * size_t(mb));
    for (int b = 0; b < B; ++b) step_samples_.push_back(loader.sample_id(b));
    token_rows_.push_back(tokens_.data() + n * size_t(mb));
    target_rows_.push_back(targets_.data() + n * size_t(mb));
  }
  return step(token_rows_, target_rows_, lr);
}

StepStats Trainer::step(const std::vector<const int32_t*>& tokens, const std::vector<const int32_t*>& targets,
                        float lr) {
  if (int(tokens.size()) != microbatches_ || int(targets.size()) != microbatches_)
    throw config_error(fmt::format("Trainer::step: {} token and {} target batches for {} microbatches",
                                   tokens.size(), targets.size(), microbatches_));
  if (!optimizer_) make_optimizer();
  Model& m = *model_;
  m.zero_grad();
  m.begin_step(microbatches_, options_.batch_size, options_.seq_len, slots_);
  for (int mb = 0; mb < microbatches_; ++mb) m.set_microbatch(mb, tokens[size_t(mb)], targets[size_t(mb)]);
  run_pipeline(schedule_, grid_->pp_rank(), grid_->pp(), hooks(1.0f / float(microbatches_)));
  m.finish_backward();             // tied embeddings summed over the stages holding them
  optimizer_->finish_grad_sync();  // data-parallel averaging: the buckets launched during the backward, then the rest
  StepStats s;
  double sum = 0.0;
  if (m.has_head())
    for (int mb = 0; mb < microbatches_; ++mb) sum += m.microbatch_loss(mb);
  s.loss = reduce_loss(sum, microbatches_);
  s.bubble_fraction = bubble_fraction_;
  // A non-finite loss or gradient never reaches the weights. Loss and norm are the same on every
  // rank, so all ranks skip together; the caller decides what happens next (--on-nan).
  const double norm = std::isfinite(s.loss) ? optimizer_->global_grad_norm() : std::nan("");
  if (!std::isfinite(norm)) {
    optimizer_->skip_step();
    s.grad_norm = float(norm);
    s.applied = false;
    return s;
  }
  s.grad_norm = optimizer_->step(lr);
  return s;
}

float Trainer::evaluate(DataLoader& loader, int batches) {
  if (batches < 1) throw config_error("Trainer::evaluate needs at least one batch");
  Model& m = *model_;
  const int B = options_.batch_size, T = options_.seq_len;
  if (loader.batch_size() != B || loader.seq_len() != T)
    throw config_error(fmt::format("Trainer::evaluate: the loader reads {} x {} batches, the trainer uses {} x {}",
                                   loader.batch_size(), loader.seq_len(), B, T));
  tokens_.resize(size_t(B) * size_t(T));
  targets_.resize(size_t(B) * size_t(T));
  double sum = 0.0;
  for (int i = 0; i < batches; ++i) {
    m.begin_step(microbatches_, B, T, slots_);  // the training plan (no replanning), every slot free
    loader.next_batch(tokens_.data(), targets_.data());
    m.set_microbatch(0, tokens_.data(), targets_.data());
    run_pipeline(forward_schedule_, grid_->pp_rank(), grid_->pp(), hooks(0.0f));
    if (m.has_head()) sum += m.microbatch_loss(0);
  }
  return reduce_loss(sum, batches);
}

std::map<std::string, std::vector<float>> Trainer::gather_parameters() {
  Model& m = *model_;
  const ParamTable& global = m.global_params();
  const int tp = grid_->layout().tp, tp_rank = grid_->tp_rank();
  // Each parameter's owners write their shards into a zeroed global buffer; one sum over the world
  // assembles it (owners: data-parallel rank 0, and there the primary copies).
  std::vector<float> flat(size_t(global.flat_numel()), 0.0f);
  if (grid_->dp_rank() == 0) {
    for (size_t i = 0; i < m.params().size(); ++i) {
      if (!m.is_primary_copy(i)) continue;
      const size_t gi = m.global_index(i);
      const std::vector<float> shard = download_floats(*ctx_, m.param(i));
      insert_shard(global[gi], tp, tp_rank, shard.data(), flat.data() + global.offset(gi));
    }
  }
  if (grid_->world_size() > 1) {
    Buffer buffer(*ctx_, flat.size() * sizeof(float), ctx_->device());
    Tensor t = buffer.view({int64_t(flat.size())}, DType::f32);
    Tensor host(flat.data(), {int64_t(flat.size())}, DType::f32, Device::cpu);
    copy_tensor(*ctx_, t, host);
    grid_->world().all_reduce(t, ReduceOp::sum).wait();
    copy_tensor(*ctx_, host, t);
  }
  std::map<std::string, std::vector<float>> out;
  for (size_t i = 0; i < global.size(); ++i) {
    const float* begin = flat.data() + global.offset(i);
    out[global[i].name] = std::vector<float>(begin, begin + global.numel(i));
  }
  return out;
}

}  // namespace tessera
