// The planner's cost model: collectives, GEMM efficiency, memory and the predicted step (plan.h).
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "plan/sim_cache.h"
#include "tessera/error.h"
#include "tessera/plan.h"

namespace tessera::plan {

const char* recompute_name(Recompute r) {
  switch (r) {
    case Recompute::none: return "none";
    case Recompute::selective: return "selective";
    case Recompute::full: return "full";
  }
  return "?";
}

Recompute parse_recompute(const std::string& s) {
  if (s == "none") return Recompute::none;
  if (s == "selective") return Recompute::selective;
  if (s == "full") return Recompute::full;
  throw config_error("unknown recomputation '" + s + "'", "use --recompute none, selective or full");
}

std::string Layout::describe() const {
  char buf[200];
  std::snprintf(buf, sizeof buf, "tp%d pp%d dp%d%s zero%d rc=%s b=%d m=%d %s", tp, pp, dp, sp ? " sp" : "", zero,
                recompute_name(recompute), micro_batch, microbatches, schedule_kind_name(schedule));
  std::string s = buf;
  if (schedule == ScheduleKind::interleaved_1f1b) s += " v=" + std::to_string(virtual_stages);
  return s;
}

// ---- collectives -------------------------------------------------------------------------------

namespace {

struct Link {
  double bandwidth, latency_steps;  // bus bandwidth; latency of one full collective pass (x2 for all-reduce)
};

Link group_link(const ClusterSpec& c, int n, int per_node) {
  per_node = std::max(1, std::min(per_node, n));
  if (per_node >= n) return {c.intra_bandwidth * c.link_efficiency, (n - 1) * c.intra_latency};
  const int nodes = (n + per_node - 1) / per_node;
  const double bw = std::min(c.intra_bandwidth, per_node * c.inter_bandwidth) * c.link_efficiency;
  const double latency = (per_node - 1) * c.intra_latency + std::ceil(std::log2(double(nodes))) * c.inter_latency;
  return {bw, latency};
}

}  // namespace

double all_reduce_time(const ClusterSpec& c, double bytes, int n, int per_node) {
  if (n <= 1 || bytes <= 0) return 0;
  const Link l = group_link(c, n, per_node);
  return 2.0 * l.latency_steps + 2.0 * (n - 1) / n * bytes / l.bandwidth;
}

double all_gather_time(const ClusterSpec& c, double bytes, int n, int per_node) {
  if (n <= 1 || bytes <= 0) return 0;
  const Link l = group_link(c, n, per_node);
  return l.latency_steps + double(n - 1) / n * bytes / l.bandwidth;
}

double p2p_time(const ClusterSpec& c, double bytes, bool inter_node) {
  if (bytes <= 0) return 0;
  return inter_node ? c.inter_latency + bytes / (c.inter_bandwidth * c.link_efficiency)
                    : c.intra_latency + bytes / (c.intra_bandwidth * c.link_efficiency);
}

double gemm_efficiency(const ClusterSpec& c, double m, double n, double k) {
  auto s = [&](double d) { return d / (d + c.gemm_half_dim); };
  return c.gemm_efficiency * s(m) * s(n) * s(k);
}

// ---- memory ------------------------------------------------------------------------------------

double layer_activation_bytes(const ModelShape& m, const Layout& l, const SoftwareSpec& sw) {
  const double s = m.seq_len, b = l.micro_batch, h = m.hidden, f = m.ffn, a = m.heads, t = l.tp;
  const double sbh = s * b * h, sbf = s * b * f, r = double(m.kv_heads) / m.heads;
  const double rep_div = l.sp ? t : 1.0;
  if (l.recompute == Recompute::full) return 2 * sbh / rep_div;  // the layer's input only
  // Kept on every tp rank unless sequence-parallel: two norm inputs (4sbh), the QKV and MLP inputs
  // (2sbh each), the two dropout masks (1 byte each).
  const double replicated = (4 + 2 + 2 + (m.dropout ? 2 : 0)) * sbh;
  // Split over tp: Q, K, V, the output projection's input; the MLP's intermediates.
  const double split = (4 + 4 * r) * sbh + (m.gated_mlp ? 6 : 4) * sbf;
  // Softmax output, its dropout mask and output (Korthikanti's 5as^2b); none with flash attention or
  // selective recomputation (the attention core recomputed in backward).
  const double scores = (sw.flash_attention || l.recompute == Recompute::selective)
                            ? 0.0
                            : (m.dropout ? 5.0 : 2.0) * a * s * s * b;
  return replicated / rep_div + (split + scores) / t;
}

namespace {

int layers_per_chunk(const ModelShape& m, const Layout& l) {
  const int chunks = l.pp * l.virtual_stages;
  return (m.layers + chunks - 1) / chunks;
}

// Parameters on the busiest rank: its layers, plus the embedding or head (first and last stages).
double parameters_per_gpu(const ModelShape& m, const Layout& l) {
  const double layers = double(layers_per_chunk(m, l)) * l.virtual_stages;
  const double emb = double(m.vocab) * m.hidden + (m.learned_positions ? double(m.seq_len) * m.hidden : 0.0);
  double embedding;
  if (l.pp == 1) embedding = m.tied_embedding ? emb : emb + double(m.vocab) * m.hidden;
  else embedding = std::max(emb, double(m.vocab) * m.hidden);  // first stage (lookup) or last (head)
  return (std::min<double>(layers, m.layers) * m.layer_parameters() + embedding) / l.tp;
}

}  // namespace

Memory memory_per_gpu(const ModelShape& m, const ClusterSpec& c, const Layout& l, const SoftwareSpec& sw,
                      int peak_in_flight) {
  Memory mem;
  const double p = parameters_per_gpu(m, l);
  mem.parameters = 2 * p;
  mem.gradients = 4 * p;
  mem.optimizer = 12 * p / (l.zero ? l.dp : 1);
  const double per_layer = layer_activation_bytes(m, l, sw);
  // The logits of the microbatch being finished (bf16 plus fp32 for the loss), on the last stage.
  const double logits = 6.0 * l.micro_batch * m.seq_len * double(m.vocab) / l.tp;
  mem.activations = per_layer * layers_per_chunk(m, l) * peak_in_flight + logits;
  mem.reserved = c.memory_reserved_bytes;
  return mem;
}

// ---- step time ---------------------------------------------------------------------------------

namespace {

struct LayerCost {
  double linear = 0;       // forward matmuls
  double attention = 0;    // forward attention core (matmuls + softmax bytes without flash)
  double elementwise = 0;  // forward norms, activations, dropout, residuals
  double tp_comm = 0;      // forward TP collectives (the backward has as many)
  double forward() const { return linear + attention + elementwise; }
};

LayerCost layer_cost(const ModelShape& m, const ClusterSpec& c, const Layout& l, const SoftwareSpec& sw) {
  LayerCost lc;
  const double t = l.tp, M = double(l.micro_batch) * m.seq_len, h = m.hidden, f = m.ffn;
  const double kv = double(m.kv_heads) * m.head_dim();
  auto gemm = [&](double n, double k) { return 2 * M * n * k / (c.peak_flops * gemm_efficiency(c, M, n, k)); };
  lc.linear = gemm((h + 2 * kv) / t, h) + gemm(h, h / t) + gemm((m.gated_mlp ? 2 : 1) * f / t, h) + gemm(h, f / t);
  const double hbm = c.hbm_bandwidth * c.hbm_efficiency;
  const double s = m.seq_len, heads = m.heads / t, attention_flops = 4.0 * M * s * h / t;
  if (sw.flash_attention) {
    lc.attention = 0.5 * attention_flops / (c.peak_flops * c.attention_efficiency);  // causal
  } else {
    const double bytes = (m.dropout ? 7.0 : 4.0) * l.micro_batch * heads * s * s;  // scores in, probs, mask, out
    lc.attention = attention_flops / (c.peak_flops * gemm_efficiency(c, s, s, m.head_dim())) + bytes / hbm;
  }
  // Bytes per token: two norms (4h) and two residual adds / bias-dropout-adds (7h or 6h each), kept
  // whole on every tp rank unless sequence-parallel; the MLP activation (and RoPE) split over tp.
  const double replicated = 8 * h + (m.dropout ? 14 : 12) * h;
  const double split = m.gated_mlp ? 6 * f + 4 * (h + kv) : 4 * f;
  lc.elementwise = M * (replicated / (l.sp ? t : 1.0) + split / t) / hbm;
  if (l.tp > 1) {
    const double bytes = 2 * M * h;  // bf16 activations
    // Two all-reduces, or under SP two all-gather + reduce-scatter pairs: the same volume.
    const double comm = l.sp ? 4 * all_gather_time(c, bytes, l.tp, l.tp) : 2 * all_reduce_time(c, bytes, l.tp, l.tp);
    lc.tp_comm = sw.tp_comm_overlap ? std::max(0.0, comm - lc.linear) : comm;
  }
  return lc;
}

}  // namespace

namespace detail {

Prediction predict_cached(const ModelShape& m, const ClusterSpec& c, const Layout& l, int global_batch,
                          const SoftwareSpec& sw, SimCache& cache) {
  Prediction p;
  p.layout = l;
  const LayerCost lc = layer_cost(m, c, l, sw);
  const double attention_backward = sw.flash_attention ? 2.5 * lc.attention : 2.0 * lc.attention;
  double layer_f = lc.forward() + lc.tp_comm;
  double layer_b = 2 * lc.linear + attention_backward + 2 * lc.elementwise + lc.tp_comm;
  if (l.recompute == Recompute::full) layer_b += layer_f;
  if (l.recompute == Recompute::selective && !sw.flash_attention) layer_b += lc.attention;
  const int per_chunk = layers_per_chunk(m, l);
  const double chunk_f = per_chunk * layer_f, chunk_b = per_chunk * layer_b;

  // The lm head and loss, on the last stage for every microbatch: the slowest stage sets the pace.
  const double M = double(l.micro_batch) * m.seq_len, Vt = double(m.vocab) / l.tp;
  const double hbm = c.hbm_bandwidth * c.hbm_efficiency;
  const double head_f = 2 * M * Vt * m.hidden / (c.peak_flops * gemm_efficiency(c, M, Vt, m.hidden)) + 6 * M * Vt / hbm;
  const double head_fb = 3 * head_f;

  // Pipeline transfers: a microbatch's activation (split over tp ranks with scatter/gather or SP).
  const bool split_p2p = sw.p2p_scatter_gather || l.sp;
  const double p2p_bytes = 2 * M * m.hidden / (split_p2p ? l.tp : 1);
  const bool stage_inter_node = l.tp * l.dp >= c.gpus_per_node && c.gpus > c.gpus_per_node;
  const double p2p = l.pp > 1 ? p2p_time(c, p2p_bytes, stage_inter_node) : 0.0;

  const SimSummary& sim =
      cache.get(l.schedule, l.pp, l.virtual_stages, l.microbatches, chunk_b / chunk_f, p2p / chunk_f);
  p.peak_in_flight = sim.peak_in_flight;
  p.bubble_fraction = sim.bubble_fraction;
  p.pipeline_time = sim.makespan * chunk_f + l.microbatches * head_fb;

  const int chunk_runs = l.microbatches * l.virtual_stages;
  p.tp_comm_time = chunk_runs * per_chunk * lc.tp_comm * (l.recompute == Recompute::full ? 3 : 2);
  p.p2p_time = l.pp > 1 ? 2.0 * chunk_runs * p2p : 0.0;

  // Data-parallel gradient reduction, overlapped with the rank's last backward (and whatever time the
  // rank idles before the slowest one finishes).
  const double params = parameters_per_gpu(m, l);
  if (l.dp > 1) {
    const int per_node = std::max(1, std::min(l.dp, c.gpus_per_node / l.tp));
    const double reduce = all_reduce_time(c, params * sw.grad_reduce_bytes, l.dp, per_node);
    double exposed = 0;
    for (double finish : sim.rank_finish) {
      const double slack = (sim.makespan - finish) * chunk_f + (sw.overlap_grad_reduce ? l.virtual_stages * chunk_b : 0);
      exposed = std::max(exposed, reduce - slack);
    }
    p.dp_exposed_time = std::max(0.0, exposed);
    if (l.zero && !sw.overlap_param_gather) p.dp_exposed_time += all_gather_time(c, 2 * params, l.dp, per_node);
  }
  // AdamW: read gradient, master, m, v; write master, m, v and the bf16 copy (30 bytes per parameter).
  p.optimizer_time = 30.0 * params / (l.zero ? l.dp : 1) / hbm;
  p.step_time = p.pipeline_time + p.dp_exposed_time + p.optimizer_time;

  p.memory = memory_per_gpu(m, c, l, sw, p.peak_in_flight);
  p.fits = p.memory.total() <= c.memory_bytes;
  const double sequences = double(global_batch);
  const double gpus = double(l.tp) * l.pp * l.dp;
  p.tokens_per_s = sequences * m.seq_len / p.step_time;
  p.mfu = sequences * m.model_flops_per_sequence() / (p.step_time * gpus * c.peak_flops);
  double hardware = m.model_flops_per_sequence();
  if (l.recompute == Recompute::full) hardware = m.hardware_flops_per_sequence_full_recompute();
  if (l.recompute == Recompute::selective) hardware += 4.0 * m.seq_len * m.seq_len * m.hidden * m.layers;
  p.hfu = sequences * hardware / (p.step_time * gpus * c.peak_flops);
  p.exposed_comm_fraction = (p.tp_comm_time + p.p2p_time + p.dp_exposed_time) / p.step_time;
  return p;
}

}  // namespace detail

Prediction predict(const ModelShape& m, const ClusterSpec& c, const Layout& l, int global_batch, const SoftwareSpec& sw) {
  detail::SimCache cache;
  return detail::predict_cached(m, c, l, global_batch, sw, cache);
}

}  // namespace tessera::plan
