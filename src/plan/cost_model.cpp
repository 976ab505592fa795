// The planner's cost model: collectives, GEMM efficiency, memory and the predicted step (plan.h).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <tuple>
#include <utility>

#include "plan/sim_cache.h"
#include "tessera/error.h"
#include "tessera/plan.h"

namespace tessera::plan {

const char* recompute_name(Recompute r) {
  switch (r) {
    case Recompute::none: return "none";
    case Recompute::selective: return "selective";
    case Recompute::elementwise: return "elementwise";
    case Recompute::full: return "full";
  }
  return "?";
}

Recompute parse_recompute(const std::string& s) {
  if (s == "none") return Recompute::none;
  if (s == "selective") return Recompute::selective;
  if (s == "elementwise") return Recompute::elementwise;
  if (s == "full") return Recompute::full;
  throw config_error("unknown recomputation '" + s + "'", "use --recompute none, selective, elementwise or full");
}

std::string Layout::describe() const {
  char buf[240];
  std::string rc = recompute_name(recompute);
  if (recompute == Recompute::full && recompute_layers > 0) rc += ":" + std::to_string(recompute_layers);
  std::string cp_part;
  if (cp > 1) cp_part = " cp" + std::to_string(cp) + "(" + context_parallel_name(cp_kind) + ")";
  std::snprintf(buf, sizeof buf, "tp%d%s pp%d dp%d%s zero%d rc=%s b=%d m=%d %s", tp, cp_part.c_str(), pp, dp,
                sp ? " sp" : "", zero, rc.c_str(), micro_batch, microbatches, schedule_kind_name(schedule));
  std::string s = buf;
  if (schedule == ScheduleKind::interleaved_1f1b) s += " v=" + std::to_string(virtual_stages);
  return s;
}

// ---- collectives -------------------------------------------------------------------------------

namespace {

struct Link {
  double bandwidth;  // bus bandwidth
  double tree_latency, ring_latency;  // of one pass: NCCL's tree (all-reduce across nodes) and ring
};

Link group_link(const ClusterSpec& c, int n, int per_node) {
  per_node = std::max(1, std::min(per_node, n));
  if (per_node >= n) {
    const double ring = (n - 1) * c.intra_latency;
    return {c.intra_bandwidth * c.link_efficiency, ring, ring};
  }
  const int nodes = (n + per_node - 1) / per_node;
  const double bw = std::min(c.intra_bandwidth, per_node * c.inter_bandwidth) * c.link_efficiency;
  const double tree = (per_node - 1) * c.intra_latency + std::ceil(std::log2(double(nodes))) * c.inter_latency;
  // A ring's n-1 steps each wait for the slowest hop: an inter-node one.
  const double ring = (n - 1) * c.inter_latency;
  return {bw, tree, ring};
}

}  // namespace

double all_reduce_time(const ClusterSpec& c, double bytes, int n, int per_node) {
  if (n <= 1 || bytes <= 0) return 0;
  const Link l = group_link(c, n, per_node);
  return 2.0 * l.tree_latency + 2.0 * (n - 1) / n * bytes / l.bandwidth;
}

double all_gather_time(const ClusterSpec& c, double bytes, int n, int per_node) {
  if (n <= 1 || bytes <= 0) return 0;
  const Link l = group_link(c, n, per_node);
  return l.ring_latency + double(n - 1) / n * bytes / l.bandwidth;
}

double all_to_all_time(const ClusterSpec& c, double bytes, int n, int per_node) {
  if (n <= 1 || bytes <= 0) return 0;
  per_node = std::max(1, std::min(per_node, n));
  // Each rank sends (n-1)/n of its buffer: to its node's other members over NVLink, to the rest over
  // its own NIC; both at once, the slower side counts.
  const double peers_intra = per_node - 1, peers_inter = n - per_node, piece = bytes / n;
  const double intra = peers_intra * piece / (c.intra_bandwidth * c.link_efficiency);
  const double inter = peers_inter * piece / (c.inter_bandwidth * c.link_efficiency);
  const double latency = peers_inter > 0 ? c.inter_latency + peers_intra * c.intra_latency : peers_intra * c.intra_latency;
  return latency + std::max(intra, inter);
}

double p2p_time(const ClusterSpec& c, double bytes, bool inter_node) {
  if (bytes <= 0) return 0;
  return inter_node ? c.inter_latency + bytes / (c.inter_bandwidth * c.link_efficiency)
                    : c.intra_latency + bytes / (c.intra_bandwidth * c.link_efficiency);
}

double gemm_efficiency(const ClusterSpec& c, double m, double n, double k, double output_bytes) {
  auto tile = [&](double d) { return d / (d + c.gemm_half_dim); };
  // Each output tile's store is not hidden behind its K loop: 2K FLOPs at peak against output_bytes
  // at HBM speed per element, so efficiency falls as K / (K + balance x output_bytes / 2), balance =
  // FLOPs per byte (about 370 on H100, 190 on A100): larger GEMMs are more efficient, and more so on H100.
  const double balance = c.peak_flops / (c.hbm_bandwidth * c.hbm_efficiency);
  const double k0 = balance * output_bytes / 2;
  return c.gemm_efficiency * tile(m) * tile(n) * tile(k) * (k / (k + k0));
}

// ---- memory ------------------------------------------------------------------------------------

namespace {
// Selective and element-wise recomputation both re-run the attention core in the backward.
bool recomputes_attention_core(const Layout& l) {
  return l.recompute == Recompute::selective || l.recompute == Recompute::elementwise;
}
}  // namespace

double layer_activation_bytes(const ModelShape& m, const Layout& l, const SoftwareSpec& sw) {
  // Context parallelism: each rank keeps s/cp tokens of every sequence (scores: its queries against
  // every key, a/t heads x s/cp x s).
  const double s = double(m.seq_len) / l.cp, b = l.micro_batch, h = m.hidden, f = m.ffn, a = m.heads, t = l.tp;
  const double s_keys = m.seq_len;
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
  const double scores =
      (sw.flash_attention || recomputes_attention_core(l)) ? 0.0 : (m.dropout ? 5.0 : 2.0) * a * s * s_keys * b;
  // Element-wise recomputation drops the norms' outputs (the QKV and MLP inputs) and the MLP
  // activation's output, rebuilt in the backward from the norm inputs and the MLP intermediates.
  const double dropped_replicated = l.recompute == Recompute::elementwise ? 4 * sbh : 0.0;
  const double dropped_split = l.recompute == Recompute::elementwise ? 2 * sbf : 0.0;
  return (replicated - dropped_replicated) / rep_div + (split - dropped_split + scores) / t;
}

namespace detail {

int layers_per_chunk(const ModelShape& m, const Layout& l) {
  const int64_t chunks = int64_t(l.pp) * l.virtual_stages;
  return int((m.layers + chunks - 1) / chunks);
}

int gradient_group(const Layout& l) { return l.dp * l.cp; }

}  // namespace detail

namespace {

using detail::layers_per_chunk;

// Layers of each chunk recomputed in the backward: all of them, or recompute_layers (Megatron's
// block method) under full recomputation.
int recomputed_layers_per_chunk(const ModelShape& m, const Layout& l) {
  if (l.recompute != Recompute::full) return 0;
  const int per_chunk = layers_per_chunk(m, l);
  return l.recompute_layers > 0 ? std::min(l.recompute_layers, per_chunk) : per_chunk;
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
  // ZeRO shards over every rank holding the same weights: dp x cp.
  const double shards = detail::gradient_group(l);
  mem.parameters = 2 * p;
  mem.gradients = sw.grad_bytes * p / (l.zero >= 2 ? shards : 1);
  mem.optimizer = sw.optimizer_bytes * p / (l.zero ? shards : 1);
  // A chunk's layers: the recomputed ones keep their input only, the others everything.
  const int per_chunk = layers_per_chunk(m, l), recomputed = recomputed_layers_per_chunk(m, l);
  Layout kept = l;
  kept.recompute = l.recompute == Recompute::full ? Recompute::none : l.recompute;
  const double per_chunk_bytes = recomputed * layer_activation_bytes(m, l, sw) +
                                 (per_chunk - recomputed) * layer_activation_bytes(m, kept, sw);
  // The logits of the microbatch being finished (bf16 plus fp32 for the loss), on the last stage.
  const double logits = 6.0 * l.micro_batch * (double(m.seq_len) / l.cp) * double(m.vocab) / l.tp;
  mem.activations = per_chunk_bytes * peak_in_flight + logits;
  mem.reserved = c.memory_reserved_bytes;
  return mem;
}

// ---- step time ---------------------------------------------------------------------------------

namespace {

struct LayerCost {
  double linear = 0, linear_backward = 0;        // matmuls (backward: input and weight gradients)
  double attention = 0, attention_backward = 0;  // attention core (matmuls + softmax bytes without flash)
  double elementwise = 0;                        // forward norms, activations, dropout, residuals (backward 2x)
  double recomputable_elementwise = 0;           // the norms and the MLP activation (element-wise recomputation)
  double tp_comm = 0, tp_comm_backward = 0;     // TP collectives, exposed (and what hidden ones cost)
  double cp_comm = 0, cp_comm_backward = 0;      // context-parallel exchange, exposed
  double forward() const { return linear + attention + elementwise + tp_comm + cp_comm; }
  double backward() const {
    return linear_backward + attention_backward + 2 * elementwise + tp_comm_backward + cp_comm_backward;
  }
};

// Y[M x N] = X[M x K] W[K x N]: forward, input gradient (reduces over N, writes M x K) and weight
// gradient (reduces over the M tokens into fp32 gradients: 4 bytes per element).
struct MatmulTimes {
  double forward = 0, backward = 0;
};
MatmulTimes matmul_times(const ClusterSpec& c, double M, double N, double K) {
  const double flops = 2 * M * N * K;
  MatmulTimes t;
  t.forward = flops / (c.peak_flops * gemm_efficiency(c, M, N, K));
  t.backward = flops / (c.peak_flops * gemm_efficiency(c, M, K, N)) + flops / (c.peak_flops * gemm_efficiency(c, K, N, M, 4));
  return t;
}

// Members of a group of n consecutive ranks after `inner` ranks per member (tp, or tp x cp) that
// share a node.
int members_per_node(const ClusterSpec& c, int n, int inner) { return std::max(1, std::min(n, c.gpus_per_node / inner)); }

// Context parallelism's exchange around the attention core of one layer (forward, backward), given
// the core's own times: what is exposed, and what hidden transfers cost the compute they overlap.
std::pair<double, double> context_parallel_comm(const ModelShape& m, const ClusterSpec& c, const Layout& l,
                                                double attention, double attention_backward) {
  if (l.cp <= 1) return {0.0, 0.0};
  const double t = l.tp, b = l.micro_batch, local = double(m.seq_len) / l.cp;
  const double h = m.hidden, kv = double(m.kv_heads) * m.head_dim();
  const int per_node = members_per_node(c, l.cp, l.tp);
  const double kv_block = 2.0 * 2 * b * local * kv / t;  // bf16 K and V of the local tokens
  switch (l.cp_kind) {
    case ContextParallel::ring: {
      // cp - 1 steps: the next block's K/V arrive while the current block's attention runs. A ring
      // that leaves the node waits for its inter-node hop.
      const double xfer = p2p_time(c, kv_block, per_node < l.cp);
      auto steps = [&](double core, double bytes_factor) {
        const double step = core / l.cp, x = xfer * bytes_factor;
        return (l.cp - 1) * (std::max(0.0, x - step) + std::min(x, step) * c.overlap_slowdown);
      };
      return {steps(attention, 1.0), steps(attention_backward, 2.0)};  // the backward also sends dK, dV
    }
    case ContextParallel::all_gather: {
      // K/V of the whole sequence gathered before the core, their gradients reduce-scattered after.
      const double gather = all_gather_time(c, kv_block * l.cp, l.cp, per_node);
      return {gather, 2 * gather};  // the backward gathers again (not kept) and reduce-scatters
    }
    case ContextParallel::all_to_all: {
      // Q, K, V to whole sequences of heads/cp heads before the core; its output back after.
      const double qkv = 2.0 * b * local * (h + 2 * kv) / t, out = 2.0 * b * local * h / t;
      const double a2a = all_to_all_time(c, qkv, l.cp, per_node) + all_to_all_time(c, out, l.cp, per_node);
      return {a2a, a2a};
    }
  }
  return {0.0, 0.0};
}

// The card as the software's kernels run on it: their GEMM and attention rates relative to the
// card's (SoftwareSpec::kernel_efficiency).
ClusterSpec with_kernels(const ClusterSpec& c, const SoftwareSpec& sw) {
  ClusterSpec k = c;
  k.gemm_efficiency *= sw.kernel_efficiency;
  k.attention_efficiency *= sw.kernel_efficiency;
  return k;
}

LayerCost layer_cost(const ModelShape& m, const ClusterSpec& card, const Layout& l, const SoftwareSpec& sw) {
  const ClusterSpec c = with_kernels(card, sw);
  LayerCost lc;
  // Tokens per rank per microbatch: context parallelism splits every sequence over cp ranks.
  const double t = l.tp, M = double(l.micro_batch) * m.seq_len / l.cp, h = m.hidden, f = m.ffn;
  const double kv = double(m.kv_heads) * m.head_dim();
  for (const MatmulTimes& g : {matmul_times(c, M, (h + 2 * kv) / t, h), matmul_times(c, M, h, h / t),
                               matmul_times(c, M, (m.gated_mlp ? 2 : 1) * f / t, h), matmul_times(c, M, h, f / t)}) {
    lc.linear += g.forward;
    lc.linear_backward += g.backward;
  }
  const double hbm = c.hbm_bandwidth * c.hbm_efficiency;
  // The rank's queries against every key of their sequences (load-balanced under the causal mask).
  const double s = m.seq_len, heads = m.heads / t, attention_flops = 4.0 * M * s * h / t;
  if (sw.flash_attention) {
    lc.attention = 0.5 * attention_flops / (c.peak_flops * c.attention_efficiency);  // causal
    // Five matmuls against two (the scores recomputed), at a lower rate than the forward's.
    lc.attention_backward = 2.5 * lc.attention / c.attention_backward_efficiency;
  } else {
    // Batched score and value GEMMs (their s x s traffic counted as bytes), softmax, dropout.
    const double bytes = (m.dropout ? 7.0 : 4.0) * l.micro_batch * heads * (s / l.cp) * s;  // scores in, probs, mask, out
    lc.attention = attention_flops / (c.peak_flops * gemm_efficiency(c, s / l.cp, s, m.head_dim(), 0)) + bytes / hbm;
    lc.attention_backward = 2 * lc.attention;
  }
  std::tie(lc.cp_comm, lc.cp_comm_backward) = context_parallel_comm(m, c, l, lc.attention, lc.attention_backward);
  // Bytes per token: two norms (4h) and two residual adds / bias-dropout-adds (7h or 6h each), kept
  // whole on every tp rank unless sequence-parallel; the MLP activation and RoPE split over tp.
  const double replicated = 8 * h + (m.dropout ? 14 : 12) * h;
  const double rope = m.learned_positions ? 0.0 : 4 * (h + kv);
  const double split = (m.gated_mlp ? 6 * f : 4 * f) + rope;
  lc.elementwise = M * (replicated / (l.sp ? t : 1.0) + split / t) / hbm;
  // The norms (read 2h, write 2h each) and the MLP activation (bias-GeLU: 4f; SwiGLU: 6f).
  lc.recomputable_elementwise = M * (8 * h / (l.sp ? t : 1.0) + (m.gated_mlp ? 6 : 4) * f / t) / hbm;
  if (l.tp > 1) {
    const double bytes = 2 * M * h;  // bf16 activations
    // One collective: an all-reduce, or under SP an all-gather or a reduce-scatter (half the volume).
    const double one = l.sp ? all_gather_time(c, bytes, l.tp, l.tp) : all_reduce_time(c, bytes, l.tp, l.tp);
    // Forward: two all-reduces after the row-parallel GEMMs, or under SP an all-gather before each
    // column-parallel GEMM and a reduce-scatter after each row-parallel one.
    const double forward = (l.sp ? 4 : 2) * one;
    // Backward: the row-parallel GEMMs first gather their output gradient (SP only); the column-
    // parallel ones reduce their input gradient and, under SP, re-gather their input for the
    // weight gradient: these 2 (4 under SP) can run behind the input- and weight-gradient GEMMs.
    const double blocking = (l.sp ? 2 : 0) * one, async = (l.sp ? 4 : 2) * one;
    // Overlapped, a collective still takes SMs and HBM bandwidth from the GEMMs it hides behind.
    auto behind = [&](double comm, double gemms) {
      return std::max(0.0, comm - gemms) + std::min(comm, gemms) * c.overlap_slowdown;
    };
    if (sw.tp_comm_overlap) {
      lc.tp_comm = behind(forward, lc.linear);
      lc.tp_comm_backward = behind(blocking + async, lc.linear_backward);
    } else {
      lc.tp_comm = forward;
      lc.tp_comm_backward = blocking + (sw.tp_async_backward ? behind(async, lc.linear_backward) : async);
    }
  }
  return lc;
}

}  // namespace

namespace detail {

bool context_parallel_dominated(const ModelShape& m, const ClusterSpec& c, const Layout& l, const SoftwareSpec& sw) {
  const LayerCost own = layer_cost(m, c, l, sw);
  const double cost = own.cp_comm + own.cp_comm_backward;
  for (ContextParallel k : {ContextParallel::ring, ContextParallel::all_gather, ContextParallel::all_to_all}) {
    if (k == l.cp_kind || !(sw.context_parallel & unsigned(k))) continue;
    if (k == ContextParallel::all_to_all && ((m.heads / l.tp) % l.cp || (m.kv_heads / l.tp) % l.cp)) continue;
    Layout other = l;
    other.cp_kind = k;
    const LayerCost alt = layer_cost(m, c, other, sw);
    const double alt_cost = alt.cp_comm + alt.cp_comm_backward;
    // Ties go to the earlier variant (ring, all-gather, all-to-all).
    if (alt_cost < cost || (alt_cost == cost && int(k) < int(l.cp_kind))) return true;
  }
  return false;
}

Prediction predict_cached(const ModelShape& m, const ClusterSpec& card, const Layout& l, int global_batch,
                          const SoftwareSpec& sw, SimCache& cache) {
  const ClusterSpec c = with_kernels(card, sw);
  Prediction p;
  p.layout = l;
  const LayerCost lc = layer_cost(m, card, l, sw);
  const double layer_f = lc.forward(), layer_b = lc.backward();
  const int per_chunk = layers_per_chunk(m, l), recomputed = recomputed_layers_per_chunk(m, l);
  // Selective recomputation re-runs the attention core in the backward (already so with flash
  // attention); element-wise recomputation also the norms and the MLP activation.
  double rerun = recomputes_attention_core(l) && !sw.flash_attention ? lc.attention : 0.0;
  if (l.recompute == Recompute::elementwise) rerun += lc.recomputable_elementwise;
  const double chunk_f = per_chunk * layer_f, chunk_b = per_chunk * (layer_b + rerun) + recomputed * layer_f;

  // The lm head and loss, on the last stage for every microbatch: the slowest stage sets the pace.
  const double M = double(l.micro_batch) * m.seq_len / l.cp, Vt = double(m.vocab) / l.tp;
  const double hbm = c.hbm_bandwidth * c.hbm_efficiency;
  const MatmulTimes head = matmul_times(c, M, Vt, m.hidden);
  const double head_fb = head.forward + head.backward + sw.loss_bytes_per_logit * M * Vt / hbm;

  // Pipeline transfers: a microbatch's activation (split over tp ranks with scatter/gather or SP).
  const bool split_p2p = sw.p2p_scatter_gather || l.sp;
  const double p2p_bytes = 2 * M * m.hidden / (split_p2p ? l.tp : 1);
  const bool stage_inter_node = int64_t(l.tp) * l.cp * l.dp >= c.gpus_per_node && c.gpus > c.gpus_per_node;
  const double p2p = l.pp > 1 ? p2p_time(c, p2p_bytes, stage_inter_node) : 0.0;

  const SimSummary& sim =
      cache.get(l.schedule, l.pp, l.virtual_stages, l.microbatches, chunk_b / chunk_f, p2p / chunk_f);
  p.peak_in_flight = sim.peak_in_flight;
  p.bubble_fraction = sim.bubble_fraction;
  p.pipeline_time = sim.makespan * chunk_f + l.microbatches * head_fb;

  const int chunk_runs = l.microbatches * l.virtual_stages;
  p.tp_comm_time = chunk_runs * (per_chunk * (lc.tp_comm + lc.tp_comm_backward) + recomputed * lc.tp_comm);
  p.cp_comm_time = chunk_runs * (per_chunk * (lc.cp_comm + lc.cp_comm_backward) + recomputed * lc.cp_comm);
  p.p2p_time = l.pp > 1 ? 2.0 * chunk_runs * p2p : 0.0;

  // Data-parallel gradient reduction over the dp x cp ranks holding the same weights, in buckets: an
  // all-reduce, or with ZeRO-1 a reduce-scatter of the gradients and an all-gather of the bf16
  // parameters. The reduction overlaps the rank's last backward (and whatever time the rank idles
  // before the slowest one finishes), except the last bucket, which only starts when the backward
  // ends; the gather overlaps the next first forward, except the first bucket, which it waits for.
  // ZeRO-2 keeps only its gradient shard, so it reduce-scatters after every microbatch: m times the
  // traffic, hidden as long as the rank's compute outlasts it.
  const double params = parameters_per_gpu(m, l);
  const int group = gradient_group(l);
  if (group > 1) {
    const int per_node = members_per_node(c, group, l.tp);
    const double buckets = std::max(1.0, std::ceil(params / std::max(sw.bucket_params, sw.bucket_params_per_dp * group)));
    const double bucket_grads = params * sw.grad_reduce_bytes / buckets;
    const double reduce_one =
        l.zero ? all_gather_time(c, bucket_grads, group, per_node) : all_reduce_time(c, bucket_grads, group, per_node);
    const double reduce = buckets * reduce_one;
    const double last_backward = sw.overlap_grad_reduce ? l.virtual_stages * chunk_b : 0.0;
    double exposed = sw.overlap_grad_reduce ? reduce_one : reduce, hidden = std::min(reduce - reduce_one, last_backward);
    for (double finish : sim.rank_finish) exposed = std::max(exposed, reduce - (sim.makespan - finish) * chunk_f - last_backward);
    if (l.zero >= 2) {
      const double busy = double(chunk_runs) * (chunk_f + chunk_b);
      exposed = std::max(exposed, sw.overlap_grad_reduce ? l.microbatches * reduce - busy : l.microbatches * reduce);
      if (sw.overlap_grad_reduce) hidden = std::min(l.microbatches * reduce, busy);
    }
    p.dp_exposed_time = std::max(0.0, exposed);
    if (l.zero) {
      const double gather_one = all_gather_time(c, 2 * params / buckets, group, per_node);
      const double gather = buckets * gather_one, window = l.virtual_stages * chunk_f;
      p.dp_exposed_time += sw.overlap_param_gather ? std::max(gather_one, gather - window) : gather;
      if (sw.overlap_param_gather) hidden += std::min(gather - gather_one, window);
    }
    // Hidden collectives slow the compute they overlap (SMs and HBM bandwidth taken by NCCL).
    p.dp_exposed_time += std::max(0.0, hidden) * c.overlap_slowdown;
  }
  // AdamW: read the gradient, read and write the optimizer state, write the bf16 parameters.
  const double adam_bytes = sw.grad_bytes + 2 * sw.optimizer_bytes + 2;
  p.optimizer_time = adam_bytes * params / (l.zero ? group : 1) / hbm;
  p.step_time = p.pipeline_time + p.dp_exposed_time + p.optimizer_time;
  p.chunk_forward = chunk_f, p.chunk_backward = chunk_b, p.p2p_transfer = p2p, p.head_per_microbatch = head_fb;
  p.after_pipeline = p.dp_exposed_time + p.optimizer_time;

  p.memory = memory_per_gpu(m, c, l, sw, p.peak_in_flight);
  p.fits = p.memory.total() <= c.memory_bytes;
  const double sequences = double(global_batch);
  const double gpus = double(l.gpus());
  p.tokens_per_s = sequences * double(m.seq_len) / p.step_time;
  p.mfu = sequences * m.model_flops_per_sequence() / (p.step_time * gpus * c.peak_flops);
  double hardware = m.model_flops_per_sequence();
  if (l.recompute == Recompute::full)
    hardware += (m.hardware_flops_per_sequence_full_recompute() - hardware) * recomputed / per_chunk;
  if (recomputes_attention_core(l)) hardware += 4.0 * double(m.seq_len) * double(m.seq_len) * double(m.hidden) * double(m.layers);
  p.hfu = sequences * hardware / (p.step_time * gpus * c.peak_flops);
  p.exposed_comm_fraction = (p.tp_comm_time + p.cp_comm_time + p.p2p_time + p.dp_exposed_time) / p.step_time;
  return p;
}

}  // namespace detail

Prediction predict(const ModelShape& m, const ClusterSpec& c, const Layout& l, int global_batch, const SoftwareSpec& sw) {
  detail::SimCache cache;
  return detail::predict_cached(m, c, l, global_batch, sw, cache);
}

}  // namespace tessera::plan
