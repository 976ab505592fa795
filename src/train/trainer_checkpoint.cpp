// Trainer checkpoints: each rank saves the rectangles of the global tensors its shards hold (one
// copy of every element: data-parallel rank 0, tensor-parallel rank 0 for replicated parameters,
// the first stage for the tied wte; under ZeRO-1 every data-parallel rank its own optimizer
// slices), written on a background thread and committed by rank 0 once every rank's write
// succeeded (as soon as a per-step poll_checkpoint() finds every write ended, else at the next save
// or finish_checkpoint()). Loading reads, for this rank's shards, whatever rectangles the saving
// layout wrote.
//
// Tensors: "param/<name>" in the parameters' dtype; "master/<name>" (bf16 parameters only: f32
// parameters are their own master), "adam_m/<name>" and "adam_v/<name>" in f32; global names and
// shapes of Model::global_params(). The job's metadata holds the model, the layout, the
// optimizer's step count and the TrainingState.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "io/json.h"
#include "io/loader_state_json.h"
#include "tessera/buffer.h"
#include "tessera/error.h"
#include "tessera/parallel.h"
#include "tessera/trainer.h"

namespace tessera {

namespace {

constexpr const char* kFormat = "tessera-trainer-checkpoint";
constexpr int kVersion = 1;

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Runs a collective on host memory: in place on a CPU context, staged through device memory on a
// GPU (NCCL takes device memory only).
void on_device(Context& ctx, const Tensor& host, const std::function<void(const Tensor&)>& op) {
  if (ctx.device() == Device::cpu) {
    op(host);
    return;
  }
  Buffer buffer(ctx, host.nbytes(), ctx.device());
  Tensor staged(buffer.data(), {host.numel()}, host.dtype, ctx.device());
  copy_tensor(ctx, staged, host);
  op(staged);
  copy_tensor(ctx, host, staged);
}

// Every rank's values, rank after rank (each rank gives the same number).
std::vector<int64_t> gather_int64(Context& ctx, Communicator& comm, const std::vector<int64_t>& mine) {
  const int64_t n = comm.size(), k = int64_t(mine.size());
  std::vector<int64_t> all(size_t((n + 1) * k));  // mine at the end
  std::copy(mine.begin(), mine.end(), all.begin() + n * k);
  Tensor host(all.data(), {2 * (n + 1) * k}, DType::i32, Device::cpu);  // all_gather moves bytes
  on_device(ctx, host, [&](const Tensor& t) { comm.all_gather(t.flat_range(0, 2 * n * k), t.flat_range(2 * n * k, 2 * k)).wait(); });
  all.resize(size_t(n * k));
  return all;
}

std::string broadcast_string(Context& ctx, Communicator& comm, const std::string& s, int root) {
  int64_t length = int64_t(s.size());
  on_device(ctx, Tensor(&length, {2}, DType::i32, Device::cpu), [&](const Tensor& t) { comm.broadcast(t, root).wait(); });
  std::vector<int32_t> words(size_t(std::max<int64_t>((length + 3) / 4, 1)), 0);
  if (comm.rank() == root) std::memcpy(words.data(), s.data(), s.size());
  on_device(ctx, Tensor(words.data(), {int64_t(words.size())}, DType::i32, Device::cpu),
            [&](const Tensor& t) { comm.broadcast(t, root).wait(); });
  return std::string(reinterpret_cast<const char*>(words.data()), size_t(length));
}

// The contiguous run [begin, begin + count) of one local entry (shard coordinates, row-major over
// the shard's shape), data pointing at its first element, as pieces of the global tensor.
void add_run(CheckpointSnapshot& snapshot, const std::string& name, const ParamSpec& global, const std::vector<int64_t>& local_shape,
             int tp, int tp_rank, DType dtype, int64_t begin, int64_t count, const void* data) {
  const size_t elem = dtype_size(dtype);
  for (const CheckpointPiece& run : flat_range_pieces(name, dtype, local_shape, begin, count, data)) {
    const Rect rect{run.offset, run.shape};
    for (const ShardRect& r : shard_to_global(global, tp, tp_rank, rect)) {
      CheckpointPiece piece;
      piece.name = name;
      piece.dtype = dtype;
      piece.global_shape = global.shape;
      piece.offset = r.global.offset;
      piece.shape = r.global.shape;
      void* dst = snapshot.add(piece);
      std::vector<int64_t> within(rect.offset.size());
      for (size_t k = 0; k < within.size(); ++k) within[k] = r.local.offset[k] - rect.offset[k];
      copy_rect(const_cast<void*>(run.data), run.shape, within, r.local.shape, dst, elem, true);
    }
  }
}

// Tp rank tp_rank's whole shard of `global` from tensor `name` of the checkpoint, into shard
// (row-major over local_shape, `dtype`).
void read_shard(const CheckpointReader& reader, const std::string& name, const ParamSpec& global,
                const std::vector<int64_t>& local_shape, int tp, int tp_rank, DType dtype, void* shard) {
  if (!reader.has(name))
    throw data_error(fmt::format("the checkpoint has no tensor '{}'", name), reader.dir(),
                     "load a checkpoint saved by the Trainer for this model");
  if (reader.global_shape(name) != global.shape)
    throw data_error(fmt::format("tensor '{}' has shape {} in the checkpoint, the model's is {}", name,
                                 fmt::join(reader.global_shape(name), "x"), fmt::join(global.shape, "x")),
                     reader.dir(), "resume with the model configuration the checkpoint was saved with");
  const size_t elem = dtype_size(dtype);
  const Rect whole{std::vector<int64_t>(local_shape.size(), 0), local_shape};
  std::vector<char> dense;
  for (const ShardRect& r : shard_to_global(global, tp, tp_rank, whole)) {
    int64_t n = 1;
    for (int64_t d : r.global.shape) n *= d;
    dense.resize(size_t(n) * elem);
    reader.read(name, r.global.offset, r.global.shape, dtype, dense.data());
    copy_rect(shard, local_shape, r.local.offset, r.local.shape, dense.data(), elem, false);
  }
}

json::Value config_json(const ModelConfig& c) { return json::parse(c.to_json(), "model configuration"); }

std::string precision_name(DType d) { return d == DType::bf16 ? "bf16" : "f32"; }

}  // namespace

std::string Trainer::checkpoint_metadata(const TrainingState& state) const {
  json::Value program;
  try {
    program = json::parse(state.program_json, "TrainingState::program_json");
  } catch (const Error& e) {
    throw config_error("Trainer::save_checkpoint: program_json is not JSON: " + e.what_happened(),
                       "pass a JSON object (\"{}\" for none)");
  }
  if (!program.is_object())
    throw config_error("Trainer::save_checkpoint: program_json must be a JSON object", "pass a JSON object (\"{}\" for none)");
  if (state.step < 0) throw config_error("Trainer::save_checkpoint: negative step");

  json::Value v = json::Value::object();
  v["format"] = kFormat;
  v["version"] = kVersion;
  v["model"] = config_json(model_->config());
  v["precision"] = precision_name(model_->dtype());
  const ParallelLayout& l = grid_->layout();
  json::Value layout = json::Value::object();
  layout["tp"] = l.tp;
  layout["pp"] = l.pp;
  layout["dp"] = l.dp;
  layout["sequence_parallel"] = l.sequence_parallel;
  layout["zero_stage"] = l.zero_stage;
  layout["schedule"] = schedule_kind_name(l.schedule);
  layout["virtual_stages"] = l.virtual_stages;
  layout["microbatches"] = microbatches_;
  layout["describe"] = grid_->world_size() == 1 ? std::string("one process") : l.describe();
  v["layout"] = layout;
  v["batch_size"] = options_.batch_size;
  v["seq_len"] = options_.seq_len;
  v["optimizer_step"] = optimizer_ ? optimizer_->step_count() : int64_t(0);
  json::Value s = json::Value::object();
  s["step"] = state.step;
  s["train_loader"] = io::loader_state_to_json(state.train_loader);
  s["skipped_steps"] = state.skipped_steps;
  s["program"] = program;
  v["state"] = s;
  return v.dump();
}

CheckpointSnapshot Trainer::checkpoint_snapshot() {
  Model& m = *model_;
  const ParamTable& local = m.params();
  const ParamTable& global = m.global_params();
  const int tp = grid_->layout().tp, tp_rank = grid_->tp_rank();
  const int dp_rank = grid_->dp_rank();
  const bool zero1 = optimizer_->options().zero1;
  CheckpointSnapshot snapshot;

  auto download = [&](const Tensor& t) {
    std::vector<char> host(t.nbytes());
    copy_tensor(*ctx_, Tensor(host.data(), {t.numel()}, t.dtype, Device::cpu), t);
    return host;
  };

  if (dp_rank == 0) {
    const Tensor params = m.param_buffer();
    const std::vector<char> host = download(params);
    const size_t elem = dtype_size(params.dtype);
    for (size_t i = 0; i < local.size(); ++i) {
      if (!m.is_primary_copy(i)) continue;
      const ParamSpec& spec = global[m.global_index(i)];
      add_run(snapshot, "param/" + spec.name, spec, local[i].shape, tp, tp_rank, params.dtype, 0, local.numel(i),
              host.data() + size_t(local.offset(i)) * elem);
    }
  }

  // Optimizer state: the flat ranges this rank owns (all of them without ZeRO-1, saved by dp rank
  // 0 only), values concatenated in range order.
  if (zero1 || dp_rank == 0) {
    const struct {
      const char* prefix;
      Tensor values;
    } kinds[] = {{"master/", optimizer_->master()}, {"adam_m/", optimizer_->m()}, {"adam_v/", optimizer_->v()}};
    for (const auto& kind : kinds) {
      if (kind.values.empty()) continue;
      const std::vector<char> host = download(kind.values);
      const float* state = reinterpret_cast<const float*>(host.data());
      int64_t state_at = 0;
      for (const DistributedAdamW::OwnedRange& range : optimizer_->owned_ranges()) {
        for (size_t i = 0; i < local.size(); ++i) {
          if (!m.is_primary_copy(i)) continue;
          const int64_t begin = std::max(range.offset, local.offset(i));
          const int64_t end = std::min(range.offset + range.count, local.offset(i) + local.numel(i));
          if (begin >= end) continue;
          const ParamSpec& spec = global[m.global_index(i)];
          add_run(snapshot, kind.prefix + spec.name, spec, local[i].shape, tp, tp_rank, DType::f32,
                  begin - local.offset(i), end - begin, state + state_at + (begin - range.offset));
        }
        state_at += range.count;
      }
    }
  }
  return snapshot;
}

CheckpointStats Trainer::finish_checkpoint() {
  CheckpointStats stats;
  if (!pending_.active) return stats;
  const PendingCheckpoint job = pending_;
  pending_ = PendingCheckpoint{};
  Communicator* world = grid_->world_size() > 1 ? &grid_->world() : nullptr;
  const int rank = grid_->world_rank(), world_size = grid_->world_size();
  const std::string where = fmt::format("checkpoint of step {} under {}", job.step, job.root);

  const CheckpointWriteResult written = writer_.wait();
  std::vector<int64_t> mine = {written.ok ? 0 : 1, int64_t(written.write_seconds * 1e6), int64_t(written.bytes)};
  const std::vector<int64_t> all = world ? gather_int64(*ctx_, *world, mine) : mine;
  int64_t slowest_us = 0, bytes = 0;
  for (int r = 0; r < world_size; ++r) {
    const int64_t* rec = all.data() + 3 * r;
    if (rec[0]) {
      if (!written.ok)
        throw data_error(fmt::format("rank {} could not write its checkpoint file: {}", rank, written.error), where,
                         "check the checkpoint directory's space and permissions");
      throw data_error(fmt::format("rank {} could not write its checkpoint file (its own message says why)", r), where,
                       "check the checkpoint directory's space and permissions");
    }
    slowest_us = std::max(slowest_us, rec[1]);
    bytes += rec[2];
  }

  // Rank 0 commits; everyone learns the outcome (which also keeps the next save from starting before it).
  std::string outcome;
  if (rank == 0) {
    json::Value v = json::Value::object();
    try {
      const CheckpointCommitResult c = commit_checkpoint(job.root, job.step, world_size, job.metadata_json, job.keep);
      v["dir"] = c.dir;
      v["ms"] = c.seconds * 1e3;
      v["manifest_crc32c"] = int64_t(c.manifest_crc32c);
    } catch (const Error& e) {
      v["error"] = std::string(e.what());
    }
    outcome = v.dump();
  }
  if (world) outcome = broadcast_string(*ctx_, *world, outcome, 0);
  const json::Value v = json::parse(outcome, "checkpoint commit outcome");
  if (const json::Value* error = v.find("error"))
    throw data_error("rank 0 could not commit the checkpoint: " + error->as_string(), where);
  stats.write_ms = double(slowest_us) / 1e3;
  stats.commit_ms = v.at("ms").as_double();
  stats.bytes = bytes;
  stats.dir = v.at("dir").as_string();
  stats.manifest_crc32c = uint32_t(v.at("manifest_crc32c").as_int64());
  stats.step = job.step;
  return stats;
}

CheckpointStats Trainer::poll_checkpoint() {
  if (!pending_.active) return CheckpointStats{};  // the same on every rank: saves are collective
  // 1 while this rank's write still runs; a failed write has ended too, and finish_checkpoint()
  // turns it into the same data error on every rank.
  float writing = writer_.busy() ? 1.0f : 0.0f;
  if (grid_->world_size() > 1) {
    Communicator& world = grid_->world();
    on_device(*ctx_, Tensor(&writing, {1}, DType::f32, Device::cpu),
              [&](const Tensor& t) { world.all_reduce(t, ReduceOp::max).wait(); });
  }
  if (writing != 0.0f) return CheckpointStats{};
  return finish_checkpoint();  // every write has ended: joining the writers does not wait
}

CheckpointStats Trainer::save_checkpoint(const std::string& root, const TrainingState& state, int keep) {
  if (root.empty()) throw config_error("Trainer::save_checkpoint: empty checkpoint directory", "set --checkpoint-dir");
  if (keep < 0) throw config_error("Trainer::save_checkpoint: keep must not be negative", "0 keeps every checkpoint");
  CheckpointStats stats = finish_checkpoint();
  const auto t0 = std::chrono::steady_clock::now();
  if (!optimizer_) make_optimizer();  // a save before the first step: the starting state
  PendingCheckpoint job;
  job.active = true;
  job.root = root;
  job.step = state.step;
  job.keep = keep;
  job.metadata_json = checkpoint_metadata(state);
  json::Value rank_metadata = json::Value::object();
  rank_metadata["tp_rank"] = grid_->tp_rank();
  rank_metadata["pp_rank"] = grid_->pp_rank();
  rank_metadata["dp_rank"] = grid_->dp_rank();
  CheckpointWriteOptions write_options;
  write_options.before_write = write_hook_;
  writer_.start(root, state.step, grid_->world_rank(), checkpoint_snapshot(), rank_metadata.dump(),
                write_options);
  pending_ = job;
  stats.blocked_ms = ms_since(t0);
  return stats;
}

void Trainer::load_parameters(const CheckpointReader& reader) {
  Model& m = *model_;
  const ParamTable& local = m.params();
  const ParamTable& global = m.global_params();
  const int tp = grid_->layout().tp, tp_rank = grid_->tp_rank();
  const Tensor params = m.param_buffer();
  const size_t elem = dtype_size(params.dtype);
  std::vector<char> host(params.nbytes(), 0);  // padding stays zero
  for (size_t i = 0; i < local.size(); ++i) {
    const ParamSpec& spec = global[m.global_index(i)];
    // The parameters as saved; in another precision, from the fp32 master where there is one.
    std::string name = "param/" + spec.name;
    if (reader.has(name) && reader.dtype(name) != params.dtype && reader.has("master/" + spec.name))
      name = "master/" + spec.name;
    read_shard(reader, name, spec, local[i].shape, tp, tp_rank, params.dtype, host.data() + size_t(local.offset(i)) * elem);
  }
  copy_tensor(*ctx_, params, Tensor(host.data(), {params.numel()}, params.dtype, Device::cpu));
}

void Trainer::load_optimizer_state(const CheckpointReader& reader) {
  Model& m = *model_;
  const ParamTable& local = m.params();
  const ParamTable& global = m.global_params();
  const int tp = grid_->layout().tp, tp_rank = grid_->tp_rank();
  const struct {
    const char* prefix;
    Tensor values;
  } kinds[] = {{"master/", optimizer_->master()}, {"adam_m/", optimizer_->m()}, {"adam_v/", optimizer_->v()}};
  std::vector<float> entry;
  for (const auto& kind : kinds) {
    if (kind.values.empty()) continue;
    const bool is_master = std::strcmp(kind.prefix, "master/") == 0;
    std::vector<float> host(size_t(kind.values.numel()), 0.0f);
    for (size_t i = 0; i < local.size(); ++i) {
      const ParamSpec& spec = global[m.global_index(i)];
      std::string name = kind.prefix + spec.name;
      // f32 parameters were their own master; a checkpoint without moments starts them at zero.
      if (!reader.has(name)) {
        if (!is_master) continue;
        name = "param/" + spec.name;
      }
      bool loaded = false;
      int64_t state_at = 0;
      for (const DistributedAdamW::OwnedRange& range : optimizer_->owned_ranges()) {
        const int64_t begin = std::max(range.offset, local.offset(i));
        const int64_t end = std::min(range.offset + range.count, local.offset(i) + local.numel(i));
        if (begin < end) {
          if (!loaded) {
            entry.assign(size_t(local.numel(i)), 0.0f);
            read_shard(reader, name, spec, local[i].shape, tp, tp_rank, DType::f32, entry.data());
            loaded = true;
          }
          std::copy(entry.begin() + (begin - local.offset(i)), entry.begin() + (end - local.offset(i)),
                    host.begin() + (state_at + begin - range.offset));
        }
        state_at += range.count;
      }
    }
    copy_tensor(*ctx_, kind.values, Tensor(host.data(), {kind.values.numel()}, DType::f32, Device::cpu));
  }
}

std::string Trainer::try_load_checkpoint(const std::string& dir, const std::function<void(const TrainingState&)>& check_state,
                                         TrainingState* state) {
  try {
    CheckpointReader reader(dir, /*verify_on_read=*/false);  // rank 0 has just checked every file
    const json::Value meta = json::parse(reader.metadata_json(), dir + " metadata");
    const json::Value* format = meta.find("format");
    if (!format || !format->is_string() || format->as_string() != kFormat)
      throw data_error("not a Trainer checkpoint (its metadata has no \"format\": \"" + std::string(kFormat) + "\")", dir,
                       "point --checkpoint-dir at a directory of Trainer checkpoints");
    if (meta.at("version").as_int64() != kVersion)
      throw data_error(fmt::format("Trainer checkpoint version {}, this build reads version {}", meta.at("version").as_int64(),
                                   kVersion),
                       dir);
    // Saved before LLaMA, a checkpoint's model has no family: read as GPT-2, then compared key by key.
    const json::Value want = config_json(model_->config());
    const json::Value saved = config_json(ModelConfig::from_json(meta.at("model").dump(), dir + " metadata"));
    std::vector<std::string> differences;
    for (const json::Value::Member& member : want.members()) {
      const json::Value* s = saved.find(member.key);
      if (!s || *s != member.value)
        differences.push_back(fmt::format("{} {} (this run: {})", member.key, s ? s->dump() : "absent", member.value.dump()));
    }
    if (!differences.empty())
      throw data_error("the checkpoint was saved for another model: " + fmt::format("{}", fmt::join(differences, ", ")), dir,
                       "resume with the model configuration the checkpoint was saved with");
    const json::Value& s = meta.at("state");
    state->step = s.at("step").as_int64();
    state->train_loader = io::loader_state_from_json(s.at("train_loader"));
    state->skipped_steps = s.at("skipped_steps").as_int64();
    state->program_json = s.at("program").dump();
    const int64_t optimizer_step = meta.at("optimizer_step").as_int64();
    if (state->step < 0 || state->skipped_steps < 0 || optimizer_step < 0)
      throw data_error(fmt::format("negative counts in its state: step {}, skipped steps {}, optimizer step {}", state->step,
                                   state->skipped_steps, optimizer_step),
                       dir);
    if (check_state) check_state(*state);

    if (!optimizer_) make_optimizer();
    load_parameters(reader);
    load_optimizer_state(reader);
    optimizer_->state_loaded(optimizer_step);
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

std::optional<TrainingState> Trainer::load_latest_checkpoint(const std::string& root,
                                                              const std::function<void(const TrainingState&)>& check_state) {
  finish_checkpoint();
  Communicator* world = grid_->world_size() > 1 ? &grid_->world() : nullptr;
  const int rank = grid_->world_rank();
  TrainingState state;

  // Every rank tries the directory rank 0 names; all learn whether every rank loaded it.
  auto try_everywhere = [&](const std::string& dir) -> std::string {
    const std::string error = try_load_checkpoint(dir, check_state, &state);
    if (!error.empty() && rank != 0)  // rank 0's reason is in its list of rejected checkpoints
      std::fprintf(stderr, "tessera: rank %d cannot load %s: %s\n", rank, dir.c_str(), error.c_str());
    std::vector<int64_t> failed = {error.empty() ? 0 : 1};
    if (world) failed = gather_int64(*ctx_, *world, failed);
    if (!error.empty()) return "cannot be loaded: " + error;
    for (size_t r = 0; r < failed.size(); ++r)
      if (failed[r]) return fmt::format("cannot be loaded on rank {} (its own message says why)", r);
    return "";
  };

  // Rank 0 verifies (every file's CRC32C), newest first, and names each candidate to the others
  // ({"try": dir}) until all ranks loaded one; then the outcome ({"dir": ..., "rejected": [...]}).
  std::string outcome;
  if (rank == 0) {
    json::Value v = json::Value::object();
    json::Value rejected = json::Value::array();
    try {
      std::vector<CheckpointProblem> problems;
      const std::optional<CheckpointInfo> found =
          find_latest_valid_checkpoint(root, &problems, CheckpointVerify::checksums, [&](const CheckpointInfo& info) {
            json::Value attempt = json::Value::object();
            attempt["try"] = info.dir;
            if (world) broadcast_string(*ctx_, *world, attempt.dump(), 0);
            return try_everywhere(info.dir);
          });
      for (const CheckpointProblem& p : problems) {
        rejected.push_back(p.message());
        std::fprintf(stderr, "tessera: checkpoint rejected: %s\n", p.message().c_str());
      }
      v["dir"] = found ? found->dir : std::string();
    } catch (const Error& e) {
      v["error"] = std::string(e.what());
    }
    v["rejected"] = rejected;
    outcome = v.dump();
    if (world) broadcast_string(*ctx_, *world, outcome, 0);
  } else {
    for (;;) {
      outcome = broadcast_string(*ctx_, *world, "", 0);
      const json::Value message = json::parse(outcome, "checkpoint choice");
      const json::Value* dir = message.find("try");
      if (!dir) break;
      try_everywhere(dir->as_string());
    }
  }
  const json::Value chosen = json::parse(outcome, "checkpoint choice");
  if (const json::Value* error = chosen.find("error"))
    throw data_error("cannot look for checkpoints: " + error->as_string(), root);
  load_report_ = CheckpointLoadReport{};
  for (const json::Value& r : chosen.at("rejected").items()) load_report_.rejected.push_back(r.as_string());
  const std::string dir = chosen.at("dir").as_string();
  if (dir.empty()) {
    if (load_report_.rejected.empty()) return std::nullopt;
    throw data_error(fmt::format("no checkpoint under {} verifies and loads: {}", root, fmt::join(load_report_.rejected, "; ")),
                     root, "restore the checkpoint files, or start afresh with another --checkpoint-dir");
  }
  load_report_.dir = dir;
  load_report_.step = state.step;
  return state;
}

}  // namespace tessera
