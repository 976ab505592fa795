// tessera-plan: choose the parallel layout for N GPUs and predict its step time, memory and MFU.
//   tessera-plan --model gpt2-xl --gpus 1024 --cluster h100 [--global-batch N] [--seq-len T] [--json] [--top K] [--failures]
//                [--software NAME] [--context-parallel ring,all-gather,all-to-all] [--card-calibration card.json]
//   tessera-plan --strong-scaling [--model mcore-177b] [--gpu-counts 96,192,...] [--global-batch 1152]
// Prints a ranked table of the layouts that fit and the chosen one as tessera-train flags (or JSON).
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "common/flags.h"
#include "tessera/calibration.h"
#include "tessera/card_calibration.h"
#include "tessera/error.h"
#include "tessera/model_config.h"
#include "tessera/plan.h"

namespace tessera::program {
namespace {

struct Args {
  std::string model = "gpt2-xl";
  int layers = 0, hidden = 0, heads = 0, kv_heads = 0, ffn = 0, vocab = 0, seq_len = 0;
  bool gated_mlp = false;
  int gpus = 8;
  std::string cluster = "h100", cluster_json, card_calibration;
  int gpus_per_node = 0;
  double peak_tflops = 0, memory_gb = 0, hbm_gbps = 0, intra_gbps = 0, intra_latency_us = -1, inter_gbps = 0,
         inter_latency_us = -1;
  int global_batch = 0;
  bool json = false, failures = false;
  bool strong_scaling = false;
  std::string gpu_counts = "96,192,384,768,1536,2304,3072,4608";
  std::string software = "tessera", context_parallel;
  int top = 10;
  bool flash_attention = true, overlap_grad_reduce = true, overlap_param_gather = true, tp_comm_overlap = false;
  double gpu_hours_per_failure = 50000, checkpoint_blocking_s = 10, checkpoint_total_s = 60, restart_s = 600;
  // The calibrated mode: the real Trainer on this machine.
  std::string calibration, predict_layouts, measured;
  int ranks = 1, batch_size = 0;
  double tolerance = 0.2, straggler_pct = 0, jitter = 0;
  int slow_rank = 0;
};

std::string read_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))  // a FIFO would block the read
    throw config_error("the cluster file '" + path + "' is " + (std::filesystem::exists(path, ec) ? "not a regular file" : "missing"),
                       "check --cluster-json");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw config_error("cannot read the cluster file '" + path + "'", "check --cluster-json");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> split_list(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

// tessera-bench-training's layout line ("tp=2 pp=1 dp=1 sp=off zero=0 schedule=1f1b v=1 microbatches=4")
// as a --predict-layouts spec.
std::string spec_from_description(const std::string& d) {
  std::string spec;
  for (const std::string& kv : split_list(d, ' ')) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos) continue;
    const std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
    std::string item;
    if (k == "tp" || k == "pp" || k == "dp" || k == "v") item = k + "=" + v;
    else if (k == "microbatches") item = "mb=" + v;
    else if (k == "schedule") item = "schedule=" + v;
    else if (k == "sp" && v == "on") item = "sp";
    else if (k == "zero" && v != "0") item = "zero";
    if (!item.empty()) spec += (spec.empty() ? "" : ",") + item;
  }
  return spec;
}

int calibrated(const Args& a) {
  std::vector<plan::Calibration> cals;
  for (const std::string& path : split_list(a.calibration, ',')) cals.push_back(plan::Calibration::load(path));
  auto calibration_for = [&](int ranks) -> const plan::Calibration& {
    for (const plan::Calibration& c : cals)
      if (c.ranks == ranks) return c;
    throw config_error("no calibration file for " + std::to_string(ranks) + " ranks",
                       "run mpirun -np " + std::to_string(ranks) + " tessera-calibrate and pass it to --calibration");
  };
  const std::string model = a.model == "gpt2-xl" && !cals.front().model.empty() ? cals.front().model : a.model;
  const ModelConfig config = ModelConfig::preset(model);
  plan::Disturbance d;
  if (a.straggler_pct > 0) d.slow_rank = a.slow_rank, d.slowdown = a.straggler_pct / 100.0;
  d.jitter = a.jitter;

  struct Row { std::string spec; int ranks; double measured_ms; };
  std::vector<Row> rows;
  if (!a.measured.empty()) {
    for (const std::string& path : split_list(a.measured, ','))
      for (const plan::MeasuredStep& m : plan::read_throughput_log(path))
        rows.push_back({spec_from_description(m.layout), m.ranks, m.ms});
  } else {
    for (const std::string& spec : split_list(a.predict_layouts, ' ')) rows.push_back({spec, a.ranks, 0});
  }
  if (rows.empty()) throw config_error("nothing to predict", "give --predict-layouts or --measured");
  for (const Row& r : rows)
    if (d.slow_rank >= r.ranks)
      throw config_error("--slow-rank " + std::to_string(d.slow_rank) + " is not one of the " + std::to_string(r.ranks) +
                         " ranks of layout '" + r.spec + "'", "give a rank from 0 to " + std::to_string(r.ranks - 1));
  if (!a.json) std::printf("# calibrated prediction of the real Trainer: %s\n", config.describe().c_str());
  if (!a.json) std::printf("# %-5s %-34s %10s %10s %8s %8s %8s %8s\n", "ranks", "layout", "predicted", "measured", "error", "bubble",
              "tp comm", "sync+opt");
  bool all_ok = true;
  for (const Row& r : rows) {
    const plan::Calibration& cal = calibration_for(r.ranks);
    const int B = a.batch_size > 0 ? a.batch_size : cal.batch_size, T = a.seq_len > 0 ? a.seq_len : cal.seq_len;
    const plan::TrainerLayout l = plan::parse_trainer_layout(r.spec, r.ranks, B, T);
    const plan::TrainerPrediction base = plan::predict_trainer_step(config, cal, l);
    char err[32] = "", meas[32] = "";
    if (r.measured_ms > 0) {
      const double e = base.step_time * 1e3 / r.measured_ms - 1;
      std::snprintf(err, sizeof err, "%+.1f%%", 100 * e);
      std::snprintf(meas, sizeof meas, "%.1f ms", r.measured_ms);
      if (std::abs(e) > a.tolerance) all_ok = false;
    }
    if (a.json) {  // one JSON line per layout, as tessera-bench-training --json writes
      std::printf("{\"ranks\": %d, \"spec\": \"%s\", \"layout\": \"%s\", \"batch_size\": %d, \"seq_len\": %d, "
                  "\"predicted_ms\": %.4f, \"tokens_per_s\": %.2f, \"bubble\": %.4f, \"measured_ms\": %.4f}\n",
                  r.ranks, r.spec.c_str(), l.describe().c_str(), B, T, base.step_time * 1e3, base.tokens_per_s,
                  base.bubble_fraction, r.measured_ms);
      continue;
    }
    std::printf("  %-5d %-34s %7.1f ms %10s %8s %7.1f%% %5.1f ms %5.1f ms\n", r.ranks, l.describe().c_str(),
                base.step_time * 1e3, meas, err, 100 * base.bubble_fraction, base.tp_comm_time * 1e3,
                (base.grad_sync_time + base.optimizer_time) * 1e3);
    if (d.slow_rank >= 0 || d.jitter > 0) {
      const plan::TrainerPrediction x = plan::predict_trainer_step(config, cal, l, d);
      std::printf("        with %s: %.1f ms (+%.1f%%)\n",
                  d.jitter > 0 ? ("jitter " + std::to_string(d.jitter)).c_str() : "a straggler",
                  x.step_time * 1e3, 100 * (x.step_time / base.step_time - 1));
    }
  }
  if (!a.measured.empty()) {
    if (!a.json) std::printf("%s: every prediction within %.0f%% of the measured median step time\n", all_ok ? "PASS" : "FAIL",
                100 * a.tolerance);
    return all_ok ? 0 : 1;
  }
  return 0;
}

// The short board at cluster scale: the chosen layout with one slow GPU or per-step jitter, and with
// jitter the best layout at 1,024, 4,096 and 16,384 GPUs (same model and batch), through the simulation.
void print_stragglers(const Args& a, const plan::ModelShape& m, plan::ClusterSpec c, int global_batch,
                      const plan::SoftwareSpec& sw, const plan::Prediction& chosen) {
  std::printf("\nstragglers: every step waits for its slowest GPU (a stage at the pace of its slowest of tp x dp GPUs; "
              "the schedule simulated, %d sampled steps)\n", plan::StragglerModel{}.samples);
  std::printf("%8s  %-32s %10s %10s %8s  %s\n", "GPUs", "disturbance", "step s", "disturbed", "loss", "layout");
  auto row = [&](int gpus, const plan::Prediction& p, const plan::StragglerModel& s, const std::string& what) {
    const plan::StragglerEstimate e = plan::predict_stragglers(p, s);
    std::printf("%8d  %-32s %10.3f %10.3f %+7.1f%%  %s\n", gpus, what.c_str(), e.base_step_time, e.step_time,
                100 * e.loss(), p.layout.describe().c_str());
  };
  char what[96];
  if (a.straggler_pct > 0) {
    plan::StragglerModel s;
    s.slowdown = a.straggler_pct / 100;
    std::snprintf(what, sizeof what, "one GPU %.1f%% slower", a.straggler_pct);
    row(c.gpus, chosen, s, what);
  }
  if (a.jitter > 0) {
    plan::StragglerModel s;
    s.jitter = a.jitter;
    std::snprintf(what, sizeof what, "jitter %.1f%% per GPU, per step", 100 * a.jitter);
    row(c.gpus, chosen, s, what);
    const int chosen_gpus = c.gpus;
    for (int n : {1024, 4096, 16384}) {
      if (n == chosen_gpus) continue;
      c.gpus = n;
      const plan::PlanResult r = plan::plan(m, c, std::max(global_batch, n / 8), sw);
      if (!r.ranked.empty()) row(n, r.ranked.front(), s, what);
    }
  }
}

// Strong scaling: the same global batch on more GPUs; per count, the planner's best layout.
int strong_scaling(const Args& a, const plan::ModelShape& m, plan::ClusterSpec c, int global_batch,
                   const plan::SoftwareSpec& sw) {
  std::vector<int> counts;
  for (const std::string& s : split_list(a.gpu_counts, ',')) {
    char* end = nullptr;
    const long long n = std::strtoll(s.c_str(), &end, 10);
    if (*end != '\0' || n <= 0 || n > plan::ClusterSpec::kMaxGpus)
      throw config_error("bad GPU count '" + s + "' in --gpu-counts (a positive integer, at most " +
                             std::to_string(plan::ClusterSpec::kMaxGpus) + ")",
                         "give e.g. --gpu-counts 96,192");
    counts.push_back(int(n));
  }
  if (counts.empty()) throw config_error("--gpu-counts is empty", "give e.g. --gpu-counts 96,192,384");
  std::printf("strong scaling: %s\n", m.describe().c_str());
  std::printf("cluster %s, software %s, global batch %d sequences (%.2fM tokens), planner's best layout per GPU count\n",
              c.name.c_str(), sw.name.c_str(), global_batch, double(global_batch) * m.seq_len / 1e6);
  std::printf("%6s  %-62s %6s %12s %8s %7s %7s\n", "GPUs", "layout", "MFU%", "tokens/s", "step s", "bubble%",
              "comm%");
  bool any = false;
  for (int n : counts) {
    c.gpus = n;
    const plan::PlanResult r = plan::plan(m, c, global_batch, sw);
    if (r.ranked.empty()) {
      std::printf("%6d  %-62s\n", n, "(no layout fits)");
      continue;
    }
    any = true;
    const plan::Prediction& b = r.ranked.front();
    std::printf("%6d  %-62s %6.1f %12.4g %8.2f %7.1f %7.1f\n", n, b.layout.describe().c_str(), 100 * b.mfu,
                b.tokens_per_s, b.step_time, 100 * b.bubble_fraction, 100 * b.exposed_comm_fraction);
  }
  return any ? 0 : int(ExitCode::bad_config);
}

// The values each flag accepts (0, and -1 for the latencies, stand for "the preset's" only as defaults).
void set_limits(FlagParser& p) {
  for (const char* size : {"layers", "hidden", "heads", "kv-heads", "ffn", "vocab", "seq-len", "gpus-per-node",
                           "global-batch", "batch-size"})
    p.limits(size).at_least(0);
  for (const char* rate : {"peak-tflops", "memory-gb", "hbm-gbps", "intra-gbps", "inter-gbps", "intra-latency-us",
                           "inter-latency-us", "checkpoint-blocking-s", "checkpoint-total-s", "restart-s", "straggler",
                           "jitter", "slow-rank"})
    p.limits(rate).at_least(0);
  for (const char* count : {"gpus", "top", "ranks"}) p.limits(count).at_least(1);
  p.limits("gpu-hours-per-failure").above(0);
  p.limits("tolerance").above(0);
}

// A flag of the calibrated mode given to a cluster plan, or the other way round, would be ignored:
// refused instead, as is a flag whose companion is missing.
void refuse_other_mode_flags(const FlagParser& p, const Args& a) {
  const std::set<std::string> calibrated_only = {"predict-layouts", "ranks", "batch-size", "measured", "tolerance",
                                                 "slow-rank"};
  const std::set<std::string> both = {"model", "seq-len", "json", "straggler", "jitter", "calibration"};
  const bool calibrated = !a.calibration.empty();
  for (const std::string& f : p.given_flags()) {
    if (both.count(f)) continue;
    if (!calibrated && calibrated_only.count(f))
      throw config_error("--" + f + " is read only with --calibration", "give --calibration FILE or leave --" + f + " out");
    if (calibrated && !calibrated_only.count(f))
      throw config_error("--" + f + " is not read with --calibration (a prediction of this machine's Trainer)",
                         "leave --" + f + " out, or --calibration for a cluster plan");
  }
  if (p.given("slow-rank") && a.straggler_pct <= 0)
    throw config_error("--slow-rank needs --straggler PERCENT", "give the straggler's slowdown, e.g. --straggler 10");
  if (p.given("tolerance") && a.measured.empty())
    throw config_error("--tolerance is read only with --measured", "give --measured FILE or leave --tolerance out");
  for (const char* f : {"predict-layouts", "ranks"})
    if (p.given(f) && !a.measured.empty())
      throw config_error(std::string("--") + f + " is not read with --measured (the measured files name the layouts and ranks)",
                         std::string("leave --") + f + " out, or --measured to predict layouts of your own");
}

int body(int argc, char** argv) {
  Args a;
  FlagParser p("tessera-plan", "tessera-plan --model gpt2-xl --gpus 1024 --cluster h100 [--global-batch N] [--json]");
  p.section("model");
  p.add("model", &a.model, "preset (gpt2, gpt2-medium, gpt2-large, gpt2-xl, gpt3-175b, mcore-177b, llama2-7b, llama2-13b, llama2-70b, "
                           "llama3-8b, llama3-70b, llama3-405b; or tessera-train's: tiny, llama-tiny, llama3.2-1b, llama3.1-8b, "
                           "llama3.1-70b, llama3.1-405b, ...) or custom (with the sizes below)");
  p.add("layers", &a.layers, "custom/override: transformer layers");
  p.add("hidden", &a.hidden, "custom/override: hidden size");
  p.add("heads", &a.heads, "custom/override: attention heads");
  p.add("kv-heads", &a.kv_heads, "custom/override: key-value heads (0: = heads)");
  p.add("ffn", &a.ffn, "custom/override: FFN size (0: 4 x hidden)");
  p.add("vocab", &a.vocab, "custom/override: vocabulary");
  p.add("seq-len", &a.seq_len, "sequence length (0: the model's)");
  p.add("gated-mlp", &a.gated_mlp, "custom model: LLaMA shape (SwiGLU, untied head, no dropout)");
  p.section("cluster");
  p.add("gpus", &a.gpus, "GPUs");
  p.add("cluster", &a.cluster, "preset: a100 or h100 (8 per node, NVLink, InfiniBand)");
  p.add("cluster-json", &a.cluster_json, "JSON file overriding cluster fields (see ClusterSpec::apply_json)");
  p.add("card-calibration", &a.card_calibration,
        "a card's measured rates (tessera-calibrate --card on a node of that card) instead of the preset's GEMM, "
        "HBM, attention and link constants; the flags below still override them");
  p.add("gpus-per-node", &a.gpus_per_node, "override (0: preset)");
  p.add("peak-tflops", &a.peak_tflops, "override: dense bf16 TFLOP/s per GPU (0: preset)");
  p.add("memory-gb", &a.memory_gb, "override: memory per GPU in GB (0: preset)");
  p.add("hbm-gbps", &a.hbm_gbps, "override: HBM GB/s (0: preset)");
  p.add("intra-gbps", &a.intra_gbps, "override: intra-node link GB/s per GPU (0: preset)");
  p.add("intra-latency-us", &a.intra_latency_us, "override: intra-node latency in us (-1, the default: the preset's)");
  p.add("inter-gbps", &a.inter_gbps, "override: inter-node GB/s per GPU (0: preset)");
  p.add("inter-latency-us", &a.inter_latency_us, "override: inter-node latency in us (-1, the default: the preset's)");
  p.section("training");
  p.add("global-batch", &a.global_batch, "sequences per optimizer step (0: ~16M tokens, at least gpus/8)");
  p.add("software", &a.software,
        "the training stack's overlaps and fusions: tessera (what tessera-train runs), megatron-core, "
        "nemo-2024, megatron-lm-2021, megatron-lm-2022 or llama3 (see SoftwareSpec::preset); the flags below override it");
  p.add("context-parallel", &a.context_parallel,
        "context-parallel variants to plan: ring, all-gather, all-to-all (comma-separated) or none (default: the "
        "software's; tessera-train has none yet, so no tessera-train command is printed for such a layout)");
  p.add("flash-attention", &a.flash_attention, "fused attention (no s^2 activations)");
  p.add("overlap-grad-reduce", &a.overlap_grad_reduce, "overlap DP gradient reduction with the last backward");
  p.add("overlap-param-gather", &a.overlap_param_gather, "overlap ZeRO-1's parameter all-gather with the next forward");
  p.add("tp-comm-overlap", &a.tp_comm_overlap, "overlap TP collectives with GEMMs");
  p.add("strong-scaling", &a.strong_scaling,
        "best layout, MFU and tokens/s per --gpu-counts at a fixed --global-batch (default: Megatron-Core's "
        "benchmark, mcore-177b at 1152 sequences with --software megatron-core)");
  p.add("gpu-counts", &a.gpu_counts, "with --strong-scaling: comma-separated GPU counts");
  p.section("output");
  p.add("json", &a.json, "print JSON instead of the table (with --calibration: one JSON line per layout)");
  p.add("top", &a.top, "rows to show");
  p.add("failures", &a.failures, "print checkpoint interval and goodput at 1,024, 4,096, 16,384 GPUs and --gpus");
  p.add("gpu-hours-per-failure", &a.gpu_hours_per_failure, "one interruption per this many GPU-hours (Llama 3: ~50,000)");
  p.add("checkpoint-blocking-s", &a.checkpoint_blocking_s, "seconds training stalls per checkpoint");
  p.add("checkpoint-total-s", &a.checkpoint_total_s, "seconds until a checkpoint is durable");
  p.add("restart-s", &a.restart_s, "seconds to detect a failure, restart and reload");
  p.section("calibrated (this machine, the real Trainer: tessera-calibrate writes the file)");
  p.add("calibration", &a.calibration, "calibration file(s), comma-separated (one per rank count)");
  p.add("predict-layouts", &a.predict_layouts, "space-separated layouts (tessera-bench-training syntax: tp=2,pp=2,mb=4)");
  p.add("ranks", &a.ranks, "ranks of --predict-layouts");
  p.add("batch-size", &a.batch_size, "sequences per microbatch (0: the calibration's)");
  p.add("measured", &a.measured, "tessera-bench-training --json file(s), comma-separated: compare predictions with them");
  p.add("tolerance", &a.tolerance, "with --measured: exit 1 when a prediction is off by more than this fraction");
  p.add("straggler", &a.straggler_pct,
        "one rank (--slow-rank) this many percent slower: the step-time loss (cluster plans: one GPU of the chosen layout)");
  p.add("slow-rank", &a.slow_rank, "the straggler's world rank");
  p.add("jitter", &a.jitter,
        "per-step, per-rank relative spread of computation time: the expected step-time loss (cluster plans: at "
        "--gpus and 1,024, 4,096, 16,384 GPUs)");
  set_limits(p);
  if (!p.parse(argc, argv)) return 0;
  refuse_other_mode_flags(p, a);
  if (!a.calibration.empty()) return calibrated(a);

  if (a.strong_scaling && !p.given("model")) a.model = "mcore-177b";
  if (a.strong_scaling && !p.given("software")) a.software = "megatron-core";
  plan::ModelShape m;
  const bool custom = a.model == "custom";
  if (custom) {
    m = a.gated_mlp ? plan::ModelShape::llama(a.layers, a.hidden, a.heads, a.kv_heads ? a.kv_heads : a.heads,
                                             a.ffn ? a.ffn : 4 * a.hidden, a.vocab, a.seq_len)
                    : plan::ModelShape::gpt(a.layers, a.hidden, a.heads, a.vocab, a.seq_len);
    if (!a.gated_mlp && a.ffn) m.ffn = a.ffn;
    m.name = "custom";
  } else {
    m = plan::ModelShape::preset(a.model);
    if (a.layers) m.layers = a.layers;
    if (a.hidden) m.hidden = a.hidden;
    if (a.heads) m.heads = a.heads;
    if (a.kv_heads) m.kv_heads = a.kv_heads;
    if (a.ffn) m.ffn = a.ffn;
    if (a.vocab) m.vocab = a.vocab;
    if (a.seq_len) m.seq_len = a.seq_len;
  }
  m.validate();

  plan::ClusterSpec c = plan::ClusterSpec::preset(a.cluster, a.gpus);
  if (!a.cluster_json.empty()) c.apply_json(read_file(a.cluster_json), a.cluster_json);
  if (!a.card_calibration.empty()) {
    const plan::CardCalibration card = plan::CardCalibration::load(a.card_calibration);
    const std::vector<std::string> changes = card.apply_to(c);
    std::FILE* notes = a.json ? stderr : stdout;
    std::fprintf(notes, "card calibration %s (%s, %s):\n", a.card_calibration.c_str(), card.card.c_str(), card.device.c_str());
    for (const std::string& change : changes) std::fprintf(notes, "  %s\n", change.c_str());
  }
  if (p.given("gpus")) c.gpus = a.gpus;
  if (a.gpus_per_node) c.gpus_per_node = a.gpus_per_node;
  if (a.peak_tflops > 0) c.peak_flops = a.peak_tflops * 1e12;
  if (a.memory_gb > 0) c.memory_bytes = a.memory_gb * 1e9;
  if (a.hbm_gbps > 0) c.hbm_bandwidth = a.hbm_gbps * 1e9;
  if (a.intra_gbps > 0) c.intra_bandwidth = a.intra_gbps * 1e9;
  if (a.intra_latency_us >= 0) c.intra_latency = a.intra_latency_us * 1e-6;
  if (a.inter_gbps > 0) c.inter_bandwidth = a.inter_gbps * 1e9;
  if (a.inter_latency_us >= 0) c.inter_latency = a.inter_latency_us * 1e-6;
  c.validate();

  int global_batch = a.global_batch;
  if (global_batch <= 0 && a.strong_scaling) global_batch = 1152;  // Megatron-Core's strong-scaling batch
  if (global_batch <= 0) {
    const double want = std::max((16.0 * 1024 * 1024) / m.seq_len, double(c.gpus) / 8);
    global_batch = 1;
    while (global_batch < want) global_batch *= 2;
  }
  plan::SoftwareSpec sw = plan::SoftwareSpec::preset(a.software);
  if (p.given("flash-attention")) sw.flash_attention = a.flash_attention;
  if (p.given("overlap-grad-reduce")) sw.overlap_grad_reduce = a.overlap_grad_reduce;
  if (p.given("overlap-param-gather")) sw.overlap_param_gather = a.overlap_param_gather;
  if (p.given("tp-comm-overlap")) sw.tp_comm_overlap = a.tp_comm_overlap;
  if (p.given("context-parallel")) sw.context_parallel = plan::parse_context_parallel(a.context_parallel);

  if (a.strong_scaling) return strong_scaling(a, m, c, global_batch, sw);
  const plan::PlanResult r = plan::plan(m, c, global_batch, sw);
  if (a.json) std::printf("%s\n", plan::to_json(m, c, global_batch, r, a.top).c_str());
  else std::printf("%s", plan::format_table(m, c, global_batch, r, a.top).c_str());

  if (a.failures) {
    plan::FailureModel f;
    f.gpu_hours_per_failure = a.gpu_hours_per_failure, f.checkpoint_blocking_s = a.checkpoint_blocking_s;
    f.checkpoint_total_s = a.checkpoint_total_s, f.restart_s = a.restart_s;
    std::printf("\nfailures: one per %.0f GPU-hours; checkpoint %.0f s blocking, %.0f s total; restart %.0f s\n",
                f.gpu_hours_per_failure, f.checkpoint_blocking_s, f.checkpoint_total_s, f.restart_s);
    std::printf("%8s %12s %16s %16s\n", "GPUs", "MTBF (h)", "interval (min)", "effective time");
    std::vector<int> sizes = {1024, 4096, 16384};
    if (c.gpus != 1024 && c.gpus != 4096 && c.gpus != 16384) sizes.push_back(c.gpus);
    for (int n : sizes) {
      const plan::FailureEstimate e = plan::estimate_failures(f, n);
      std::printf("%8d %12.2f %16.1f %15.1f%%\n", n, e.mtbf_s / 3600, e.interval_s / 60, 100 * e.effective_ratio);
    }
  }
  if (!r.ranked.empty() && (a.straggler_pct > 0 || a.jitter > 0)) print_stragglers(a, m, c, global_batch, sw, r.ranked.front());
  if (r.ranked.empty()) return int(ExitCode::bad_config);
  return 0;
}

}  // namespace
}  // namespace tessera::program

int main(int argc, char** argv) {
  return tessera::program::run_program("tessera-plan", [&] { return tessera::program::body(argc, argv); });
}
