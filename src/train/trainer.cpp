#include "tessera/trainer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "model/gpt2_layout.h"
#include "model/host_transfer.h"
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

}  // namespace

Trainer::Trainer(Context& ctx, const GPT2Config& config, const TrainerOptions& options,
                 const ModelOptions& model_options)
    : ctx_(&ctx), options_(options), grid_(model_options.grid) {
  if (options.batch_size < 1 || options.seq_len < 1)
    throw config_error(fmt::format("Trainer: batch size {} and sequence length {} must be positive",
                                   options.batch_size, options.seq_len),
                       "set --batch-size and --seq-len to 1 or more");
  const ParallelLayout layout = grid_ ? grid_->layout() : ParallelLayout{};
  const int layout_microbatches = grid_ ? layout.microbatches : 1;
  microbatches_ = options.microbatches == 0 ? layout_microbatches : options.microbatches;
  if (microbatches_ < 1)
    throw config_error(fmt::format("Trainer: {} microbatches per step", microbatches_), "set --microbatches 1 or more");
  if (grid_ && microbatches_ != layout_microbatches)
    throw config_error(fmt::format("Trainer: {} microbatches requested, but the grid's layout has {}", microbatches_,
                                   layout_microbatches),
                       "leave TrainerOptions::microbatches at 0 to use the layout's");
  // Every check before any work: the layout against the model, the schedule, the batch shape.
  model_ = std::make_unique<GPT2>(ctx, config, model_options);
  schedule_ = make_schedule(grid_ ? layout.schedule : ScheduleKind::one_f_one_b, grid_ ? layout.pp : 1,
                            grid_ ? layout.virtual_stages : 1, microbatches_);
  slots_ = slots_in_flight(schedule_, grid_ ? grid_->pp_rank() : 0);
  model_->begin_step(microbatches_, options.batch_size, options.seq_len, slots_);
  bubble_fraction_ = simulate(schedule_).bubble_fraction;
  model_->init_weights(options.seed);
}

Trainer::~Trainer() = default;

void Trainer::make_optimizer() {
  DistributedOptions o;
  o.bucket_bytes = options_.bucket_bytes;
  if (grid_) {
    const ParallelLayout& l = grid_->layout();
    o.dp = &grid_->dp();
    o.zero1 = l.zero_stage == 1;
    // Ranks of a tensor- or pipeline-parallel group hold different gradients: the norm sums over
    // them. Copies (replicated parameters on tp rank != 0, the last stage's wte) count once.
    o.norm_groups = {l.tp > 1 ? &grid_->tp() : nullptr, l.pp > 1 ? &grid_->pp() : nullptr};
    for (size_t i = 0; i < model_->params().size(); ++i) o.norm_counts.push_back(model_->is_primary_copy(i) ? 1 : 0);
  }
  optimizer_ = std::make_unique<DistributedAdamW>(*ctx_, model_->params(), model_->param_buffer(),
                                                  model_->grad_buffer(), options_.adamw, o);
  model_->set_grads_ready_hook([this](size_t first_final_entry) { optimizer_->grads_ready(first_final_entry); });
}

void Trainer::run_schedule() {
  GPT2& m = *model_;
  const float scale = 1.0f / float(microbatches_);
  PipelineHooks hooks;
  hooks.forward = [&](int mb, int chunk) { m.forward_chunk(mb, chunk); };
  hooks.backward = [&](int mb, int chunk) { m.backward_chunk(mb, chunk, scale); };
  hooks.activation_to_send = [&](int mb, int chunk) { return m.activation_to_send(mb, chunk); };
  hooks.activation_to_receive = [&](int mb, int chunk) { return m.activation_to_receive(mb, chunk); };
  hooks.gradient_to_send = [&](int mb, int chunk) { return m.gradient_to_send(mb, chunk); };
  hooks.gradient_to_receive = [&](int mb, int chunk) { return m.gradient_to_receive(mb, chunk); };
  if (grid_) {
    run_pipeline(schedule_, grid_->pp_rank(), grid_->pp(), hooks);
    return;
  }
  // One process: the one-stage schedule has computations only.
  for (const PipelineAction& a : schedule_.per_rank[0])
    (a.type == PipelineAction::Type::forward ? hooks.forward : hooks.backward)(a.microbatch, a.chunk);
}

float Trainer::reduce_loss(double local_sum, int count) {
  // The last stage holds the losses: average over data-parallel replicas, then broadcast along the pipeline.
  const float mine = model_->has_head() ? float(local_sum / double(count)) : 0.0f;
  if (!grid_) return mine;
  Buffer buffer(*ctx_, sizeof(float), ctx_->device());
  Tensor t = buffer.view({1}, DType::f32);
  model::upload_floats(*ctx_, t, &mine);
  if (grid_->layout().dp > 1) grid_->dp().all_reduce(t, ReduceOp::avg).wait();
  if (grid_->layout().pp > 1) grid_->pp().broadcast(t, grid_->layout().pp - 1).wait();
  return model::download_floats(*ctx_, t)[0];
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
  std::vector<const int32_t*> tokens, targets;
  step_samples_.clear();
  for (int mb = 0; mb < microbatches_; ++mb) {
    loader.next_batch(tokens_.data() + n * size_t(mb), targets_.data() + n * size_t(mb));
    for (int b = 0; b < B; ++b) step_samples_.push_back(loader.sample_id(b));
    tokens.push_back(tokens_.data() + n * size_t(mb));
    targets.push_back(targets_.data() + n * size_t(mb));
  }
  return step(tokens, targets, lr);
}

StepStats Trainer::step(const std::vector<const int32_t*>& tokens, const std::vector<const int32_t*>& targets,
                        float lr) {
  if (int(tokens.size()) != microbatches_ || int(targets.size()) != microbatches_)
    throw config_error(fmt::format("Trainer::step: {} token and {} target batches for {} microbatches",
                                   tokens.size(), targets.size(), microbatches_));
  if (!optimizer_) make_optimizer();
  GPT2& m = *model_;
  m.zero_grad();
  m.begin_step(microbatches_, options_.batch_size, options_.seq_len, slots_);
  for (int mb = 0; mb < microbatches_; ++mb) m.set_microbatch(mb, tokens[size_t(mb)], targets[size_t(mb)]);
  run_schedule();
  m.finish_backward();
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
  GPT2& m = *model_;
  const int B = options_.batch_size, T = options_.seq_len;
  if (loader.batch_size() != B || loader.seq_len() != T)
    throw config_error(fmt::format("Trainer::evaluate: the loader reads {} x {} batches, the trainer uses {} x {}",
                                   loader.batch_size(), loader.seq_len(), B, T));
  m.begin_step(microbatches_, B, T, slots_);  // the training plan: no replanning
  tokens_.resize(size_t(B) * size_t(T));
  targets_.resize(size_t(B) * size_t(T));
  const int my_rank = grid_ ? grid_->pp_rank() : 0;
  double sum = 0.0;
  for (int i = 0; i < batches; ++i) {
    loader.next_batch(tokens_.data(), targets_.data());
    m.set_microbatch(0, tokens_.data(), targets_.data());
    // Forward only, model chunk after model chunk along the pipeline (microbatch slot 0).
    for (int mc = 0; mc < model_chunk_count(schedule_); ++mc) {
      const ChunkLocation here = locate_model_chunk(schedule_, mc);
      if (here.rank != my_rank) continue;
      if (mc > 0) {
        const ChunkLocation prev = locate_model_chunk(schedule_, mc - 1);
        if (prev.rank != my_rank)
          grid_->pp()
              .exchange({PeerTransfer{PeerTransfer::Kind::recv, m.activation_to_receive(0, here.chunk), prev.rank}})
              .wait();
      }
      m.forward_chunk(0, here.chunk);
      if (mc + 1 < model_chunk_count(schedule_)) {
        const ChunkLocation next = locate_model_chunk(schedule_, mc + 1);
        if (next.rank != my_rank)
          grid_->pp()
              .exchange({PeerTransfer{PeerTransfer::Kind::send, m.activation_to_send(0, here.chunk), next.rank}})
              .wait();
      }
    }
    if (m.has_head()) sum += m.microbatch_loss(0);
  }
  return reduce_loss(sum, batches);
}

std::map<std::string, std::vector<float>> Trainer::gather_parameters() {
  GPT2& m = *model_;
  const ParamTable& global = m.global_params();
  const int tp = grid_ ? grid_->layout().tp : 1, tp_rank = grid_ ? grid_->tp_rank() : 0;
  // Each parameter's owners write their shards into a zeroed global buffer; one sum over the world
  // assembles it (owners: data-parallel rank 0; tp rank 0 for replicated parameters; the first stage for wte).
  std::vector<float> flat(size_t(global.flat_numel()), 0.0f);
  if (!grid_ || grid_->dp_rank() == 0) {
    for (size_t i = 0; i < m.params().size(); ++i) {
      if (!m.is_primary_copy(i)) continue;
      const size_t gi = m.global_index(i);
      std::vector<float> shard = model::download_floats(*ctx_, m.param(i));
      model::insert_shard(global[gi], tp, tp_rank, shard.data(), flat.data() + global.offset(gi));
    }
  }
  if (grid_ && grid_->world_size() > 1) {
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
