// One rank's part of GPT-2 training in any layout tp x pp x dp: the model (this rank's shards and
// stages), the data-parallel AdamW and the pipeline schedule, and one optimizer step that reads top to
// bottom: microbatches in -> schedule (forward/backward per chunk, p2p between stages) -> tied
// embedding and sequence-parallel gradient sums -> data-parallel averaging (overlapping the last
// microbatch's backward) -> global norm, clipping, update.
//
// Every layout trains the same model on the same global batch as one process does, so the losses and
// parameters match one process's within float tolerance.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tessera/context.h"
#include "tessera/data.h"
#include "tessera/distributed_optimizer.h"
#include "tessera/gpt2.h"
#include "tessera/optimizer.h"
#include "tessera/schedule.h"

namespace tessera {

struct TrainerOptions {
  int batch_size = 0;    // B: sequences per microbatch per data-parallel rank
  int seq_len = 0;       // T
  int microbatches = 0;  // per step; 0: the grid layout's (1 without a grid); else must match the layout's
  uint64_t seed = 0;     // init_weights(seed) at construction
  AdamWConfig adamw;
  size_t bucket_bytes = size_t(25) << 20;  // data-parallel gradient buckets
};

struct StepStats {
  float loss = 0;              // mean over the step's microbatches and data-parallel ranks (same on every rank)
  float grad_norm = 0;         // global, before clipping
  double bubble_fraction = 0;  // the schedule's, simulated (forward 1, backward 2, free p2p)
};

class Trainer {
 public:
  // model_options.grid (null: one process) decides the layout: the global batch of one step is
  // batch_size x dp x microbatches sequences. Builds the model and the schedule (config_error for a
  // layout that does not fit, before any work), initialises the weights from options.seed.
  Trainer(Context& ctx, const GPT2Config& config, const TrainerOptions& options, const ModelOptions& model_options = {});
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // One optimizer step on microbatches() batches from `loader` (this rank's data-parallel part: make
  // it with rank = dp rank, world = dp, batch_size B; every tp and pp rank of a data-parallel
  // replica reads the same batches).
  StepStats step(DataLoader& loader, float lr);
  // The same with the batches given: tokens[mb] and targets[mb] hold B*T int32 each.
  StepStats step(const std::vector<const int32_t*>& tokens, const std::vector<const int32_t*>& targets, float lr);

  // Mean loss over `batches` batches from `loader` (forward only; every rank gets the same value).
  float evaluate(DataLoader& loader, int batches);

  // Every parameter of the whole model by name, global shape (row-major, wte with its padded rows),
  // assembled from every rank's shards and stages. Collective over the world.
  std::map<std::string, std::vector<float>> gather_parameters();

  GPT2& model() { return *model_; }
  // The optimizer is made at the first step (from the parameters as they are then, so weights
  // loaded after construction are its starting point); null before.
  DistributedAdamW* optimizer() { return optimizer_.get(); }
  const PipelineSchedule& schedule() const { return schedule_; }
  double bubble_fraction() const { return bubble_fraction_; }
  int microbatches() const { return microbatches_; }
  int activation_slots() const { return slots_; }  // microbatches in flight per chunk on this rank
  int batch_size() const { return options_.batch_size; }
  int seq_len() const { return options_.seq_len; }

 private:
  void make_optimizer();
  void run_schedule();
  float reduce_loss(double local_sum, int count);

  Context* ctx_;
  TrainerOptions options_;
  const ProcessGrid* grid_;
  std::unique_ptr<GPT2> model_;
  std::unique_ptr<DistributedAdamW> optimizer_;
  PipelineSchedule schedule_;
  double bubble_fraction_ = 0;
  int microbatches_ = 1;
  int slots_ = 1;  // activation slots per chunk: the schedule's microbatches in flight
  std::vector<int32_t> tokens_, targets_;  // one batch from a loader
};

}  // namespace tessera
