// The calibrated prediction of one Trainer::step (calibration.h): the same kernels and blocking
// collectives as src/model/gpt2.cpp and src/train/trainer.cpp, timed from the calibration file.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>

#include "plan/stragglers.h"
#include "tessera/calibration.h"
#include "tessera/error.h"
#include "tessera/parallel.h"
#include "tessera/schedule.h"

namespace tessera::plan {

std::string TrainerLayout::describe() const {
  char buf[160];
  std::snprintf(buf, sizeof buf, "tp=%d pp=%d dp=%d%s%s mb=%d %s", tp, pp, dp, sp ? " sp" : "", zero ? " zero1" : "",
                microbatches, schedule_kind_name(schedule));
  std::string s = buf;
  if (schedule == ScheduleKind::interleaved_1f1b) s += " v=" + std::to_string(virtual_stages);
  return s;
}

TrainerLayout parse_trainer_layout(const std::string& spec, int world, int batch_size, int seq_len) {
  const ParallelLayout parsed = parse_layout_spec(spec);
  TrainerLayout l;
  l.tp = parsed.tp, l.pp = parsed.pp, l.dp = parsed.dp;
  l.sp = parsed.sequence_parallel, l.zero = parsed.zero_stage;
  l.microbatches = parsed.microbatches, l.schedule = parsed.schedule, l.virtual_stages = parsed.virtual_stages;
  l.batch_size = batch_size, l.seq_len = seq_len;
  if (l.dp == 0) l.dp = std::max(1, world / std::max(1, l.tp * l.pp));
  if (l.tp < 1 || l.pp < 1 || l.tp * l.pp * l.dp != world)
    throw config_error("layout '" + spec + "' does not use " + std::to_string(world) + " ranks", "fix --ranks or the layout");
  return l;
}

namespace {

struct ChunkCost {
  double forward = 0, backward = 0;  // computation and blocking TP collectives of one microbatch
  double tp_comm = 0;                // the collectives' part (forward + backward)
};

// What one microbatch costs on one model chunk: its layers, plus the embedding (first) or head (last).
struct Costs {
  ChunkCost layer, embedding, head;
  double p2p = 0;
};

Costs trainer_costs(const ModelConfig& cfg, const Calibration& cal, const TrainerLayout& l) {
  const int tp = l.tp, B = l.batch_size, T = l.seq_len;
  const int64_t C = cfg.n_embd, N = int64_t(B) * T, Cl = C / tp, NHl = cfg.n_head / tp, hd = C / cfg.n_head;
  const int64_t Vl = cfg.padded_vocab_size / tp;
  const bool sp = l.sp && tp > 1;
  const int64_t Nr = sp ? N / tp : N;
  const double act_bytes = 4.0 * N * C;  // f32 activations on the CPU backend
  auto op = [&](const char* name, std::vector<int64_t> dims, double work) { return cal.op_time(name, dims, work); };
  auto mm_f = [&](int64_t K, int64_t OC, int gelu) { return op("matmul_forward", {N, K, OC, gelu}, 2.0 * N * K * OC); };
  auto mm_b = [&](int64_t K, int64_t OC, int bias) { return op("matmul_backward", {N, K, OC, bias}, 4.0 * N * K * OC); };
  const double ln_f = op("layernorm_forward", {Nr, C}, 8.0 * Nr * C), ln_b = op("layernorm_backward", {Nr, C}, 16.0 * Nr * C);
  const double res = op("residual_forward", {Nr, C}, 12.0 * Nr * C);
  // reduce_partial (all-reduce, or reduce-scatter under SP) and all_rows / the norm's gather (SP only).
  // Each blocking collective also pays the measured synchronisation cost of its group.
  const double sync = cal.sync_time(tp);
  const double reduce = tp > 1 ? cal.collective_time(sp ? "reduce_scatter" : "all_reduce", tp, act_bytes) + sync : 0.0;
  const double gather = sp ? cal.collective_time("all_gather", tp, act_bytes) + sync : 0.0;

  Costs c;
  ChunkCost& L = c.layer;
  L.forward = 2 * (ln_f + gather) + mm_f(C, 3 * Cl, 0) + op("attention_forward", {B, T, NHl, hd}, 2.0 * B * NHl * T * T * hd) +
              mm_f(Cl, C, 0) + mm_f(C, 4 * Cl, 1) + mm_f(4 * Cl, C, 0) + 2 * (reduce + res);
  L.backward = 2 * gather + mm_b(4 * Cl, C, 1) + op("gelu_backward", {N, 4 * Cl}, 48.0 * N * Cl) + mm_b(C, 4 * Cl, 1) +
               mm_b(Cl, C, 1) + op("attention_backward", {B, T, NHl, hd}, 5.0 * B * NHl * T * T * hd) + mm_b(C, 3 * Cl, 1) +
               2 * (reduce + ln_b);
  L.tp_comm = 4 * (reduce + gather);

  ChunkCost& E = c.embedding;
  E.forward = op("embedding_forward", {B, T, C, Vl}, 8.0 * N * C) + reduce;
  E.backward = gather + op("embedding_backward", {B, T, C, Vl}, 12.0 * N * C);
  E.tp_comm = reduce + gather;

  ChunkCost& H = c.head;
  const double small = tp > 1 ? 2 * (cal.collective_time("all_reduce", tp, 8.0 * N) + sync) : 0.0;  // vocab-parallel max, sums
  H.forward = ln_f + gather + op("matmul_forward", {N, C, Vl, 0}, 2.0 * N * C * Vl) +
              op("crossentropy_forward", {N, Vl}, 4.0 * N * Vl) + small;
  H.backward = op("crossentropy_backward", {N, Vl}, 8.0 * N * Vl) + op("matmul_backward", {N, C, Vl, 0}, 4.0 * N * C * Vl) +
               reduce + ln_b;
  H.tp_comm = gather + small + reduce;
  c.p2p = l.pp > 1 ? cal.collective_time("sendrecv", 2, 4.0 * Nr * C) + cal.sync_time(2) : 0.0;
  return c;
}

// Parameters held by pipeline rank r (its chunks' layers, wte on the first and last stage, wpe on the first).
double local_parameters(const ModelConfig& cfg, const TrainerLayout& l, int rank) {
  const double C = cfg.n_embd, t = l.tp;
  const double layer = 12 * C * C / t + 9 * C / t + 2 * C + 4 * C;  // sharded matrices and biases, replicated biases, norms
  const int chunks = l.pp * l.virtual_stages;
  double layers = 0;
  for (int k = 0; k < l.virtual_stages; ++k) {
    const int mc = k * l.pp + rank;
    layers += cfg.n_layer / chunks + (mc < cfg.n_layer % chunks ? 1 : 0);
  }
  double p = layers * layer;
  if (rank == 0) p += double(cfg.padded_vocab_size) / t * C + double(cfg.max_seq_len) * C;
  if (rank == l.pp - 1) p += (l.pp > 1 ? double(cfg.padded_vocab_size) / t * C : 0.0) + 2 * C;
  return p;
}

}  // namespace

TrainerPrediction predict_trainer_step(const ModelConfig& cfg, const Calibration& cal, const TrainerLayout& l,
                                       const Disturbance& d) {
  cfg.validate();
  require_calibrated_pieces(cfg);
  if (l.tp < 1 || l.pp < 1 || l.dp < 1 || cfg.n_head % l.tp)
    throw config_error("predict: layout " + l.describe() + " does not fit the model", "check --tp / --pp");
  const Costs c = trainer_costs(cfg, cal, l);
  const PipelineSchedule s = make_schedule(l.schedule, l.pp, l.virtual_stages, l.microbatches);
  const int chunks = model_chunk_count(s);
  SimulationVariation v;
  for (int mc = 0; mc < chunks; ++mc) {
    const double layers = cfg.n_layer / chunks + (mc < cfg.n_layer % chunks ? 1 : 0);
    double f = layers * c.layer.forward, b = layers * c.layer.backward;
    if (mc == 0) f += c.embedding.forward, b += c.embedding.backward;
    if (mc == chunks - 1) f += c.head.forward, b += c.head.backward;
    v.forward_per_chunk.push_back(f);
    v.backward_per_chunk.push_back(b);
  }
  SimulationCosts costs;
  costs.p2p = c.p2p;

  TrainerPrediction p;
  SimulationResult base = simulate(s, costs, v);
  // The calibration timed the kernels with every rank computing. While ranks wait in the pipeline's
  // bubble the others compute faster by the measured idle speedup (half of the ranks waiting). With
  // two stages, one computes alone for twice a rank's idle time; more stages: the same, capped at all.
  if (cal.idle_speedup > 1 && base.bubble_fraction > 0) {
    const double alone = std::min(1.0, 2 * base.bubble_fraction);
    const double factor = 1 - (1 - 1 / cal.idle_speedup) * alone;
    for (double& f : v.forward_per_chunk) f *= factor;
    for (double& b : v.backward_per_chunk) b *= factor;
    base = simulate(s, costs, v);
  }
  p.bubble_fraction = base.bubble_fraction;
  p.p2p_time = c.p2p;
  p.tp_comm_time = l.microbatches * (cfg.n_layer / double(l.pp) * c.layer.tp_comm);

  // After the schedule: the tied embedding's gradient sum between the first and last stage, the
  // data-parallel reduction (buckets of at most 25 MB, waited for by the norm), the norm's small
  // all-reduces, AdamW over this rank's parameters (its ZeRO-1 shard, then the parameter all-gather).
  double after = 0;
  for (int r = 0; r < l.pp; ++r) {
    const double params = local_parameters(cfg, l, r), bytes = 4 * params;
    double t = 0;
    if (l.pp > 1 && (r == 0 || r == l.pp - 1))
      t += cal.collective_time("all_reduce", 2, 4.0 * cfg.padded_vocab_size / l.tp * cfg.n_embd);
    if (l.dp > 1) {
      const double bucket = 25.0 * (1 << 20);
      const int buckets = int(std::ceil(bytes / bucket));
      for (int k = 0; k < buckets; ++k) {
        const double b = std::min(bucket, bytes - k * bucket);
        t += l.zero ? cal.collective_time("reduce_scatter", l.dp, b) : cal.collective_time("all_reduce", l.dp, b);
      }
    }
    const double shard = l.zero ? params / l.dp : params;
    double opt = cal.op_time("sum_of_squares", {int64_t(shard)}, 4.0 * shard) +
                 cal.op_time("adamw", {int64_t(shard)}, 20.0 * shard);
    if (l.zero && l.dp > 1) opt += cal.collective_time("all_gather", l.dp, bytes);
    const int norm_groups = (l.tp > 1) + (l.pp > 1) + (l.dp > 1);
    opt += norm_groups * cal.collective_time("all_reduce", std::max({l.tp, l.pp, l.dp}), 8.0);
    // The loss: averaged over dp, broadcast along the pipeline.
    opt += cal.collective_time("all_reduce", l.dp, 4.0) + cal.collective_time("all_reduce", l.pp, 4.0);
    if (t + opt > after) after = t + opt, p.grad_sync_time = t, p.optimizer_time = opt;
  }

  auto step_for = [&](const SimulationResult& r) { return r.makespan + after; };
  if (d.slow_rank < 0 && d.jitter <= 0) {
    p.pipeline_time = base.makespan;
    p.step_time = step_for(base);
  } else {
    // A slow or jittery rank holds up its pipeline stage (TP collectives block every layer; the DP
    // reduction waits for every replica), so a stage runs at the pace of its slowest member.
    const int per_stage = l.tp * l.dp;  // world rank = (pp_rank * dp + dp_rank) * tp + tp_rank
    std::mt19937_64 rng(d.seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    const int samples = d.jitter > 0 ? std::max(1, d.jitter_samples) : 1;
    double sum = 0, pipe = 0;
    for (int k = 0; k < samples; ++k) {
      const std::vector<double> factor =
          detail::slowest_per_stage(l.pp, per_stage, d.jitter, d.slow_rank >= 0 ? d.slow_rank / per_stage : -1,
                                    d.slow_rank >= 0 ? d.slow_rank % per_stage : -1, d.slowdown, rng, normal);
      v.rank_factor = factor;
      const SimulationResult r = simulate(s, costs, v);
      sum += step_for(r), pipe += r.makespan;
    }
    p.step_time = sum / samples;
    p.pipeline_time = pipe / samples;
  }
  p.tokens_per_s = double(l.batch_size) * l.seq_len * l.microbatches * l.dp / p.step_time;
  return p;
}

}  // namespace tessera::plan
