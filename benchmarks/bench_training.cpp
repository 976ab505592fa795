// tessera-bench-training: training throughput of the real Trainer per parallel layout.
//   mpirun -np N tessera-bench-training [--model tiny] [--batch-size B --seq-len T] [--layouts "tp=2 pp=2,mb=4 ..."]
// Every layout uses all N ranks (dp = N / (tp x pp)). For each it runs warm-up steps, then timed
// steps on fixed random tokens, and prints the median step time, tokens/s, MFU and the pipeline
// bubble. MFU = model FLOPs per token (6N + 12*L*C*T, PaLM) x tokens/s / (ranks x peak); the peak
// is the GPU's dense bf16 peak, or --peak-tflops per rank (e.g. a measured CPU GEMM peak).
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/flags.h"
#include "common/output_checks.h"
#include "tessera/tessera.h"

namespace tessera::program {
namespace {

// Every (tp, pp) that divides the world, with enough microbatches to keep a pipeline busy.
std::vector<ParallelLayout> default_layouts(int world, const ModelConfig& config) {
  std::vector<ParallelLayout> out;
  for (int tp = 1; tp <= world; tp *= 2)
    for (int pp = 1; tp * pp <= world; pp *= 2) {
      if (world % (tp * pp) != 0 || config.n_head % tp != 0 || config.n_layer < pp) continue;
      ParallelLayout l;
      l.tp = tp;
      l.pp = pp;
      l.microbatches = pp > 1 ? 2 * pp : 1;
      out.push_back(l);
    }
  return out;
}

// GEMM FLOPs of one rank's step: every linear layer (q/k/v, the attention output, the MLP's two or
// three matrices per block, and the lm head over the padded vocabulary) runs three GEMMs of
// 2*N*C_in*C_out (forward, input gradient, weight gradient). Only for layouts without pipeline
// stages, where every rank holds every layer.
double gemm_flops_per_rank(const ModelConfig& c, const ParallelLayout& l, size_t tokens_per_microbatch) {
  const double C = c.n_embd, F = c.ffn_dim, kv_width = double(c.n_kv_head) * c.head_size();
  const double mlp_matrices = c.mlp == MlpKind::swiglu ? 3.0 : 2.0;
  const double per_layer = C * (C + 2.0 * kv_width) + C * C + mlp_matrices * C * F;
  const double per_token = (c.n_layer * per_layer + C * c.padded_vocab_size) / l.tp;
  return 6.0 * per_token * double(tokens_per_microbatch) * l.microbatches;
}

// Per-op breakdown of the timed steps (rank 0), and the share of the peak the GEMMs reached.
void print_op_profile(const OpProfile& profile, int steps, double mean_ms, const ModelConfig& config,
                      const ParallelLayout& l, size_t tokens_per_microbatch, double peak_per_rank) {
  std::vector<OpProfile::Entry> entries = profile.entries();
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.seconds > b.seconds; });
  const double step_ms = 1e3 * profile.total_seconds() / steps;
  std::printf("#   %-32s %8s %10s %8s\n", "op", "calls", "ms/step", "share");
  double gemm_s = 0.0;
  for (const OpProfile::Entry& e : entries) {
    const double ms = 1e3 * e.seconds / steps;
    std::printf("    %-32s %8lld %10.2f %7.1f%%\n", e.op.c_str(), static_cast<long long>(e.calls / steps), ms,
                100.0 * ms / mean_ms);
    if (e.op.rfind("matmul_", 0) == 0) gemm_s += e.seconds;
  }
  std::printf("    %-32s %8s %10.2f %7.1f%%  (outside kernels: communication, host work)\n", "(other)", "",
              mean_ms - step_ms, 100.0 * (mean_ms - step_ms) / mean_ms);
  std::printf("#   shares of the mean step, %.1f ms\n", mean_ms);
  if (l.pp == 1 && gemm_s > 0) {
    const double gflops = gemm_flops_per_rank(config, l, tokens_per_microbatch) * steps / gemm_s / 1e9;
    std::printf("#   GEMMs (matmul_*): %.1f GFLOP/s per rank", gflops);
    if (peak_per_rank > 0) std::printf(" = %.1f%% of the %.1f GFLOP/s peak", 100.0 * gflops * 1e9 / peak_per_rank,
                                       peak_per_rank / 1e9);
    std::printf("\n");
  }
}

struct Result {
  ParallelLayout layout;
  double median_ms = 0, mean_ms = 0, tokens_per_s = 0, mfu = 0, bubble = 0;
  size_t optimizer_bytes = 0;
};

int bench(int argc, char** argv) {
  MpiSession mpi(&argc, &argv);
  std::string model = "tiny", layouts_text, json, device = "auto", precision = "auto";
  int batch_size = 8, seq_len = 128, warmup = 2, steps = 8, threads = 0;
  double peak_tflops = 0;
  bool profile_ops = false;
  FlagParser p("tessera-bench-training", "mpirun -np N tessera-bench-training [flags]");
  p.add("model", &model, "model preset");
  p.add("batch-size", &batch_size, "sequences per microbatch per data-parallel rank").at_least(1);
  p.add("seq-len", &seq_len, "tokens per sequence").at_least(1);
  p.add("layouts", &layouts_text, "space-separated layouts, e.g. \"tp=2 pp=2,mb=4 tp=2,sp zero\" (default: every tp x pp)");
  p.add("warmup", &warmup, "untimed steps per layout").at_least(0);
  p.add("steps", &steps, "timed steps per layout").at_least(1);
  p.add("peak-tflops", &peak_tflops, "peak TFLOP/s per rank for MFU (default: the GPU's dense bf16 peak)").above(0);
  p.add("device", &device, "backend").one_of({"auto", "cpu", "cuda"});
  p.add("precision", &precision, "auto: bf16 on GPU, f32 on CPU").one_of({"auto", "f32", "bf16"});
  p.add("threads", &threads, "CPU threads per rank (0: cores / ranks per node)").at_least(0);
  p.add("profile-ops", &profile_ops, "print each kernel's share of a step (rank 0; GPU ops are synchronized)");
  p.add("json", &json, "write one JSON line per layout to this file (rank 0)");
  if (!p.parse(argc, argv)) return 0;
  if (!p.positional().empty()) throw config_error("unexpected argument '" + p.positional()[0] + "'", "see --help");
  const bool lead = mpi.rank() == 0;
  if (lead && !json.empty()) check_output_file("--json", json);

  LaunchInfo launch = detect_launch();
  ContextOptions options;
  options.device = device == "cpu" ? DevicePreference::cpu : device == "cuda" ? DevicePreference::cuda
                                                                               : DevicePreference::automatic;
  options.local_rank = launch.local_rank;
  options.local_size = launch.local_size;
  options.cpu_threads = threads;
  options.announce = lead;
  options.profile_ops = profile_ops;
  Context ctx(options);
  std::unique_ptr<Communicator> world = make_communicator(ctx);
  const ModelConfig config = parse_flag_value("model", model, ModelConfig::preset);
  if (seq_len > config.max_seq_len)
    throw config_error("--seq-len " + std::to_string(seq_len) + " exceeds the model's context of " +
                       std::to_string(config.max_seq_len) + " tokens");

  std::vector<ParallelLayout> layouts;
  if (layouts_text.empty()) {
    layouts = default_layouts(world->size(), config);
  } else {
    std::stringstream specs(layouts_text);
    std::string spec;
    while (specs >> spec) {
      // Every layout checked before the first one runs.
      layouts.push_back(parse_flag_value("layouts", spec, [&](const std::string& text) {
        ParallelLayout l = parse_layout_spec(text);
        l.resolved(world->size());
        return l;
      }));
    }
    if (layouts.empty()) throw config_error("--layouts '" + layouts_text + "' names no layout", "see --help");
  }
  const double peak = (peak_tflops > 0 ? peak_tflops * 1e12 : ctx.peak_flops()) * world->size();
  MetricsLog log = (lead && !json.empty()) ? MetricsLog(json) : MetricsLog();
  if (lead) {
    std::printf("# tessera training throughput: %s, %d ranks (%s), backend %s, B=%d T=%d\n", config.describe().c_str(),
                world->size(), ctx.device_description().c_str(), world->backend(), batch_size, seq_len);
    std::printf("# MFU: (6N + 12*L*C*T) x tokens/s / (%d x %s)\n", world->size(),
                peak > 0 ? (std::to_string(peak / world->size() / 1e12) + " TFLOP/s").c_str() : "unknown peak");
    std::printf("# %-66s %10s %12s %7s %8s %12s\n", "layout", "ms/step", "tokens/s", "MFU", "bubble", "optim MB/rank");
  }

  std::mt19937_64 rng(1234);
  std::uniform_int_distribution<int32_t> token(0, config.vocab_size - 1);
  for (const ParallelLayout& requested : layouts) {
    ProcessGrid grid(*world, requested);
    const ParallelLayout& l = grid.layout();
    ModelOptions model_options;
    model_options.grid = &grid;
    model_options.precision = precision == "f32" ? Precision::f32 : precision == "bf16" ? Precision::bf16
                                                                                        : Precision::automatic;
    TrainerOptions trainer_options;
    trainer_options.batch_size = batch_size;
    trainer_options.seq_len = seq_len;
    trainer_options.seed = 1;
    Trainer trainer(ctx, config, trainer_options, model_options);

    const size_t n = size_t(batch_size) * seq_len;
    std::vector<std::vector<int32_t>> tokens(size_t(l.microbatches)), targets(size_t(l.microbatches));
    std::vector<const int32_t*> token_ptrs, target_ptrs;
    for (int mb = 0; mb < l.microbatches; ++mb) {
      for (size_t i = 0; i < n; ++i) {
        tokens[size_t(mb)].push_back(token(rng));
        targets[size_t(mb)].push_back(token(rng));
      }
      token_ptrs.push_back(tokens[size_t(mb)].data());
      target_ptrs.push_back(targets[size_t(mb)].data());
    }
    std::vector<double> times;
    for (int s = 0; s < warmup + steps; ++s) {
      if (s == warmup && ctx.op_profile()) ctx.op_profile()->clear();
      world->barrier();
      auto t0 = std::chrono::steady_clock::now();
      trainer.step(token_ptrs, target_ptrs, 1e-4f);
      ctx.synchronize();
      double local = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), slowest = 0;
      MPI_Allreduce(&local, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      if (s >= warmup) times.push_back(slowest);
    }
    std::sort(times.begin(), times.end());
    Result r;
    r.layout = l;
    r.median_ms = times[times.size() / 2] * 1e3;
    for (double t : times) r.mean_ms += t * 1e3 / double(times.size());
    const double tokens_per_step = double(n) * l.microbatches * l.dp;
    r.tokens_per_s = tokens_per_step / (r.median_ms / 1e3);
    r.mfu = peak > 0 ? config.flops_per_token(seq_len) * r.tokens_per_s / peak : 0.0;
    r.bubble = trainer.bubble_fraction();
    r.optimizer_bytes = trainer.optimizer()->state_bytes();
    if (lead) {
      std::printf("  %-66s %10.1f %12.0f %6.1f%% %7.1f%% %12.2f\n", l.describe().c_str(), r.median_ms, r.tokens_per_s,
                  100.0 * r.mfu, 100.0 * r.bubble, double(r.optimizer_bytes) / 1e6);
      std::fflush(stdout);
      log.write(MetricsRecord("throughput")
                    .add("layout", l.describe())
                    .add("ranks", world->size())
                    .add("ms", r.median_ms)
                    .add("tokens_per_s", r.tokens_per_s)
                    .add("mfu", r.mfu)
                    .add("bubble", r.bubble)
                    .add("optimizer_bytes", int64_t(r.optimizer_bytes)));
      if (ctx.op_profile()) print_op_profile(*ctx.op_profile(), steps, r.mean_ms, config, l, n, peak / world->size());
    }
  }
  return 0;
}

}  // namespace
}  // namespace tessera::program

int main(int argc, char** argv) {
  return tessera::program::run_program("tessera-bench-training", [&] { return tessera::program::bench(argc, argv); });
}
