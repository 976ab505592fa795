// tessera-train: trains a decoder-only language model (GPT-2 or LLaMA) on token shards, on one process or many (mpirun/srun) in any
// layout tp x pp x dp. Reads top to bottom: arguments -> MPI, context, process grid, data, trainer
// -> resume from the newest valid checkpoint -> for each step: trainer step (microbatches through the
// pipeline schedule, gradient averaging, update) under the watchdog -> commit of a save whose write
// has ended -> non-finite loss policy -> log -> eval -> checkpoint -> effective-time summary -> sample
// and export on rank 0.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/checkpointing.h"
#include "common/every_rank.h"
#include "common/data_check.h"
#include "common/failure_monitor.h"
#include "common/flags.h"
#include "common/job_clock.h"
#include "common/output_checks.h"
#include "common/run_id.h"
#include "common/sample_digest.h"
#include "common/sampling.h"
#include "common/stop_signals.h"
#include "tessera/local_checkpoint.h"
#include "tessera/host_collectives.h"
#include "tessera/stragglers.h"
#include "tessera/tessera.h"
#include "tessera/trainer.h"

namespace tessera::program {
namespace {

struct TrainArgs {
  // model
  std::string model = "tiny";
  int n_layer = 0, n_head = 0, n_embd = 0, vocab_size = 0, max_seq_len = 0;
  std::string family = "gpt2", norm;
  int n_kv_head = 0, ffn_dim = 0;
  float rope_theta = 0;
  bool tie_embeddings = false;
  std::vector<std::string> custom_flags_given;  // custom-model flags on the command line
  std::string init_from, export_dir;
  // data
  std::string data = "data/shakespeare_train.bin";
  std::string val_data;
  int batch_size = 8;
  int seq_len = 128;
  bool no_shuffle = false;
  // parallel layout
  int tp = 1, pp = 1, dp = 0;
  bool sp = false;
  int zero = 0;
  int microbatches = 1;
  std::string schedule = "1f1b";
  int virtual_stages = 1;
  // optimisation
  int steps = 300;
  float lr = 1e-3f;
  float min_lr = 1e-4f;
  int warmup = 20;
  float weight_decay = 0.1f;
  float grad_clip = 1.0f;
  float beta1 = 0.9f, beta2 = 0.95f;
  int64_t seed = 1337;
  // evaluation, sampling, logging
  int eval_every = 100;
  int eval_batches = 8;
  int sample_tokens = 256;
  int top_k = 40;
  float temperature = 1.0f;
  std::string log;
  // execution
  std::string device = "auto";
  std::string precision = "auto";
  std::string recompute = "none";
  int threads = 0;
  // checkpoints and failures
  std::string checkpoint_dir;
  int checkpoint_every = 0;
  int keep = 3;
  std::string resume = "auto";
  double timeout = 600;
  bool timeout_given = false;  // --timeout on the command line: fixed deadlines instead of learned ones
  double timeout_floor = 10;
  double heartbeat_interval = 1;
  std::string on_nan = "stop";
  std::string on_save_error = "continue";
  std::string local_checkpoint_dir;
  int local_checkpoint_every = 0;
  int straggler_window = 10;
  double straggler_slowdown = 1.5;
  std::string fault;

  std::set<std::string> given;  // the flags given on the command line
};

FlagParser make_parser(TrainArgs& a) {
  FlagParser p("tessera-train", "tessera-train [flags]   (see README.md)");
  p.section("Model");
  p.add("model", &a.model,
        "preset: tiny, gpt2, gpt2-medium, gpt2-large, gpt2-xl (GPT-2); llama-tiny, llama3.2-1b, llama3.1-8b, "
        "llama3.1-70b, llama3.1-405b (LLaMA); or custom (with the sizes below)");
  p.add("family", &a.family, "custom model: gpt2 or llama (the pieces, parameter names and Hugging Face format)");
  p.add("n-layer", &a.n_layer, "custom model: transformer blocks").at_least(1);
  p.add("n-head", &a.n_head, "custom model: attention (query) heads").at_least(1);
  p.add("n-kv-head", &a.n_kv_head, "custom model: key/value heads, dividing --n-head (0: --n-head, multi-head attention)")
      .at_least(0);
  p.add("n-embd", &a.n_embd, "custom model: channels").at_least(1);
  p.add("ffn-dim", &a.ffn_dim, "custom model: MLP width (0: the family's: 4 x n-embd for gpt2, 8/3 x n-embd rounded up to 256 for llama)")
      .at_least(0);
  p.add("vocab-size", &a.vocab_size, "custom model: vocabulary (257 for the byte tokenizer)").at_least(1);
  p.add("max-seq-len", &a.max_seq_len, "custom model: context length").at_least(1);
  p.add("norm", &a.norm, "custom model: layernorm or rmsnorm (default: the family's)");
  p.add("rope-theta", &a.rope_theta, "custom model with rotary positions (llama): base of the frequencies (0: 500000)")
      .at_least(0);
  p.add("tie-embeddings", &a.tie_embeddings,
        "custom model: the output layer is the token embedding (default: the family's, gpt2 tied, llama not)");
  p.add("init-from", &a.init_from,
        "start from a Hugging Face directory (GPT2LMHeadModel or LlamaForCausalLM: config.json + model.safetensors or shards)");
  p.add("export", &a.export_dir, "write the trained model as a Hugging Face directory of its family");
  p.section("Data");
  p.add("data", &a.data, "training shards: a path, a comma-separated list or a glob");
  p.add("val-data", &a.val_data, "validation shards (default: the training path with _train -> _val, if it exists)");
  p.add("batch-size", &a.batch_size, "sequences per microbatch per data-parallel rank").at_least(1);
  p.add("seq-len", &a.seq_len, "tokens per sequence").at_least(1);
  p.add("no-shuffle", &a.no_shuffle, "read the sequences in file order every epoch (default: a new order each epoch, from --seed)");
  p.section("Parallel layout (global batch = batch-size x dp x microbatches sequences)");
  p.add("tp", &a.tp, "tensor-parallel ranks (heads, MLP and vocabulary split; adjacent ranks)").at_least(1);
  p.add("pp", &a.pp, "pipeline stages").at_least(1);
  p.add("dp", &a.dp, "data-parallel replicas (0: world size / (tp x pp))").at_least(0);
  p.add("sp", &a.sp, "sequence parallelism inside tensor-parallel groups");
  p.add("zero", &a.zero, "1: ZeRO-1, optimizer state sharded over data-parallel ranks").at_least(0).at_most(1);
  p.add("microbatches", &a.microbatches, "microbatches per step (pipeline microbatches; gradient accumulation)").at_least(1);
  p.add("schedule", &a.schedule, "pipeline schedule").one_of({"gpipe", "1f1b", "interleaved"});
  p.add("virtual-stages", &a.virtual_stages, "model chunks per pipeline rank (interleaved schedule)").at_least(1);
  p.section("Optimisation");
  p.add("steps", &a.steps, "optimizer steps").at_least(0);
  p.add("lr", &a.lr, "peak learning rate").above(0);
  p.add("min-lr", &a.min_lr, "learning-rate floor reached by the cosine decay at the last step").at_least(0);
  p.add("warmup", &a.warmup, "linear warm-up steps").at_least(0);
  p.add("weight-decay", &a.weight_decay, "AdamW weight decay (not applied to biases and norms)").at_least(0);
  p.add("grad-clip", &a.grad_clip, "clip the global gradient norm to this (0: off)").at_least(0);
  p.add("beta1", &a.beta1, "AdamW beta1").at_least(0).below(1);
  p.add("beta2", &a.beta2, "AdamW beta2").at_least(0).below(1);
  p.add("seed", &a.seed, "seed for initialisation and sampling (runs are deterministic given it)").at_least(0);
  p.section("Evaluation, sampling and logs");
  p.add("eval-every", &a.eval_every, "evaluate on the validation split every N steps (0: only at the end)").at_least(0);
  p.add("eval-batches", &a.eval_batches, "validation batches per evaluation").at_least(1);
  p.add("sample-tokens", &a.sample_tokens, "tokens of text to sample at the end (0: none)").at_least(0);
  p.add("top-k", &a.top_k, "sample from the k most likely tokens (0: all; at most the vocabulary)").at_least(0);
  p.add("temperature", &a.temperature, "sampling temperature").above(0);
  p.add("log", &a.log, "write one JSON object per step/eval/event to this file");
  p.section("Execution");
  p.add("device", &a.device, "backend").one_of({"auto", "cpu", "cuda", "gpu"});
  p.add("precision", &a.precision, "auto: bf16 on GPU, f32 on CPU").one_of({"auto", "f32", "bf16"});
  p.add("recompute", &a.recompute, "activation recomputation (full: per layer)").one_of({"none", "full"});
  p.add("threads", &a.threads, "CPU threads per rank (0: cores / ranks per node)").at_least(0);
  p.section("Checkpoints and failures (README.md: Checkpoints and failures)");
  p.add("checkpoint-dir", &a.checkpoint_dir, "save checkpoints here (one file per rank, written in the background)");
  p.add("checkpoint-every", &a.checkpoint_every, "save every N steps (0: only at the end)").at_least(0);
  p.add("keep", &a.keep, "committed checkpoints to keep (0: all)").at_least(0);
  p.add("resume", &a.resume, "auto: continue from the newest valid checkpoint in --checkpoint-dir, if any; never: start afresh")
      .one_of({"auto", "never"});
  p.add("timeout", &a.timeout,
        "seconds any step, collective, evaluation or checkpoint may take before the watchdog reports a hang and exits "
        "with code 3 (0: off); not given: each section's deadline is learned from its own durations, this until then")
      .at_least(0);
  p.add("timeout-floor", &a.timeout_floor, "the shortest learned deadline, in seconds").above(0);
  p.add("heartbeat-interval", &a.heartbeat_interval,
        "seconds between heartbeats in the failure directory; a peer silent for 10 of them is dead (0: off)")
      .at_least(0);
  p.add("local-checkpoint-dir", &a.local_checkpoint_dir,
        "node-local directory (e.g. /dev/shm/ckpt) for frequent saves replicated to a rank of another node");
  p.add("local-checkpoint-every", &a.local_checkpoint_every, "save to the local tier every N steps (0: off)").at_least(0);
  p.add("on-save-error", &a.on_save_error,
        "a checkpoint that cannot be written (disk full, I/O error): continue (a later save retries) or stop (exit code 2)")
      .one_of({"continue", "stop"});
  p.add("straggler-window", &a.straggler_window, "steps per straggler measurement; ranks compare compute times after each (0: off)")
      .at_least(0);
  p.add("straggler-slowdown", &a.straggler_slowdown, "a rank this many times slower than its peers for two windows is named")
      .above(1);
  p.add("on-nan", &a.on_nan, "non-finite loss: stop (exit code 4), skip (no update) or rollback (to the latest checkpoint)")
      .one_of({"stop", "skip", "rollback"});
  p.add("fault", &a.fault, "inject failures for tests, e.g. kill:rank=1:step=12 (empty: $TESSERA_FAULT)");
  return p;
}

DevicePreference parse_device(const std::string& s) {
  if (s == "auto") return DevicePreference::automatic;
  if (s == "cpu") return DevicePreference::cpu;
  if (s == "cuda" || s == "gpu") return DevicePreference::cuda;
  throw config_error("--device '" + s + "' is not auto, cpu or cuda");
}

ModelOptions parse_model_options(const TrainArgs& a) {
  ModelOptions o;
  if (a.precision == "auto") o.precision = Precision::automatic;
  else if (a.precision == "f32") o.precision = Precision::f32;
  else if (a.precision == "bf16") o.precision = Precision::bf16;
  else throw config_error("--precision '" + a.precision + "' is not auto, f32 or bf16");
  if (a.recompute == "none") o.recompute = Recompute::none;
  else if (a.recompute == "full") o.recompute = Recompute::full;
  else throw config_error("--recompute '" + a.recompute + "' is not none or full");
  return o;
}

ModelConfig custom_config(const TrainArgs& a) {
  if (a.n_layer <= 0 || a.n_head <= 0 || a.n_embd <= 0 || a.vocab_size <= 0 || a.max_seq_len <= 0)
    throw config_error("--model custom needs --n-layer, --n-head, --n-embd, --vocab-size and --max-seq-len");
  ModelConfig c = ModelConfig::custom(a.family, a.n_layer, a.n_head, a.n_embd, a.vocab_size, a.max_seq_len);
  if (a.n_kv_head > 0) c.n_kv_head = a.n_kv_head;
  if (a.ffn_dim > 0) c.ffn_dim = a.ffn_dim;
  if (!a.norm.empty()) c.norm = parse_norm_kind(a.norm);
  if (a.rope_theta != 0) {
    if (c.position != PositionKind::rope)
      throw config_error("--rope-theta sets rotary positions' base, but a " + a.family + " model has learned positions",
                         "use --family llama, or drop --rope-theta");
    c.rope_theta = a.rope_theta;
  }
  for (const std::string& flag : a.custom_flags_given)
    if (flag == "tie-embeddings") c.tie_embeddings = a.tie_embeddings;
  return c;
}

ModelConfig model_config(const TrainArgs& a) {
  if (a.model != "custom" && !a.custom_flags_given.empty())
    throw config_error("--" + a.custom_flags_given.front() + " describes a custom model, but --model is '" + a.model + "'",
                       "use --model custom with the sizes, or drop --" + a.custom_flags_given.front());
  if (!a.init_from.empty()) {
    if (a.model == "custom")
      throw config_error("--init-from reads the model from the directory's config.json", "drop --model custom and its sizes");
    return read_hf_config(a.init_from);
  }
  if (a.model == "custom") return custom_config(a);
  return parse_flag_value("model", a.model, ModelConfig::preset);
}

// A flag that only means something with another one is refused without it: it would be accepted
// and ignored. (Each flag's own range is checked as it is parsed.)
void check_flag_combinations(const TrainArgs& a) {
  auto given = [&](const std::string& flag) { return a.given.count(flag) != 0; };
  // (A custom-model flag with a preset is refused by model_config.)
  if (!a.init_from.empty() && !a.custom_flags_given.empty())
    throw config_error("--" + a.custom_flags_given.front() + " is read only with --model custom",
                       "drop it: --init-from takes the model from DIR/config.json");
  if (given("model") && !a.init_from.empty())
    throw config_error("--model is not read with --init-from: the model is the one its config.json describes",
                       "drop --model");
  if (a.checkpoint_dir.empty())
    for (const char* flag : {"checkpoint-every", "keep", "resume"})
      if (given(flag)) throw config_error(std::string("--") + flag + " needs --checkpoint-dir", "give --checkpoint-dir DIR");
  if (a.sample_tokens == 0)
    for (const char* flag : {"top-k", "temperature"})
      if (given(flag))
        throw config_error(std::string("--") + flag + " is read only when sampling", "give --sample-tokens N, N > 0");
  if (a.on_nan == "rollback" && a.checkpoint_dir.empty())
    throw config_error("--on-nan rollback needs --checkpoint-dir", "roll back to checkpoints saved with --checkpoint-every");
  if (a.local_checkpoint_every > 0 && a.local_checkpoint_dir.empty())
    throw config_error("--local-checkpoint-every needs --local-checkpoint-dir", "give --local-checkpoint-dir DIR (node-local)");
}

void validate(const TrainArgs& a, const ModelConfig& config) {
  if (a.seq_len > config.max_seq_len)
    throw config_error("--seq-len " + std::to_string(a.seq_len) + " is longer than the model's context of " +
                           std::to_string(config.max_seq_len) + " tokens",
                       "use --seq-len " + std::to_string(config.max_seq_len) + " or less");
  if (a.min_lr > a.lr)
    throw config_error("--min-lr " + format_number(a.min_lr) + " is above --lr " + format_number(a.lr),
                       "the cosine decay goes down from --lr to --min-lr");
  if (a.top_k > config.vocab_size)
    throw config_error("--top-k " + std::to_string(a.top_k) + " is more than the vocabulary of " +
                           std::to_string(config.vocab_size) + " tokens",
                       "use --top-k 0 to sample from every token");
}

std::string default_val_path(const std::string& train) {
  auto pos = train.rfind("_train");
  if (pos == std::string::npos || train.find_first_of(",*?[") != std::string::npos) return "";
  std::string val = train.substr(0, pos) + "_val" + train.substr(pos + 6);
  std::error_code ec;  // not opened here: the loader refuses what is not a regular file, with a message
  for (const std::string& file : {val, val + ".idx"})  // a Megatron dataset may be named by its prefix
    if (std::filesystem::exists(file, ec)) return val;
  return "";
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Copies gathered global parameters into a one-process model (for sampling and export on rank 0).
void load_parameters(Model& model, const std::map<std::string, std::vector<float>>& values) {
  for (size_t i = 0; i < model.params().size(); ++i)
    upload_floats(model.context(), model.param(i), values.at(model.params()[i].name).data());
}

ParallelLayout parse_layout(const TrainArgs& a) {
  ParallelLayout l;
  l.tp = a.tp;
  l.pp = a.pp;
  l.dp = a.dp;
  l.sequence_parallel = a.sp;
  l.zero_stage = a.zero;
  l.microbatches = a.microbatches;
  l.schedule = parse_schedule_kind(a.schedule);
  l.virtual_stages = a.virtual_stages;
  return l;
}

// Where failure reports go: the launcher's directory, else beside the checkpoints (empty: stderr only).
std::string failure_report_dir(const TrainArgs& a) {
  if (const char* env = std::getenv("TESSERA_FAILURE_DIR"); env && *env) return env;
  return a.checkpoint_dir;
}

// Where the run stands, besides the model and optimizer: what a checkpoint stores for the program.
struct RunState {
  int step = 0;          // steps done: the last step run (steps are numbered from 1)
  int64_t skipped = 0;   // steps skipped for a non-finite loss
  JobClock clock;
};

// The shape of a run's steps, saved with each checkpoint so that a resume can say what changed.
struct RunShape {
  int batch_size = 0, seq_len = 0, microbatches = 0, dp = 0, steps = 0;
  int64_t tokens_per_step() const { return int64_t(batch_size) * seq_len * microbatches * dp; }
};

// TrainingState::program_json: one flat object with the clock's fields and the shape's.
std::string program_json(const JobClock& clock, const RunShape& shape) {
  std::string json = clock.to_json();
  char fields[160];
  std::snprintf(fields, sizeof(fields), ",\"batch_size\":%d,\"seq_len\":%d,\"microbatches\":%d,\"dp\":%d,\"steps\":%d}",
                shape.batch_size, shape.seq_len, shape.microbatches, shape.dp, shape.steps);
  return json.substr(0, json.rfind('}')) + fields;
}

// The shape stored in a checkpoint; nullopt when it holds none (saved by another program).
std::optional<RunShape> saved_shape(const std::string& program_json) {
  RunShape s;
  double v[5];
  const char* keys[] = {"batch_size", "seq_len", "microbatches", "dp", "steps"};
  for (int i = 0; i < 5; ++i)
    if (!json_number_field(program_json, keys[i], &v[i])) return std::nullopt;
  s.batch_size = int(v[0]), s.seq_len = int(v[1]), s.microbatches = int(v[2]), s.dp = int(v[3]), s.steps = int(v[4]);
  return s;
}

TrainingState training_state(const RunState& run, const DataLoader& loader, const RunShape& shape) {
  TrainingState s;
  s.step = run.step;
  s.train_loader = loader.state();
  s.skipped_steps = run.skipped;
  s.program_json = program_json(run.clock, shape);
  return s;
}

// One line on what a resume under other flags means (the step's size, the data position from the
// loader's notes, the schedule); empty when nothing that matters changed. saved: the shape the
// checkpoint's run had, when it says.
std::string resume_notice(const std::optional<RunShape>& saved, const RunShape& now, int step,
                          const std::vector<std::string>& data_notes) {
  std::vector<std::string> parts;
  if (saved && (saved->tokens_per_step() != now.tokens_per_step() || saved->seq_len != now.seq_len)) {
    std::string changed;
    auto note = [&](const char* flag, int was, int is) {
      if (was != is) changed += std::string(changed.empty() ? "" : ", ") + flag + " " + std::to_string(is) + " (was " + std::to_string(was) + ")";
    };
    note("--batch-size", saved->batch_size, now.batch_size);
    note("--seq-len", saved->seq_len, now.seq_len);
    note("--microbatches", saved->microbatches, now.microbatches);
    note("--dp", saved->dp, now.dp);
    parts.push_back(changed + ": steps now read " + std::to_string(now.tokens_per_step()) + " tokens instead of " +
                    std::to_string(saved->tokens_per_step()));
  }
  parts.insert(parts.end(), data_notes.begin(), data_notes.end());
  if (now.steps < step) {
    parts.push_back("--steps " + std::to_string(now.steps) + " is below the checkpoint's step " + std::to_string(step) +
                    ": no step runs (the model is the checkpoint's)");
  } else if (saved && now.steps != saved->steps) {
    parts.push_back("--steps " + std::to_string(now.steps) + " (was " + std::to_string(saved->steps) +
                    "): the learning-rate schedule from step " + std::to_string(step + 1) +
                    " on is the one of a " + std::to_string(now.steps) + "-step run");
  }
  std::string line;
  for (const std::string& p : parts) line += (line.empty() ? "" : "; ") + p;
  return line;
}

// The program's checks of a checkpoint's state before it is loaded (a data error rejects it).
void check_state(const TrainingState& s, DataLoader& loader) {
  if (s.step > std::numeric_limits<int>::max())
    throw data_error("step " + std::to_string(s.step) + " is beyond what tessera-train counts", "checkpoint state");
  loader.restore(s.train_loader);  // a data position no loader writes is refused
}

// The run continued from a checkpoint's state; *data_notes: what differs in the data position.
RunState adopt(const TrainingState& s, DataLoader& loader, const JobClock& fallback, std::vector<std::string>* data_notes) {
  *data_notes = loader.restore(s.train_loader);
  RunState run;
  run.step = int(s.step);
  run.skipped = s.skipped_steps;
  run.clock = JobClock::from_json(s.program_json, fallback);
  return run;
}

// Whether a nan fault poisons this step on some rank. The loss is averaged over the ranks, so it is
// then non-finite on all of them: every rank asks for every rank and all decide alike.
bool nan_fault_at(const FaultInjector& faults, int step) {
  for (const Fault& f : faults.faults())
    if (f.kind == FaultKind::nan && f.step == step && f.attempt == faults.attempt()) return true;
  return false;
}

// A step whose loss a fault made non-finite: it consumes its batches as the real step would, and
// neither computes nor updates anything, as a step skipped for a non-finite loss leaves the model.
StepStats poisoned_step(Trainer& trainer, DataLoader& loader, std::vector<SampleId>& samples) {
  std::vector<int32_t> inputs(size_t(loader.batch_size()) * size_t(loader.seq_len())), targets(inputs.size());
  samples.clear();
  for (int mb = 0; mb < trainer.microbatches(); ++mb) {
    loader.next_batch(inputs.data(), targets.data());
    for (int b = 0; b < loader.batch_size(); ++b) samples.push_back(loader.sample_id(b));
  }
  StepStats s;
  s.loss = std::numeric_limits<float>::quiet_NaN();
  s.grad_norm = std::numeric_limits<float>::quiet_NaN();
  s.applied = false;
  return s;
}

// One tessera-train job on this rank: everything built and checked at start (the constructor), then
// resume(), train(), summarize(), sample_and_export(). Members are built in declaration order.
class TrainingRun {
 public:
  TrainingRun(const TrainArgs& args, MpiSession& mpi);

  void print_setup();
  // Continues from the newest valid checkpoint (--resume auto) or starts afresh; opens the log.
  void resume();
  // Steps until --steps, each followed by the commit of a finished save, the non-finite policy,
  // the progress line and log record, an evaluation and a save when due. Returns 0, or the signal
  // that asked every rank to stop after the step it ended with (stop_signals.h).
  int train();
  // After a stop signal: saves and commits the state, says what was saved; the exit code.
  int stop(int signal);
  // Completes the save in flight; the end-of-run figures on the terminal and in the log.
  void summarize();
  // Text sampled and the Hugging Face export, on rank 0 from the whole model.
  void sample_and_export();

 private:
  StepStats run_step(int step, float lr);
  // After each step (steps_done: the step just finished): the straggler measurement, the local
  // tier, and whether to stop.
  int after_step(int steps_done, StepTiming timing);
  void log_straggler_window();
  // --on-nan for a step whose loss was not finite: training goes on (the step skipped, or the
  // latest checkpoint reloaded), or it stops with an exception.
  void handle_nonfinite(int step, const StepStats& stats);
  void report_step(int step, float lr, const StepStats& stats, double seconds, const std::string& samples);
  std::string step_samples_digest();  // collective over dp when logging
  void maybe_evaluate(int step);
  void save_if_due(int steps_done);
  Model* whole_model(std::unique_ptr<Model>& assembled);  // null on ranks other than 0
  void print_sample(Model& whole);
  void check_faults() const;
  int checked_eval_batches() const;

  const TrainArgs& a_;
  MpiSession& mpi_;
  const bool lead_;
  const ModelConfig config_;
  const ParallelLayout requested_;
  FaultInjector faults_;
  StopSignals stop_signals_;
  FailureMonitor monitor_;
  Context ctx_;
  std::unique_ptr<Communicator> world_;
  CheckpointDirLock lock_;  // outputs checked and the checkpoint directory locked before anything is loaded or built
  ProcessGrid grid_;
  StragglerDetector stragglers_;
  const ParallelLayout& layout_;
  const int B_, T_;
  DataLoader train_loader_;
  const std::string val_path_;
  std::unique_ptr<DataLoader> val_loader_;
  const int eval_batches_;  // validation batches per evaluation
  const std::string data_checked_;  // every token against the vocabulary, before the model is built
  Trainer trainer_;
  Model& model_;
  const LRSchedule schedule_;
  Watchdog& watchdog_;
  MetricsLog log_;
  Checkpointer checkpoints_;
  LocalCheckpointTier local_;
  const int64_t tokens_per_step_;
  const RunShape shape_;

  RunState run_;
  std::vector<SampleId> poisoned_samples_;  // the samples a nan fault's step consumed
  double train_seconds_ = 0;
  int steps_run_ = 0;
  int injected_up_to_ = 0;    // faults act once per process, also when a rollback replays their step
  int rolled_back_for_ = 0;   // the step whose non-finite loss caused the last rollback
};

ModelConfig checked_config(const TrainArgs& a) {
  ModelConfig config = model_config(a);
  config.validate();
  validate(a, config);
  return config;
}

ParallelLayout checked_layout(const TrainArgs& a, int world_size) {
  for (const auto& [flag, value] : {std::pair<const char*, int>{"tp", a.tp}, {"pp", a.pp}, {"dp", a.dp}})
    if (value > world_size)
      throw config_error("--" + std::string(flag) + " " + std::to_string(value) + " is more than the " +
                             std::to_string(world_size) + " ranks launched",
                         "launch tp x pp x dp ranks (mpirun -np N, srun --ntasks N)");
  ParallelLayout requested = parse_layout(a);
  requested.resolved(world_size);  // a layout that does not fit fails before any work
  return requested;
}

ContextOptions context_options(const TrainArgs& a, bool lead) {
  LaunchInfo launch = detect_launch();
  ContextOptions o;
  o.device = parse_device(a.device);
  o.cpu_threads = a.threads;
  o.local_rank = launch.local_rank;
  o.local_size = launch.local_size;
  o.announce = lead;
  return o;
}

LoaderOptions loader_options(const TrainArgs& a) {
  LoaderOptions o;
  o.shuffle = !a.no_shuffle;
  o.seed = a.seed;
  o.check_tokens = false;  // check_data_tokens checks every token, each rank a part
  return o;
}

TrainerOptions trainer_options(const TrainArgs& a) {
  TrainerOptions o;
  o.batch_size = a.batch_size;
  o.seq_len = a.seq_len;
  o.seed = uint64_t(a.seed);
  o.adamw.beta1 = a.beta1;
  o.adamw.beta2 = a.beta2;
  o.adamw.weight_decay = a.weight_decay;
  o.adamw.grad_clip = a.grad_clip;
  return o;
}

ModelOptions model_options(const TrainArgs& a, const ProcessGrid& grid) {
  ModelOptions o = parse_model_options(a);
  o.grid = &grid;
  return o;
}

LRSchedule lr_schedule(const TrainArgs& a) {
  LRSchedule s;
  s.max_lr = a.lr;
  s.min_lr = a.min_lr;
  s.warmup_steps = a.warmup;
  s.total_steps = a.steps;
  return s;
}

// One watchdog per rank: a step, collective, evaluation or checkpoint that outlives its deadline
// (--timeout, else learned from the run), or a peer that stops its heartbeat while this rank waits
// for it, is a hang. The rank writes a failure report, aborts the world communicator (peers blocked
// on this rank fail too) and exits with code 3, which tessera-launch restarts.
FailureMonitorOptions failure_monitor_options(const TrainArgs& a, int rank, int attempt) {
  FailureMonitorOptions o;
  o.timeout_s = a.timeout_given ? a.timeout : 0;
  o.learn = !a.timeout_given;
  o.initial_timeout_s = a.timeout > 0 ? a.timeout : 600;
  o.timeout_floor_s = a.timeout_floor;
  o.heartbeat_interval_s = a.heartbeat_interval;
  o.report_dir = failure_report_dir(a);
  // The heartbeats start before the other outputs are checked (check_outputs): their directory is
  // checked here, named by the flag or variable that gave it.
  if (!o.report_dir.empty() && o.heartbeat_interval_s > 0)
    check_output_dir(o.report_dir == a.checkpoint_dir ? "--checkpoint-dir" : "TESSERA_FAILURE_DIR (failure reports)",
                     o.report_dir);
  o.rank = rank;
  o.attempt = attempt;
  return o;
}

// Ranks doing the same work, whose compute times are compared: one pipeline stage.
std::vector<int> straggler_groups(const ProcessGrid& grid) {
  std::vector<int> group(size_t(grid.world_size()));
  const ParallelLayout& l = grid.layout();
  for (int r = 0; r < grid.world_size(); ++r) group[size_t(r)] = r / (l.tp * l.dp);
  return group;
}

StragglerOptions straggler_options(const TrainArgs& a) {
  StragglerOptions o;
  o.window = a.straggler_window;
  o.slowdown = a.straggler_slowdown;
  o.recovered = std::min(1.2, 1.0 + (a.straggler_slowdown - 1.0) / 2);
  return o;
}

// Bytes of one checkpoint of the whole job: parameters, the fp32 master copy of bf16 ones, AdamW's
// two moments.
uint64_t checkpoint_bytes(const TrainArgs& a, const ModelConfig& config, const Context& ctx) {
  const bool bf16 = a.precision == "bf16" || (a.precision == "auto" && ctx.on_gpu());
  const long double bytes = (long double)config.parameter_count() * (bf16 ? 2 + 4 + 8 : 4 + 8);
  return bytes > (long double)UINT64_MAX ? UINT64_MAX : uint64_t(bytes);
}

// What names this job in the checkpoint directory's lock: the batch system's job id, else the launcher's.
std::string job_name() {
  for (const char* var : {"SLURM_JOB_ID", "PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid", "TORCHELASTIC_RUN_ID"})
    if (const char* v = std::getenv(var); v && *v) return std::string(var) + "=" + v;
  return "";
}

// The run the local checkpoint tier's shards belong to, the same on every rank (rank 0's): the
// launcher's TESSERA_RUN_ID (kept for every attempt of a job), else the Slurm job (kept when it is
// requeued), else a new one, so that a later job never resumes an earlier one's shards.
std::string job_run_id(Context& ctx, Communicator& world) {
  return host_all_gather_strings(ctx, world, run_id_from_environment())[0];
}

// Every output checked before any work (README: checked at start), the same on every rank, and
// --checkpoint-dir locked by rank 0 (the rank that commits) for the whole run.
CheckpointDirLock check_outputs(const TrainArgs& a, const ModelConfig& config, Context& ctx, Communicator& world, bool lead) {
  CheckpointDirLock lock;
  check_on_every_rank(ctx, world, [&] {
    if (lead && !a.log.empty()) check_log_file("--log", a.log);
    if (lead && !a.export_dir.empty()) check_creatable_dir("--export", a.export_dir);
    if (!a.checkpoint_dir.empty()) {
      // Rank 0 needs room for the whole checkpoint (a shared file system); every other rank for its
      // node's part of it (node-local disks).
      const uint64_t whole = checkpoint_bytes(a, config, ctx);
      const uint64_t node_part = uint64_t((long double)whole * ctx.options().local_size / world.size());
      check_output_dir("--checkpoint-dir", a.checkpoint_dir, lead ? whole : node_part);
    }
    if (!a.local_checkpoint_dir.empty()) check_output_dir("--local-checkpoint-dir", a.local_checkpoint_dir);
    if (const char* env = std::getenv("TESSERA_FAILURE_DIR"); env && *env)
      check_output_dir("TESSERA_FAILURE_DIR (failure reports)", env);
    if (lead && !a.checkpoint_dir.empty()) {
      lock = CheckpointDirLock::acquire(a.checkpoint_dir, job_name());
      if (!lock.warning().empty()) std::fprintf(stderr, "tessera: warning: %s\n", lock.warning().c_str());
    }
  });
  return lock;
}

TrainingRun::TrainingRun(const TrainArgs& args, MpiSession& mpi)
    : a_(args),
      mpi_(mpi),
      lead_(mpi.rank() == 0),
      config_(checked_config(args)),
      requested_(checked_layout(args, mpi.world_size())),
      faults_(FaultInjector::from_environment(args.fault)),
      stop_signals_(lead_),
      monitor_(failure_monitor_options(args, mpi.rank(), faults_.attempt())),
      ctx_(context_options(args, lead_)),
      world_(monitor_.watch(ctx_, make_communicator(ctx_))),
      lock_(check_outputs(args, config_, ctx_, *world_, lead_)),
      grid_(*world_, requested_),
      stragglers_(ctx_, *world_, straggler_groups(grid_), straggler_options(args)),
      layout_(grid_.layout()),
      B_(args.batch_size),
      T_(args.seq_len),
      train_loader_(args.data, B_, T_, config_.vocab_size, grid_.dp_rank(), layout_.dp, loader_options(args)),
      val_path_(args.val_data.empty() ? default_val_path(args.data) : args.val_data),
      val_loader_(val_path_.empty() ? nullptr
                                    : std::make_unique<DataLoader>(val_path_, B_, T_, config_.vocab_size,
                                                                   grid_.dp_rank(), layout_.dp, loader_options(args))),
      eval_batches_(checked_eval_batches()),
      data_checked_(check_data_tokens(ctx_, *world_, {&train_loader_, val_loader_.get()}, config_.vocab_size)),
      trainer_(ctx_, config_, trainer_options(args), model_options(args, grid_)),
      model_(trainer_.model()),
      schedule_(lr_schedule(args)),
      watchdog_(monitor_.watchdog()),
      checkpoints_(trainer_, watchdog_,
                   CheckpointPolicy{args.checkpoint_dir, args.checkpoint_every, args.keep, args.on_save_error == "stop"},
                   faults_, log_, lead_),
      local_(ctx_, trainer_, *world_,
             LocalCheckpointOptions{args.local_checkpoint_dir, args.local_checkpoint_every, 2,
                                    args.local_checkpoint_dir.empty() ? "" : job_run_id(ctx_, *world_)}),
      tokens_per_step_(int64_t(B_) * T_ * layout_.microbatches * layout_.dp),
      shape_{B_, T_, layout_.microbatches, layout_.dp, args.steps} {
  check_faults();
  if (!a_.init_from.empty()) import_hf(model_, a_.init_from);
  stop_signals_.set_checkpoint_root(a_.checkpoint_dir);
  if (local_.enabled()) faults_.set_node_local_dir(local_.host_dir());
}

// A fault that could never act is refused: a test that injects it would pass without it.
void TrainingRun::check_faults() const {
  for (const Fault& f : faults_.faults()) {
    const std::string what = "--fault " + describe(f) + ": ";
    if (f.rank >= grid_.world_size())
      throw config_error(what + "rank " + std::to_string(f.rank) + " is not one of the " +
                         std::to_string(grid_.world_size()) + " ranks launched (0.." + std::to_string(grid_.world_size() - 1) + ")");
    if (f.kind == FaultKind::corrupt || f.kind == FaultKind::truncate) {
      if (!checkpoints_.due(f.step, a_.steps))
        throw config_error(what + "no checkpoint is saved at step " + std::to_string(f.step),
                           "name a step a checkpoint is saved at: a multiple of --checkpoint-every, or --steps " +
                               std::to_string(a_.steps));
    } else if (f.step < 1 || f.step > a_.steps) {
      throw config_error(what + "step " + std::to_string(f.step) + " is not one of the steps 1.." + std::to_string(a_.steps),
                         "steps are numbered from 1");
    }
  }
}

// Evaluations every N steps need validation data, and an evaluation reads each of its batches
// once: more batches than the data holds would count some twice. The default (8) shrinks to what
// the data holds; a number given beyond it is refused.
int TrainingRun::checked_eval_batches() const {
  if (!val_loader_) {
    // Evaluations asked for that could not happen; --eval-every 0 and --eval-batches only limit them.
    if (a_.given.count("eval-every") && a_.eval_every > 0)
      throw config_error("--eval-every " + std::to_string(a_.eval_every) + " needs validation data, and there is none",
                         "give --val-data, or a --data path with _train in its name beside a _val file");
    return 0;
  }
  const int64_t available = val_loader_->batches_per_epoch();
  if (!a_.given.count("eval-batches")) return int(std::min<int64_t>(a_.eval_batches, available));
  if (a_.eval_batches > available)
    throw config_error("--eval-batches " + std::to_string(a_.eval_batches) + ": the validation data " + val_path_ +
                           " holds " + std::to_string(available) + " batches of " + std::to_string(layout_.dp) + " x " +
                           std::to_string(B_) + " x " + std::to_string(T_) + " tokens",
                       "use --eval-batches " + std::to_string(available) + " or less, or a smaller --batch-size");
  return a_.eval_batches;
}

void TrainingRun::print_setup() {
  std::printf("model: %s, %s, %s\n", config_.describe().c_str(), dtype_name(model_.dtype()),
              a_.recompute == "full" ? "full recomputation" : "no recomputation");
  std::printf("layout: %d ranks, %s, backend %s\n", grid_.world_size(), layout_.describe().c_str(), world_->backend());
  if (layout_.pp > 1) std::printf("pipeline: %s\n", describe(trainer_.schedule()).c_str());
  std::printf("data: %s (%lld tokens, %s, %s), validation: %s\n", a_.data.c_str(),
              static_cast<long long>(train_loader_.total_tokens()), train_loader_.dataset().formats().c_str(),
              a_.no_shuffle ? "file order" : "shuffled every epoch",
              val_loader_ ? (val_path_ + " (" + std::to_string(eval_batches_) + " batches per evaluation)").c_str() : "none");
  std::printf("data: %s\n", data_checked_.c_str());
  std::printf("batch: %d x %d tokens x %d microbatches x %d replicas = %lld tokens per step\n", B_, T_,
              layout_.microbatches, layout_.dp, static_cast<long long>(tokens_per_step_));
  std::printf("MFU convention: 6N + 12*L*C*T FLOPs per token (PaLM), against %s peak\n",
              ctx_.peak_flops() > 0 ? "the GPUs' dense bf16" : "no known (CPU)");
  if (checkpoints_.enabled())
    std::printf("checkpoints: %s, %s, keep %d\n", a_.checkpoint_dir.c_str(),
                a_.checkpoint_every > 0 ? ("every " + std::to_string(a_.checkpoint_every) + " steps").c_str() : "at the end",
                a_.keep);
  std::printf("failures: %s; on a non-finite loss %s, on a failed save %s\n", monitor_.describe().c_str(),
              a_.on_nan.c_str(), a_.on_save_error.c_str());
  if (local_.enabled()) std::printf("local checkpoints: %s\n", local_.describe().c_str());
  if (stragglers_.enabled())
    std::printf("stragglers: compute times compared every %d steps within each pipeline stage, named at %gx; %s\n",
                a_.straggler_window, a_.straggler_slowdown, stragglers_.describe_cpu_wait().c_str());
  for (const Fault& f : faults_.faults())
    std::printf("fault injection: %s (this is attempt %d)\n", describe(f).c_str(), faults_.attempt());
  std::fflush(stdout);
}

// The step of the newest committed durable checkpoint (-1: none), checked by sizes only (cheap):
// rank 0 looks, every rank learns it.
int64_t newest_durable_step(Context& ctx, Communicator& world, const std::string& root, bool lead) {
  int64_t step = -1;
  if (lead && !root.empty())
    if (std::optional<CheckpointInfo> c = find_latest_valid_checkpoint(root, nullptr, CheckpointVerify::sizes)) step = c->step;
  std::vector<int64_t> all(size_t(world.size()), -1);
  host_all_gather(ctx, world, &step, sizeof(step), all.data());
  return *std::max_element(all.begin(), all.end());
}

void TrainingRun::resume() {
  std::optional<TrainingState> resumed;
  std::string dir, tier = "durable";
  std::vector<int> from_peers;
  const auto check = [this](const TrainingState& s) { check_state(s, train_loader_); };
  if (a_.resume == "auto") {
    // The local tier when it holds a complete step at least as new as the durable one.
    std::string why_not;
    if (local_.enabled()) {
      const int64_t durable = newest_durable_step(ctx_, *world_, a_.checkpoint_dir, lead_);
      Watchdog::Scope scope = watchdog_.scope("local checkpoint load", -1);
      if (std::optional<LocalRestore> local = local_.restore(durable, &why_not)) {
        // The same checks as a durable checkpoint's, agreed by every rank: one rank's unusable
        // state sends every rank to the durable tier.
        std::string rejected;
        try {
          check(local->state);
        } catch (const Error& e) {
          rejected = e.what();
        }
        int32_t bad = rejected.empty() ? 0 : 1;
        std::vector<int32_t> all(size_t(world_->size()), 0);
        host_all_gather(ctx_, *world_, &bad, sizeof(bad), all.data());
        if (*std::max_element(all.begin(), all.end()) == 0) {
          resumed = local->state;
          dir = "the local tier: " + local->message;
          tier = "local";
          from_peers = local->from_peers;
        } else {
          why_not = rejected.empty() ? "another rank's state is unusable" : rejected;
        }
      }
      if (!resumed && !why_not.empty()) std::printf("local checkpoints not used: %s\n", why_not.c_str());
    }
    if (!resumed) {
      resumed = checkpoints_.load_latest(check);
      dir = checkpoints_.loaded_dir();
    }
  }
  if (lead_ && !a_.log.empty()) log_ = MetricsLog(a_.log, /*append=*/resumed.has_value());  // a resumed job's log goes on
  if (resumed) {
    std::vector<std::string> data_notes;
    run_ = adopt(*resumed, train_loader_, JobClock::starting_now(), &data_notes);
    std::printf("resumed from %s at step %d\n", dir.c_str(), run_.step);
    std::string peers;
    for (int r : from_peers) peers += (peers.empty() ? "" : ",") + std::to_string(r);
    MetricsRecord record("resume");
    record.add("step", run_.step).add("dir", dir).add("tier", tier).add("from_peers", peers).add("unix", unix_seconds())
        .add("attempt", faults_.attempt());
    const std::string notice = resume_notice(saved_shape(resumed->program_json), shape_, run_.step, data_notes);
    if (!notice.empty()) {
      std::printf("resume notice: %s\n", notice.c_str());
      record.add("notice", notice);
    }
    log_.write(record);
  } else {
    run_.clock = JobClock::starting_now();  // a fresh job starts its clock when training starts
  }
  std::fflush(stdout);
  injected_up_to_ = run_.step;
}

StepStats TrainingRun::run_step(int step, float lr) {
  monitor_.step_started(step);
  Watchdog::Scope scope = watchdog_.scope("train step", step);
  bool poisoned = false;
  if (step > injected_up_to_) {
    injected_up_to_ = step;
    faults_.maybe_inject(step, mpi_.rank());  // kill, hang and exit faults act here and do not return
    poisoned = nan_fault_at(faults_, step);
  }
  poisoned_samples_.clear();
  StepStats stats = poisoned ? poisoned_step(trainer_, train_loader_, poisoned_samples_) : trainer_.step(train_loader_, lr);
  ctx_.synchronize();
  return stats;
}

void TrainingRun::handle_nonfinite(int step, const StepStats& stats) {
  // Loss and gradient norm are the same on every rank, so every rank takes the same branch.
  std::printf("step %5d/%d | loss %f, grad norm %f: non-finite (--on-nan %s)\n", step, a_.steps, stats.loss,
              stats.grad_norm, a_.on_nan.c_str());
  std::fflush(stdout);
  if (a_.on_nan == "skip") {
    ++run_.skipped;
    const std::string samples = step_samples_digest();
    log_.write(MetricsRecord("skipped_step").add("step", step).add("loss", double(stats.loss))
                   .add("skipped_steps", run_.skipped).add("samples", samples));
    run_.step = step;
    save_if_due(step);
    return;
  }
  if (a_.on_nan == "rollback" && rolled_back_for_ != step) {
    if (std::optional<TrainingState> back =
            checkpoints_.load_latest([this](const TrainingState& s) { check_state(s, train_loader_); })) {
      rolled_back_for_ = step;
      std::vector<std::string> data_notes;
      run_ = adopt(*back, train_loader_, run_.clock, &data_notes);
      for (const std::string& note : data_notes) std::printf("data: %s\n", note.c_str());
      const std::string dir = checkpoints_.loaded_dir();
      std::printf("rolled back from step %d to %s at step %d\n", step, dir.c_str(), run_.step);
      std::fflush(stdout);
      log_.write(MetricsRecord("rollback").add("from_step", step).add("step", run_.step).add("dir", dir)
                     .add("loss", double(stats.loss)));
      return;
    }
  }
  std::string why;
  if (a_.on_nan == "rollback") why = rolled_back_for_ == step ? " again after rolling back" : " with no checkpoint to roll back to";
  log_.write(MetricsRecord("nonfinite_loss").add("step", step).add("loss", double(stats.loss)).add("action", "stop"));
  checkpoints_.finish();  // the save in flight holds a good state: commit it
  throw Error(ExitCode::nonfinite_loss, "loss is " + std::to_string(stats.loss) + " at step " + std::to_string(step) + why,
              "tessera-train", "lower --lr, check the data, or run with --on-nan skip or rollback");
}

std::string TrainingRun::step_samples_digest() {
  if (a_.log.empty()) return "";  // the same on every rank: the gather happens on all or none
  const std::vector<SampleId>& mine = poisoned_samples_.empty() ? trainer_.step_samples() : poisoned_samples_;
  Communicator* dp = layout_.dp > 1 ? &grid_.dp() : nullptr;
  return digest_hex(global_step_digest(ctx_, dp, mine));
}

void TrainingRun::report_step(int step, float lr, const StepStats& stats, double seconds, const std::string& samples) {
  const double flops_per_token = config_.flops_per_token(T_);
  const double peak = ctx_.peak_flops() * grid_.world_size();
  double tokens_per_s = double(tokens_per_step_) / seconds;
  double mfu = peak > 0 ? flops_per_token * tokens_per_s / peak : 0.0;
  double memory_gb = double(model_.params().flat_numel()) * (dtype_size(model_.dtype()) + 4) / 1e9 +
                     double(trainer_.optimizer()->state_bytes() + model_.activation_bytes()) / 1e9;
  if (steps_run_ == 1)
    std::printf("optimizer state: %.2f MB on rank 0%s\n", double(trainer_.optimizer()->state_bytes()) / 1e6,
                layout_.zero_stage == 1 ? " (ZeRO-1: sharded over the data-parallel ranks)" : "");
  std::printf("step %5d/%d | loss %.4f | lr %.2e | norm %.4f | %.1f ms | %.0f tok/s", step, a_.steps, stats.loss, lr,
              stats.grad_norm, seconds * 1e3, tokens_per_s);
  if (mfu > 0) std::printf(" | MFU %.1f%%", 100.0 * mfu);
  std::printf("\n");
  std::fflush(stdout);
  MetricsRecord record("train");
  record.add("step", step).add("loss", double(stats.loss)).add("lr", double(lr)).add("grad_norm", double(stats.grad_norm));
  record.add("ms", seconds * 1e3).add("tokens_per_s", tokens_per_s).add("mfu", mfu).add("mem_gb", memory_gb);
  if (!samples.empty()) record.add("samples", samples);
  log_.write(record);
}

void TrainingRun::maybe_evaluate(int step) {
  const bool last = step == a_.steps;
  if (!val_loader_ || !((a_.eval_every > 0 && step % a_.eval_every == 0) || last)) return;
  Watchdog::Scope scope = watchdog_.scope("evaluation", step);
  val_loader_->reset();  // every evaluation sees the same batches
  float val_loss = trainer_.evaluate(*val_loader_, eval_batches_);
  std::printf("eval  %5d | val loss %.4f\n", step, val_loss);
  std::fflush(stdout);
  log_.write(MetricsRecord("eval").add("step", step).add("loss", double(val_loss)));
}

void TrainingRun::save_if_due(int steps_done) {
  if (!checkpoints_.due(steps_done, a_.steps)) return;
  checkpoints_.save(training_state(run_, train_loader_, shape_));
}

// Why a named rank is slow, where the scheduler says: it waited for a CPU that something else held.
// Not where the waits are taken out: they are not what made it slow, and may be the job's own.
std::string cpu_wait_remark(const StragglerEvent& e, bool cpu_wait_taken_out) {
  if (cpu_wait_taken_out || e.cpu_wait_share < 0.1) return "";
  char buf[160];
  std::snprintf(buf, sizeof(buf), "; it waited for a CPU %.0f%% of that time: other programs share its CPUs",
                100 * e.cpu_wait_share);
  return buf;
}

// Every rank's median compute time and CPU-wait share in the window just compared, for plots and
// for telling a slow rank from a busy machine afterwards.
void TrainingRun::log_straggler_window() {
  std::vector<double> compute_ms;
  for (double s : stragglers_.last_medians()) compute_ms.push_back(1e3 * s);
  log_.write(MetricsRecord("straggler_window").add("step", stragglers_.last_window_step() + 1)
                 .add("compute_ms", compute_ms).add("cpu_wait_share", stragglers_.last_cpu_wait_shares())
                 .add("cpu_wait_taken_out", int64_t(stragglers_.takes_out_cpu_wait())));
}

// After each step (steps_done: the step just finished, numbered from 1): the straggler measurement,
// the local tier, and whether to stop.
int TrainingRun::after_step(int steps_done, StepTiming timing) {
  for (const StragglerEvent& e : stragglers_.record(steps_done - 1, timing)) {
    if (e.recovered)
      std::printf("straggler recovered: rank %d on %s is back to %.2fx its peers' compute time (step %lld)\n", e.rank,
                  e.host.c_str(), e.slowdown, static_cast<long long>(e.step + 1));
    else
      std::printf("straggler: rank %d on %s computes %.2fx slower than its peers (steps %lld-%lld)%s\n", e.rank,
                  e.host.c_str(), e.slowdown, static_cast<long long>(e.since_step + 1), static_cast<long long>(e.step + 1),
                  cpu_wait_remark(e, stragglers_.takes_out_cpu_wait()).c_str());
    std::fflush(stdout);
    log_.write(MetricsRecord(e.recovered ? "straggler_recovered" : "straggler")
                   .add("rank", e.rank).add("host", e.host).add("slowdown", e.slowdown)
                   .add("cpu_wait_share", e.cpu_wait_share)
                   .add("cpu_wait_taken_out", int64_t(stragglers_.takes_out_cpu_wait())).add("step", e.step + 1)
                   .add("since_step", e.since_step + 1).add("unix", unix_seconds()));
  }
  if (stragglers_.last_window_step() == steps_done - 1) log_straggler_window();
  if (local_.due(steps_done)) {
    Watchdog::Scope scope = watchdog_.scope("local checkpoint save", steps_done);
    const LocalSaveStats s = local_.save(training_state(run_, train_loader_, shape_));
    log_.write(MetricsRecord("local_checkpoint").add("step", s.step).add("blocked_ms", s.blocked_ms)
                   .add("copy_ms", s.copy_ms).add("exchange_ms", s.exchange_ms).add("bytes", s.bytes)
                   .add("replica_bytes", s.replica_bytes).add("partner", s.partner));
  }
  return agreed_stop_signal(ctx_, *world_, stop_signals_.requested());
}

int TrainingRun::train() {
  while (run_.step < a_.steps) {
    const int step = run_.step + 1;  // steps are numbered from 1 everywhere (README: step numbers)
    auto t0 = std::chrono::steady_clock::now();
    const double waited0 = monitor_.waited_s(), cpu_wait0 = monitor_.cpu_wait_outside_waits_s();
    float lr = schedule_.at(step - 1);
    StepStats stats = run_step(step, lr);
    double seconds = seconds_since(t0);
    StepTiming timing;
    timing.compute_s = seconds - (monitor_.waited_s() - waited0);
    timing.cpu_wait_s = monitor_.cpu_wait_outside_waits_s() - cpu_wait0;
    train_seconds_ += seconds;
    ++steps_run_;
    // A save whose write has ended on every rank is committed now, not at the next save, so a
    // failure before the next save loses only the steps since this one.
    checkpoints_.poll(step);
    if (!stats.applied || !std::isfinite(stats.loss)) {
      handle_nonfinite(step, stats);
      continue;
    }
    run_.clock.useful_s += seconds;  // a step that advanced training (repeats after a resume count once)
    report_step(step, lr, stats, seconds, step_samples_digest());
    maybe_evaluate(step);
    run_.step = step;
    save_if_due(step);
    monitor_.step_finished();
    if (int signal = after_step(step, timing)) return step < a_.steps ? signal : 0;
  }
  return 0;
}

int TrainingRun::stop(int signal) {
  const std::string why = signal_label(signal);
  if (!checkpoints_.enabled()) {
    std::printf("stopped by %s after step %d of %d: without --checkpoint-dir the %d steps trained are lost\n", why.c_str(),
                run_.step, a_.steps, run_.step);
    log_.write(MetricsRecord("preempted").add("step", run_.step).add("signal", why).add("saved", "none"));
    return 128 + signal;
  }
  {
    Watchdog::Scope scope = watchdog_.scope("checkpoint save", run_.step);
    if (checkpoints_.last_saved_step() != run_.step) checkpoints_.save(training_state(run_, train_loader_, shape_));
    checkpoints_.finish();
  }
  local_.finish();
  const std::string dir = checkpoints_.last_committed_dir();
  std::printf("stopped by %s after step %d of %d: saved and committed %s, nothing lost; exit code %d (relaunch to "
              "continue from there)\n",
              why.c_str(), run_.step, a_.steps, dir.c_str(), kExitPreempted);
  std::fflush(stdout);
  log_.write(MetricsRecord("preempted").add("step", run_.step).add("signal", why).add("saved", dir)
                 .add("unix", unix_seconds()));
  return kExitPreempted;
}

void TrainingRun::summarize() {
  checkpoints_.finish(/*last_of_run=*/true);
  local_.finish();
  if (!lead_) return;  // one summary per job (other ranks' stdout is closed too, but that is not relied on)
  if (steps_run_ > 0)
    std::printf("trained %d steps in %.1f s (%.0f tokens/s)\n", steps_run_, train_seconds_,
                double(tokens_per_step_) * steps_run_ / train_seconds_);
  const double wall_s = run_.clock.wall_s(), ratio = run_.clock.effective_ratio();
  std::printf("effective training time: %.2f s of steps that advanced training, in %.2f s since the job started "
              "training (%.1f%%)%s\n",
              run_.clock.useful_s, wall_s, 100.0 * ratio,
              run_.skipped > 0 ? (", " + std::to_string(run_.skipped) + " steps skipped").c_str() : "");
  log_.write(MetricsRecord("summary")
                 .add("steps", run_.step)
                 .add("useful_step_seconds", run_.clock.useful_s)
                 .add("wall_seconds", wall_s)
                 .add("effective_ratio", ratio)
                 .add("skipped_steps", run_.skipped)
                 .add("attempt", faults_.attempt()));
}

// The trainer's own model when it is unsplit, otherwise one assembled from every rank's shards (a
// collective, so every rank takes part).
Model* TrainingRun::whole_model(std::unique_ptr<Model>& assembled) {
  if (model_.holds_all_parameters()) return lead_ ? &model_ : nullptr;
  auto values = [&] {
    Watchdog::Scope scope = watchdog_.scope("gather parameters", a_.steps);
    return trainer_.gather_parameters();
  }();
  if (!lead_) return nullptr;
  ModelOptions single;
  single.precision = model_.dtype() == DType::bf16 ? Precision::bf16 : Precision::f32;
  assembled = make_model(ctx_, config_, single);
  load_parameters(*assembled, values);
  return assembled.get();
}

void TrainingRun::print_sample(Model& whole) {
  ByteTokenizer tokenizer;
  bool byte_vocab = config_.vocab_size == ByteTokenizer::kVocabSize;
  int window = std::min(T_, config_.max_seq_len);
  std::vector<int32_t> prompt{byte_vocab ? ByteTokenizer::kEndOfText : 0};
  std::vector<int32_t> text =
      generate(whole, prompt, a_.sample_tokens, window, a_.top_k, a_.temperature, uint64_t(a_.seed) + 1);
  std::printf("--- sample (%d tokens, top-k %d) ---\n", a_.sample_tokens, a_.top_k);
  if (byte_vocab) {
    std::printf("%s\n", tokenizer.decode(text.data(), text.size()).c_str());
  } else {
    for (int32_t t : text) std::printf("%d ", t);
    std::printf("\n");
  }
  std::printf("---\n");
}

void TrainingRun::sample_and_export() {
  if (a_.sample_tokens <= 0 && a_.export_dir.empty()) return;
  std::unique_ptr<Model> assembled;
  Model* whole = whole_model(assembled);
  if (!whole) return;
  if (a_.sample_tokens > 0) print_sample(*whole);
  if (!a_.export_dir.empty()) {
    export_hf(*whole, a_.export_dir);
    std::printf("exported Hugging Face model to %s\n", a_.export_dir.c_str());
    log_.write(MetricsRecord("export").add("path", a_.export_dir));
  }
}

int train(int argc, char** argv) {
  MpiSession mpi(&argc, &argv);
  TrainArgs a;
  FlagParser parser = make_parser(a);
  if (mpi.rank() != 0) std::freopen("/dev/null", "w", stdout);  // one progress stream per job; errors still reach stderr
  if (!parser.parse(argc, argv)) return 0;
  if (!parser.positional().empty())
    throw config_error("unexpected argument '" + parser.positional()[0] + "'", "flags start with --; see --help");
  a.timeout_given = parser.given("timeout");
  for (const char* flag : {"family", "n-layer", "n-head", "n-kv-head", "n-embd", "ffn-dim", "vocab-size", "max-seq-len",
                           "norm", "rope-theta", "tie-embeddings"})
    if (parser.given(flag)) a.custom_flags_given.push_back(flag);
  a.given = parser.given_flags();
  check_flag_combinations(a);
  TrainingRun run(a, mpi);
  run.print_setup();
  run.resume();
  if (int signal = run.train()) return run.stop(signal);
  run.summarize();
  run.sample_and_export();
  return 0;
}

}  // namespace
}  // namespace tessera::program

int main(int argc, char** argv) {
  return tessera::program::run_program("tessera-train", [&] { return tessera::program::train(argc, argv); });
}
