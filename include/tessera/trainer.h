// One rank's part of training in any layout tp x pp x dp, for any model family: the model (this
// rank's shards and stages), the data-parallel AdamW and the pipeline schedule, and one optimizer
// step that reads top to bottom: microbatches in -> schedule (forward/backward per chunk, p2p
// between stages; sequence-parallel gradient sums as each layer's backward ends) -> tied
// embedding sums -> data-parallel averaging (launched during the last microbatch's backward,
// finished here) -> global norm, clipping, update. One process is a grid of one rank.
//
// Every layout trains the same model on the same global batch as one process does, so the losses and
// parameters match one process's within float tolerance.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tessera/checkpoint.h"
#include "tessera/context.h"
#include "tessera/data.h"
#include "tessera/distributed_optimizer.h"
#include "tessera/model.h"
#include "tessera/parallel.h"
#include "tessera/optimizer.h"
#include "tessera/pipeline.h"
#include "tessera/schedule.h"

namespace tessera {

struct TrainerOptions {
  int batch_size = 0;    // B: sequences per microbatch per data-parallel rank
  int seq_len = 0;       // T
  int microbatches = 0;  // per step; 0: the grid layout's (1 without a grid); else must match the grid's
  uint64_t seed = 0;     // init_weights(seed) at construction
  AdamWConfig adamw;
  size_t bucket_bytes = size_t(25) << 20;  // data-parallel gradient buckets
};

// What a resume needs besides parameters and optimizer state.
struct TrainingState {
  int64_t step = 0;                 // optimizer steps completed
  LoaderState train_loader;         // the data-parallel loader's state for the NEXT batch (every dp rank's loader is at the same global position)
  int64_t skipped_steps = 0;        // steps skipped for non-finite loss so far
  std::string program_json = "{}";  // opaque JSON object the program stores (flags, lr schedule, RNG words as strings...)
};

struct CheckpointStats {
  double blocked_ms = 0;  // this save: the snapshot to host memory (training was blocked)
  double write_ms = 0;    // the completed save: its background write (slowest rank)
  double commit_ms = 0;   // the completed save: manifest, rename, `latest`, pruning
  int64_t bytes = 0;      // the completed save: bytes written over all ranks
  std::string dir;        // the completed save's committed directory
  uint32_t manifest_crc32c = 0;  // the completed save's manifest checksum, as its commit record holds it
  int64_t step = -1;      // the completed save's step (-1: none completed)
};

// What the last load_latest_checkpoint found (the same on every rank).
struct CheckpointLoadReport {
  std::string dir;                    // the directory loaded; "" when none
  int64_t step = -1;                  // its TrainingState::step
  std::vector<std::string> rejected;  // why each newer checkpoint was passed over (directory, file, rank, problem)
};

// This rank's training state byte for byte, for the local checkpoint tier (local_checkpoint.h): a
// restore under the same model and layout continues bitwise where the save left off.
struct LocalTrainerState {
  std::string layout;          // what a restore must match: model, precision, layout, this rank's place, sizes
  int64_t optimizer_step = 0;
  std::vector<char> bytes;     // the flat parameters, then the fp32 master, AdamW m and v this rank owns
};

struct StepStats {
  float loss = 0;              // mean over the step's microbatches and data-parallel ranks (same on every rank)
  float grad_norm = 0;         // global, before clipping
  double bubble_fraction = 0;  // the schedule's, simulated (forward 1, backward 2, free p2p)
  bool applied = true;         // false when a non-finite loss or gradient norm skipped the update
};

class Trainer {
 public:
  // model_options.grid decides the layout (null: one process, the trainer's own grid of one rank):
  // the global batch of one step is batch_size x dp x microbatches sequences. Builds the model and
  // the schedule (config_error for a layout that does not fit, before any work), initialises the
  // weights from options.seed.
  Trainer(Context& ctx, const ModelConfig& config, const TrainerOptions& options, const ModelOptions& model_options = {});
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // One optimizer step on microbatches() batches from `loader` (this rank's data-parallel part: make
  // it with rank = dp rank, world = dp, batch_size B; every tp and pp rank of a data-parallel
  // replica reads the same batches).
  StepStats step(DataLoader& loader, float lr);
  // The ids (shard, offset) of the sequences the last step(loader) trained on, microbatch after
  // microbatch, as the loader reported them.
  const std::vector<SampleId>& step_samples() const { return step_samples_; }
  // The same with the batches given: tokens[mb] and targets[mb] hold B*T int32 each.
  StepStats step(const std::vector<const int32_t*>& tokens, const std::vector<const int32_t*>& targets, float lr);

  // Mean loss over `batches` batches from `loader` (forward only, through the pipeline executor;
  // every rank gets the same value).
  float evaluate(DataLoader& loader, int batches);

  // Every parameter of the whole model by name, global shape (row-major, padded vocabulary rows included),
  // assembled from every rank's shards and stages. Collective over the world.
  std::map<std::string, std::vector<float>> gather_parameters();

  // Checkpoints (sharded per rank, written in the background, committed atomically, verified on load).
  // Collective. Completes the previous save first unless poll_checkpoint() already did (waits for
  // its background write, all ranks agree it succeeded, rank 0 commits), then snapshots this rank's
  // pieces to host memory (the only blocking part), starts the background write of
  // <root>/.tmp-step-N/rank-R.*, and returns. The returned stats describe the PREVIOUS save's
  // completion here (write_ms, commit_ms, dir; step -1 if none was left) and this one's blocked_ms.
  CheckpointStats save_checkpoint(const std::string& root, const TrainingState& state, int keep);
  // Collective. Waits for and commits the save in flight (call before exit and before loading);
  // returns its stats (step -1 if none).
  CheckpointStats finish_checkpoint();
  // Collective; call once per step. Commits the save in flight as soon as its background write has
  // ended on every rank (one small all-reduce over the world says whether all have), exactly as the
  // next save would: all ranks agree it succeeded (a failed write is a data error on every rank),
  // rank 0 commits, and the stats of that save come back (write_ms, commit_ms, dir, step >= 0).
  // Returns at once with step -1 while any rank is still writing, or when nothing is in flight.
  CheckpointStats poll_checkpoint();
  // Collective. Completes a save in flight, finds the newest checkpoint under root that verifies
  // (rank 0 prints why each newer one was rejected: file, rank), loads parameters (in the model's
  // dtype; from the saved fp32 master when the saved parameters have another dtype) and optimizer
  // state (fp32 master, m, v, step count; ZeRO-1 slices or whole buffers) into THIS layout's shards,
  // whatever layout saved it, and returns its state; std::nullopt when root has no checkpoint at all.
  // A checkpoint that cannot be loaded for any reason on any rank (its files, its metadata, a saved
  // model config that does not match, a missing piece, a state that check_state throws a data error
  // for on some rank: a data position outside the data) is rejected like a corrupt one, and the
  // next older one is tried (each load overwrites the whole state, so a checkpoint that failed
  // half-way leaves nothing behind once an older one loaded). data_error when checkpoints exist but
  // none can be loaded; the trainer's state is then partly overwritten.
  std::optional<TrainingState> load_latest_checkpoint(
      const std::string& root, const std::function<void(const TrainingState&)>& check_state = {});
  const CheckpointLoadReport& last_checkpoint_load() const { return load_report_; }
  // The local tier's copy of this rank's state (device to host: the only blocking part of a local save).
  LocalTrainerState local_state();
  // Writes a state from local_state() back (between steps); data error when its layout differs.
  void restore_local_state(const LocalTrainerState& state);
  std::string local_state_layout() const;
  // Runs on the checkpoint writer's thread before each write of this rank's files (tests hold a
  // write with it to see that saving does not wait for the disk). Empty: none.
  void set_checkpoint_write_hook(std::function<void()> before_write) { write_hook_ = std::move(before_write); }

  Model& model() { return *model_; }
  const ProcessGrid& grid() const { return *grid_; }
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
  PipelineHooks hooks(float loss_scale);
  float reduce_loss(double local_sum, int count);

  Context* ctx_;
  TrainerOptions options_;
  std::unique_ptr<Communicator> own_world_;  // one process: a grid of one rank
  std::unique_ptr<ProcessGrid> own_grid_;
  const ProcessGrid* grid_ = nullptr;       // never null
  std::unique_ptr<Model> model_;
  std::unique_ptr<DistributedAdamW> optimizer_;
  PipelineSchedule schedule_;
  PipelineSchedule forward_schedule_;  // evaluation: forward passes only
  double bubble_fraction_ = 0;
  int microbatches_ = 1;
  int slots_ = 1;  // activation slots per chunk: the schedule's microbatches in flight
  std::vector<int32_t> tokens_, targets_;  // one batch from a loader
  std::vector<const int32_t*> token_rows_, target_rows_;  // its microbatches (kept: steps do not allocate)
  std::vector<SampleId> step_samples_;

  // Checkpoints (trainer_checkpoint.cpp).
  struct PendingCheckpoint {
    bool active = false;
    std::string root, metadata_json;
    int64_t step = -1;
    int keep = 0;
  };
  CheckpointSnapshot checkpoint_snapshot();
  std::string checkpoint_metadata(const TrainingState& state) const;
  // Loads one checkpoint on this rank; empty when it loaded, else why not.
  std::string try_load_checkpoint(const std::string& dir, const std::function<void(const TrainingState&)>& check_state,
                                  TrainingState* state);
  void load_parameters(const CheckpointReader& reader);
  void load_optimizer_state(const CheckpointReader& reader);
  PendingCheckpoint pending_;
  std::function<void()> write_hook_;
  CheckpointLoadReport load_report_;
  AsyncCheckpointWriter writer_;  // last member: destroyed first, waiting for a write still running
};

}  // namespace tessera
