// tessera-train: trains a GPT-2 model on token shards, on one process or many (mpirun/srun) in any
// layout tp x pp x dp. Reads top to bottom: arguments -> MPI, context, process grid, data, trainer
// -> resume from the newest valid checkpoint -> for each step: trainer step (microbatches through the
// pipeline schedule, gradient averaging, update) under the watchdog -> commit of a save whose write
// has ended -> non-finite loss policy -> log -> eval -> checkpoint -> effective-time summary -> sample
// and export on rank 0.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/checkpointing.h"
#include "common/flags.h"
#include "common/job_clock.h"
#include "common/sampling.h"
#include "tessera/tessera.h"
#include "tessera/trainer.h"

namespace tessera::program {
namespace {

struct TrainArgs {
  // model
  std::string model = "tiny";
  int n_layer = 0, n_head = 0, n_embd = 0, vocab_size = 0, max_seq_len = 0;
  std::string init_from, export_dir;
  // data
  std::string data = "data/shakespeare_train.bin";
  std::string val_data;
  int batch_size = 8;
  int seq_len = 128;
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
  std::string on_nan = "stop";
  std::string fault;
};

FlagParser make_parser(TrainArgs& a) {
  FlagParser p("tessera-train", "tessera-train [flags]   (see README.md)");
  p.section("Model");
  p.add("model", &a.model, "preset: tiny, gpt2, gpt2-medium, gpt2-large, gpt2-xl, or custom (with the sizes below)");
  p.add("n-layer", &a.n_layer, "custom model: transformer blocks");
  p.add("n-head", &a.n_head, "custom model: attention heads");
  p.add("n-embd", &a.n_embd, "custom model: channels");
  p.add("vocab-size", &a.vocab_size, "custom model: vocabulary (257 for the byte tokenizer)");
  p.add("max-seq-len", &a.max_seq_len, "custom model: context length");
  p.add("init-from", &a.init_from, "start from a Hugging Face GPT-2 directory (config.json + model.safetensors)");
  p.add("export", &a.export_dir, "write the trained model as a Hugging Face GPT-2 directory");
  p.section("Data");
  p.add("data", &a.data, "training shards: a path, a comma-separated list or a glob");
  p.add("val-data", &a.val_data, "validation shards (default: the training path with _train -> _val, if it exists)");
  p.add("batch-size", &a.batch_size, "sequences per microbatch per data-parallel rank");
  p.add("seq-len", &a.seq_len, "tokens per sequence");
  p.section("Parallel layout (global batch = batch-size x dp x microbatches sequences)");
  p.add("tp", &a.tp, "tensor-parallel ranks (heads, MLP and vocabulary split; adjacent ranks)");
  p.add("pp", &a.pp, "pipeline stages");
  p.add("dp", &a.dp, "data-parallel replicas (0: world size / (tp x pp))");
  p.add("sp", &a.sp, "sequence parallelism inside tensor-parallel groups");
  p.add("zero", &a.zero, "1: ZeRO-1, optimizer state sharded over data-parallel ranks");
  p.add("microbatches", &a.microbatches, "microbatches per step (pipeline microbatches; gradient accumulation)");
  p.add("schedule", &a.schedule, "pipeline schedule: gpipe, 1f1b or interleaved");
  p.add("virtual-stages", &a.virtual_stages, "model chunks per pipeline rank (interleaved schedule)");
  p.section("Optimisation");
  p.add("steps", &a.steps, "optimizer steps");
  p.add("lr", &a.lr, "peak learning rate");
  p.add("min-lr", &a.min_lr, "learning-rate floor reached by the cosine decay at the last step");
  p.add("warmup", &a.warmup, "linear warm-up steps");
  p.add("weight-decay", &a.weight_decay, "AdamW weight decay (not applied to biases and norms)");
  p.add("grad-clip", &a.grad_clip, "clip the global gradient norm to this (0: off)");
  p.add("beta1", &a.beta1, "AdamW beta1");
  p.add("beta2", &a.beta2, "AdamW beta2");
  p.add("seed", &a.seed, "seed for initialisation and sampling (runs are deterministic given it)");
  p.section("Evaluation, sampling and logs");
  p.add("eval-every", &a.eval_every, "evaluate on the validation split every N steps (0: only at the end)");
  p.add("eval-batches", &a.eval_batches, "validation batches per evaluation");
  p.add("sample-tokens", &a.sample_tokens, "tokens of text to sample at the end (0: none)");
  p.add("top-k", &a.top_k, "sample from the k most likely tokens");
  p.add("temperature", &a.temperature, "sampling temperature");
  p.add("log", &a.log, "write one JSON object per step/eval/event to this file");
  p.section("Execution");
  p.add("device", &a.device, "auto, cpu or cuda");
  p.add("precision", &a.precision, "auto (bf16 on GPU, f32 on CPU), f32 or bf16");
  p.add("recompute", &a.recompute, "activation recomputation: none or full (per layer)");
  p.add("threads", &a.threads, "CPU threads (0: all cores)");
  p.section("Checkpoints and failures (README.md: Checkpoints and failures)");
  p.add("checkpoint-dir", &a.checkpoint_dir, "save checkpoints here (one file per rank, written in the background)");
  p.add("checkpoint-every", &a.checkpoint_every, "save every N steps (0: only at the end)");
  p.add("keep", &a.keep, "committed checkpoints to keep (0: all)");
  p.add("resume", &a.resume, "auto: continue from the newest valid checkpoint in --checkpoint-dir, if any; never: start afresh");
  p.add("timeout", &a.timeout,
        "seconds a step, evaluation or checkpoint may take before the watchdog reports a hang and exits with code 3 (0: off)");
  p.add("on-nan", &a.on_nan, "non-finite loss: stop (exit code 4), skip (no update) or rollback (to the latest checkpoint)");
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

ModelConfig model_config(const TrainArgs& a) {
  if (!a.init_from.empty()) return read_hf_config(a.init_from);
  if (a.model == "custom") {
    if (a.n_layer <= 0 || a.n_head <= 0 || a.n_embd <= 0 || a.vocab_size <= 0 || a.max_seq_len <= 0)
      throw config_error("--model custom needs --n-layer, --n-head, --n-embd, --vocab-size and --max-seq-len");
    return ModelConfig::gpt2(a.n_layer, a.n_head, a.n_embd, a.vocab_size, a.max_seq_len);
  }
  return ModelConfig::preset(a.model);
}

void validate(const TrainArgs& a, const ModelConfig& config) {
  if (a.batch_size <= 0) throw config_error("--batch-size must be positive");
  if (a.seq_len <= 0) throw config_error("--seq-len must be positive");
  if (a.seq_len > config.max_seq_len)
    throw config_error("--seq-len " + std::to_string(a.seq_len) + " is longer than the model's context of " +
                           std::to_string(config.max_seq_len) + " tokens",
                       "use --seq-len " + std::to_string(config.max_seq_len) + " or less");
  if (a.microbatches <= 0) throw config_error("--microbatches must be positive");
  if (a.steps < 0) throw config_error("--steps must not be negative");
  if (a.warmup < 0) throw config_error("--warmup must not be negative");
  if (!(a.lr > 0) || a.min_lr < 0 || a.min_lr > a.lr)
    throw config_error("learning rates must satisfy 0 <= --min-lr <= --lr and --lr > 0");
  if (a.checkpoint_every < 0) throw config_error("--checkpoint-every must not be negative");
  if (a.keep < 0) throw config_error("--keep must not be negative");
  if (a.checkpoint_every > 0 && a.checkpoint_dir.empty())
    throw config_error("--checkpoint-every needs --checkpoint-dir");
  if (a.resume != "auto" && a.resume != "never") throw config_error("--resume '" + a.resume + "' is not auto or never");
  if (!(a.timeout >= 0)) throw config_error("--timeout must be 0 (off) or a number of seconds");
  if (a.on_nan != "stop" && a.on_nan != "skip" && a.on_nan != "rollback")
    throw config_error("--on-nan '" + a.on_nan + "' is not stop, skip or rollback");
  if (a.on_nan == "rollback" && a.checkpoint_dir.empty())
    throw config_error("--on-nan rollback needs --checkpoint-dir", "roll back to checkpoints saved with --checkpoint-every");
}

std::string default_val_path(const std::string& train) {
  auto pos = train.rfind("_train");
  if (pos == std::string::npos || train.find_first_of(",*?[") != std::string::npos) return "";
  std::string val = train.substr(0, pos) + "_val" + train.substr(pos + 6);
  if (FILE* f = std::fopen(val.c_str(), "rb")) {
    std::fclose(f);
    return val;
  }
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
  int step = 0;          // steps done
  int64_t skipped = 0;   // steps skipped for a non-finite loss
  JobClock clock;
};

TrainingState training_state(const RunState& run, const DataLoader& loader) {
  TrainingState s;
  s.step = run.step;
  s.train_loader = loader.state();
  s.skipped_steps = run.skipped;
  s.program_json = run.clock.to_json();
  return s;
}

RunState adopt(const TrainingState& s, DataLoader& loader, const JobClock& fallback) {
  loader.restore(s.train_loader);
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
StepStats poisoned_step(Trainer& trainer, DataLoader& loader) {
  std::vector<int32_t> inputs(size_t(loader.batch_size()) * size_t(loader.seq_len())), targets(inputs.size());
  for (int mb = 0; mb < trainer.microbatches(); ++mb) loader.next_batch(inputs.data(), targets.data());
  StepStats s;
  s.loss = std::numeric_limits<float>::quiet_NaN();
  s.grad_norm = std::numeric_limits<float>::quiet_NaN();
  s.applied = false;
  return s;
}

int train(int argc, char** argv) {
  MpiSession mpi(&argc, &argv);
  TrainArgs a;
  FlagParser parser = make_parser(a);
  const bool lead = mpi.rank() == 0;
  if (!lead) std::freopen("/dev/null", "w", stdout);  // one progress stream per job; errors still reach stderr
  if (!parser.parse(argc, argv)) return 0;
  if (!parser.positional().empty())
    throw config_error("unexpected argument '" + parser.positional()[0] + "'", "flags start with --; see --help");

  ModelConfig config = model_config(a);
  config.validate();
  validate(a, config);
  const ParallelLayout requested = parse_layout(a);
  requested.resolved(mpi.world_size());  // a layout that does not fit fails before any work
  const FaultInjector faults = FaultInjector::from_environment(a.fault);

  LaunchInfo launch = detect_launch();
  ContextOptions context_options;
  context_options.device = parse_device(a.device);
  context_options.cpu_threads = a.threads;
  context_options.local_rank = launch.local_rank;
  context_options.local_size = launch.local_size;
  context_options.announce = lead;
  Context ctx(context_options);
  std::unique_ptr<Communicator> world = make_communicator(ctx);
  ProcessGrid grid(*world, requested);
  const ParallelLayout& layout = grid.layout();

  const int B = a.batch_size, T = a.seq_len;
  DataLoader train_loader(a.data, B, T, config.vocab_size, grid.dp_rank(), layout.dp);
  std::string val_path = a.val_data.empty() ? default_val_path(a.data) : a.val_data;
  std::unique_ptr<DataLoader> val_loader;
  if (!val_path.empty())
    val_loader = std::make_unique<DataLoader>(val_path, B, T, config.vocab_size, grid.dp_rank(), layout.dp);

  ModelOptions model_options = parse_model_options(a);
  model_options.grid = &grid;
  TrainerOptions trainer_options;
  trainer_options.batch_size = B;
  trainer_options.seq_len = T;
  trainer_options.seed = uint64_t(a.seed);
  trainer_options.adamw.beta1 = a.beta1;
  trainer_options.adamw.beta2 = a.beta2;
  trainer_options.adamw.weight_decay = a.weight_decay;
  trainer_options.adamw.grad_clip = a.grad_clip;
  Trainer trainer(ctx, config, trainer_options, model_options);
  Model& model = trainer.model();
  if (!a.init_from.empty()) import_hf(model, a.init_from);
  LRSchedule schedule;
  schedule.max_lr = a.lr;
  schedule.min_lr = a.min_lr;
  schedule.warmup_steps = a.warmup;
  schedule.total_steps = a.steps;

  // One watchdog per rank: a step, evaluation or checkpoint that outlives --timeout is a hang. It
  // writes a failure report, aborts the world communicator (peers blocked on this rank fail too)
  // and exits with code 3, which tessera-launch restarts.
  WatchdogOptions watchdog_options;
  watchdog_options.timeout_s = a.timeout;
  watchdog_options.report_dir = failure_report_dir(a);
  watchdog_options.rank = mpi.rank();
  watchdog_options.abort_fn = [&world] { world->abort(); };
  Watchdog watchdog(watchdog_options);

  MetricsLog log;
  Checkpointer checkpoints(trainer, watchdog, CheckpointPolicy{a.checkpoint_dir, a.checkpoint_every, a.keep}, faults,
                           log, lead);

  const int64_t tokens_per_step = int64_t(B) * T * layout.microbatches * layout.dp;
  std::printf("model: %s, %s, %s\n", config.describe().c_str(), dtype_name(model.dtype()),
              a.recompute == "full" ? "full recomputation" : "no recomputation");
  std::printf("layout: %d ranks, %s, backend %s\n", grid.world_size(), layout.describe().c_str(), world->backend());
  if (layout.pp > 1)
    std::printf("pipeline: %s\n", describe(trainer.schedule()).c_str());
  std::printf("data: %s (%lld tokens), validation: %s\n", a.data.c_str(),
              static_cast<long long>(train_loader.total_tokens()), val_loader ? val_path.c_str() : "none");
  std::printf("batch: %d x %d tokens x %d microbatches x %d replicas = %lld tokens per step\n", B, T,
              layout.microbatches, layout.dp, static_cast<long long>(tokens_per_step));
  std::printf("MFU convention: 6N + 12*L*C*T FLOPs per token (PaLM), against %s peak\n",
              ctx.peak_flops() > 0 ? "the GPUs' dense bf16" : "no known (CPU)");
  if (checkpoints.enabled())
    std::printf("checkpoints: %s, %s, keep %d\n", a.checkpoint_dir.c_str(),
                a.checkpoint_every > 0 ? ("every " + std::to_string(a.checkpoint_every) + " steps").c_str() : "at the end",
                a.keep);
  if (a.timeout > 0) std::printf("failures: watchdog timeout %g s, on a non-finite loss %s\n", a.timeout, a.on_nan.c_str());
  else std::printf("failures: watchdog off, on a non-finite loss %s\n", a.on_nan.c_str());
  if (!faults.empty())
    for (const Fault& f : faults.faults()) std::printf("fault injection: %s (this is attempt %d)\n", describe(f).c_str(), faults.attempt());
  std::fflush(stdout);

  RunState run;
  std::optional<TrainingState> resumed;
  if (a.resume == "auto") resumed = checkpoints.load_latest();
  if (lead && !a.log.empty()) log = MetricsLog(a.log, /*append=*/resumed.has_value());  // a resumed job's log goes on
  if (resumed) {
    run = adopt(*resumed, train_loader, JobClock::starting_now());
    const std::string dir = checkpoints.loaded_dir();
    std::printf("resumed from %s at step %d\n", dir.c_str(), run.step);
    log.write(MetricsRecord("resume").add("step", run.step).add("dir", dir));
  } else {
    run.clock = JobClock::starting_now();  // a fresh job starts its clock when training starts
  }
  std::fflush(stdout);

  const double flops_per_token = config.flops_per_token(T);
  const double peak = ctx.peak_flops() * grid.world_size();
  double train_seconds = 0;
  int steps_run = 0;
  int injected_up_to = run.step - 1;  // faults act once per process, also when a rollback replays their step
  int rolled_back_for = -1;           // the step whose non-finite loss caused the last rollback
  for (int step = run.step; step < a.steps;) {
    auto t0 = std::chrono::steady_clock::now();
    float lr = schedule.at(step);
    StepStats stats;
    {
      Watchdog::Scope scope = watchdog.scope("train step", step);
      bool poisoned = false;
      if (step > injected_up_to) {
        injected_up_to = step;
        faults.maybe_inject(step, mpi.rank());  // kill, hang and exit faults act here and do not return
        poisoned = nan_fault_at(faults, step);
      }
      stats = poisoned ? poisoned_step(trainer, train_loader) : trainer.step(train_loader, lr);
      ctx.synchronize();
    }
    double seconds = seconds_since(t0);
    train_seconds += seconds;
    ++steps_run;
    // A save whose write has ended on every rank is committed now, not at the next save, so a
    // failure before the next save loses only the steps since this one.
    checkpoints.poll(step);

    if (!stats.applied || !std::isfinite(stats.loss)) {
      // Loss and gradient norm are the same on every rank, so every rank takes the same branch.
      std::printf("step %5d/%d | loss %f, grad norm %f: non-finite (--on-nan %s)\n", step + 1, a.steps, stats.loss,
                  stats.grad_norm, a.on_nan.c_str());
      std::fflush(stdout);
      if (a.on_nan == "skip") {
        ++run.skipped;
        log.write(MetricsRecord("skipped_step").add("step", step).add("loss", double(stats.loss))
                      .add("skipped_steps", run.skipped));
        run.step = ++step;
        if (checkpoints.due(step, a.steps)) checkpoints.save(training_state(run, train_loader));
        continue;
      }
      if (a.on_nan == "rollback" && rolled_back_for != step) {
        if (std::optional<TrainingState> back = checkpoints.load_latest()) {
          rolled_back_for = step;
          run = adopt(*back, train_loader, run.clock);
          const std::string dir = checkpoints.loaded_dir();
          std::printf("rolled back from step %d to %s at step %d\n", step, dir.c_str(), run.step);
          std::fflush(stdout);
          log.write(MetricsRecord("rollback").add("from_step", step).add("step", run.step).add("dir", dir)
                        .add("loss", double(stats.loss)));
          step = run.step;
          continue;
        }
      }
      std::string why;
      if (a.on_nan == "rollback") why = rolled_back_for == step ? " again after rolling back" : " with no checkpoint to roll back to";
      log.write(MetricsRecord("nonfinite_loss").add("step", step).add("loss", double(stats.loss)).add("action", "stop"));
      checkpoints.finish();  // the save in flight holds a good state: commit it
      throw Error(ExitCode::nonfinite_loss,
                  "loss is " + std::to_string(stats.loss) + " at step " + std::to_string(step) + why,
                  "tessera-train", "lower --lr, check the data, or run with --on-nan skip or rollback");
    }
    run.clock.useful_s += seconds;  // a step that advanced training (repeats after a resume count once)

    double tokens_per_s = double(tokens_per_step) / seconds;
    double mfu = peak > 0 ? flops_per_token * tokens_per_s / peak : 0.0;
    double memory_gb = double(model.params().flat_numel()) * (dtype_size(model.dtype()) + 4) / 1e9 +
                       double(trainer.optimizer()->state_bytes() + model.activation_bytes()) / 1e9;
    if (steps_run == 1)
      std::printf("optimizer state: %.2f MB on rank 0%s\n", double(trainer.optimizer()->state_bytes()) / 1e6,
                  layout.zero_stage == 1 ? " (ZeRO-1: sharded over the data-parallel ranks)" : "");
    std::printf("step %5d/%d | loss %.4f | lr %.2e | norm %.4f | %.1f ms | %.0f tok/s", step + 1, a.steps,
                stats.loss, lr, stats.grad_norm, seconds * 1e3, tokens_per_s);
    if (mfu > 0) std::printf(" | MFU %.1f%%", 100.0 * mfu);
    std::printf("\n");
    std::fflush(stdout);
    MetricsRecord record("train");
    record.add("step", step).add("loss", double(stats.loss)).add("lr", double(lr)).add("grad_norm", double(stats.grad_norm));
    record.add("ms", seconds * 1e3).add("tokens_per_s", tokens_per_s).add("mfu", mfu).add("mem_gb", memory_gb);
    log.write(record);

    bool last = step + 1 == a.steps;
    if (val_loader && ((a.eval_every > 0 && (step + 1) % a.eval_every == 0) || last)) {
      Watchdog::Scope scope = watchdog.scope("evaluation", step);
      val_loader->reset();  // every evaluation sees the same batches
      float val_loss = trainer.evaluate(*val_loader, a.eval_batches);
      std::printf("eval  %5d | val loss %.4f\n", step + 1, val_loss);
      std::fflush(stdout);
      log.write(MetricsRecord("eval").add("step", step).add("loss", double(val_loss)));
    }

    run.step = ++step;
    if (checkpoints.due(step, a.steps)) checkpoints.save(training_state(run, train_loader));
  }
  checkpoints.finish();
  if (steps_run > 0)
    std::printf("trained %d steps in %.1f s (%.0f tokens/s)\n", steps_run, train_seconds,
                double(tokens_per_step) * steps_run / train_seconds);
  const double wall_s = run.clock.wall_s(), ratio = run.clock.effective_ratio();
  std::printf("effective training time: %.2f s of steps that advanced training, in %.2f s since the job started "
              "training (%.1f%%)%s\n",
              run.clock.useful_s, wall_s, 100.0 * ratio,
              run.skipped > 0 ? (", " + std::to_string(run.skipped) + " steps skipped").c_str() : "");
  log.write(MetricsRecord("summary")
                .add("steps", run.step)
                .add("useful_step_seconds", run.clock.useful_s)
                .add("wall_seconds", wall_s)
                .add("effective_ratio", ratio)
                .add("skipped_steps", run.skipped)
                .add("attempt", faults.attempt()));

  if (a.sample_tokens <= 0 && a.export_dir.empty()) return 0;
  // Sampling and export run on rank 0 with the whole model: the trainer's own when it is unsplit,
  // otherwise one assembled from every rank's shards (a collective, so every rank takes part).
  std::unique_ptr<Model> assembled;
  Model* whole = &model;
  if (!model.holds_all_parameters()) {
    auto values = [&] {
      Watchdog::Scope scope = watchdog.scope("gather parameters", a.steps);
      return trainer.gather_parameters();
    }();
    if (!lead) return 0;
    ModelOptions single;
    single.precision = model.dtype() == DType::bf16 ? Precision::bf16 : Precision::f32;
    assembled = make_model(ctx, config, single);
    load_parameters(*assembled, values);
    whole = assembled.get();
  }
  if (!lead) return 0;
  if (a.sample_tokens > 0) {
    ByteTokenizer tokenizer;
    bool byte_vocab = config.vocab_size == ByteTokenizer::kVocabSize;
    int window = std::min(T, config.max_seq_len);
    std::vector<int32_t> prompt{byte_vocab ? ByteTokenizer::kEndOfText : 0};
    std::vector<int32_t> text = generate(*whole, prompt, a.sample_tokens, window, a.top_k, a.temperature,
                                         uint64_t(a.seed) + 1);
    std::printf("--- sample (%d tokens, top-k %d) ---\n", a.sample_tokens, a.top_k);
    if (byte_vocab) {
      std::printf("%s\n", tokenizer.decode(text.data(), text.size()).c_str());
    } else {
      for (int32_t t : text) std::printf("%d ", t);
      std::printf("\n");
    }
    std::printf("---\n");
  }
  if (!a.export_dir.empty()) {
    export_hf(*whole, a.export_dir);
    std::printf("exported Hugging Face model to %s\n", a.export_dir.c_str());
    log.write(MetricsRecord("export").add("path", a.export_dir));
  }
  return 0;
}

}  // namespace
}  // namespace tessera::program

int main(int argc, char** argv) {
  return tessera::program::run_program("tessera-train", [&] { return tessera::program::train(argc, argv); });
}
