// Cluster presets and their JSON overrides.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "io/json.h"
#include "tessera/error.h"
#include "tessera/plan.h"

namespace tessera::plan {

ClusterSpec ClusterSpec::preset(const std::string& name, int gpus) {
  ClusterSpec c;
  c.gpus = gpus;
  c.gpus_per_node = 8;
  if (name == "a100") {
    // DGX A100 80 GB: 312 TFLOP/s dense bf16, 2.0 TB/s HBM2e, NVLink 3 600 GB/s bidirectional,
    // 8 x HDR 200 Gb/s InfiniBand (25 GB/s per GPU).
    c.peak_flops = 312e12, c.memory_bytes = 80e9, c.hbm_bandwidth = 2.039e12;
    c.intra_bandwidth = 300e9, c.inter_bandwidth = 25e9;
    // Sustained large-GEMM rate before the shape terms of gemm_efficiency(), fitted on the fit set's
    // A100 runs (tests/plan/published.json; with gemm_half_dim 128): about 84% of the maximum
    // achievable matmul rate measured on the card (about 87% of peak). FlashAttention-2's reported
    // forward fraction.
    c.gemm_efficiency = 0.73, c.attention_efficiency = 0.6;
  } else if (name == "h100") {
    // DGX H100: 989 TFLOP/s dense bf16, 3.35 TB/s HBM3, NVLink 4 900 GB/s bidirectional,
    // 8 x NDR 400 Gb/s InfiniBand (50 GB/s per GPU).
    c.peak_flops = 989e12, c.memory_bytes = 80e9, c.hbm_bandwidth = 3.35e12;
    c.intra_bandwidth = 450e9, c.inter_bandwidth = 50e9;
    // As above, fitted on the fit set's H100 runs (about 78% of the maximum achievable matmul rate,
    // about 80% of peak: power and clock limits); fused attention (cuDNN, FlashAttention-3) forward
    // at half of peak.
    c.gemm_efficiency = 0.62, c.attention_efficiency = 0.5;
  } else {
    throw config_error("unknown cluster '" + name + "'", "use --cluster a100 or --cluster h100 (and override fields)");
  }
  c.name = name;
  c.intra_latency = 2e-6, c.inter_latency = 5e-6;
  return c;
}

void ClusterSpec::apply_json(const std::string& json_text, const std::string& where) {
  const json::Value v = json::parse(json_text, where);
  if (!v.is_object()) throw data_error("a cluster description must be a JSON object", where);
  for (const auto& member : v.members()) {
    const std::string& k = member.key;
    const json::Value& x = member.value;
    if (k == "name") name = x.as_string();
    else if (k == "gpus") gpus = int(x.as_int64());
    else if (k == "gpus_per_node") gpus_per_node = int(x.as_int64());
    else if (k == "peak_tflops") peak_flops = x.as_double() * 1e12;
    else if (k == "memory_gb") memory_bytes = x.as_double() * 1e9;
    else if (k == "hbm_gbps") hbm_bandwidth = x.as_double() * 1e9;
    else if (k == "intra_gbps") intra_bandwidth = x.as_double() * 1e9;
    else if (k == "intra_latency_us") intra_latency = x.as_double() * 1e-6;
    else if (k == "inter_gbps") inter_bandwidth = x.as_double() * 1e9;
    else if (k == "inter_latency_us") inter_latency = x.as_double() * 1e-6;
    else if (k == "gemm_efficiency") gemm_efficiency = x.as_double();
    else if (k == "gemm_half_dim") gemm_half_dim = x.as_double();
    else if (k == "attention_efficiency") attention_efficiency = x.as_double();
    else if (k == "attention_backward_efficiency") attention_backward_efficiency = x.as_double();
    else if (k == "hbm_efficiency") hbm_efficiency = x.as_double();
    else if (k == "link_efficiency") link_efficiency = x.as_double();
    else if (k == "overlap_slowdown") overlap_slowdown = x.as_double();
    else if (k == "memory_reserved_gb") memory_reserved_bytes = x.as_double() * 1e9;
    else
      throw data_error("unknown cluster field '" + k + "'", where,
                       "fields: name gpus gpus_per_node peak_tflops memory_gb hbm_gbps intra_gbps intra_latency_us "
                       "inter_gbps inter_latency_us gemm_efficiency gemm_half_dim attention_efficiency attention_backward_efficiency "
                       "hbm_efficiency link_efficiency overlap_slowdown memory_reserved_gb");
  }
}

void ClusterSpec::validate() const {
  if (gpus < 1) throw config_error("the cluster needs at least one GPU", "set --gpus");
  if (gpus > kMaxGpus)
    throw config_error("--gpus " + std::to_string(gpus) + " is more than the planner handles (at most " +
                           std::to_string(kMaxGpus) + ")",
                       "check --gpus");
  if (gpus_per_node < 1) throw config_error("--gpus-per-node must be positive", "set --gpus-per-node");
  if (gpus_per_node > 1024) throw config_error("--gpus-per-node " + std::to_string(gpus_per_node) + " is implausible (at most 1024)",
                                               "check --gpus-per-node");
  if (gpus > gpus_per_node && gpus % gpus_per_node != 0)
    throw config_error("--gpus (" + std::to_string(gpus) + ") is not a whole number of nodes of " +
                           std::to_string(gpus_per_node),
                       "use a multiple of --gpus-per-node");
  auto positive = [](double v, const char* what) {
    if (!(v > 0)) throw config_error(std::string("cluster ") + what + " must be positive", "fix the cluster description");
  };
  positive(peak_flops, "peak FLOP/s"), positive(memory_bytes, "memory"), positive(hbm_bandwidth, "HBM bandwidth");
  positive(intra_bandwidth, "intra-node bandwidth"), positive(inter_bandwidth, "inter-node bandwidth");
  positive(gemm_efficiency, "gemm_efficiency"), positive(attention_efficiency, "attention_efficiency");
  positive(hbm_efficiency, "hbm_efficiency"), positive(link_efficiency, "link_efficiency");
  positive(attention_backward_efficiency, "attention_backward_efficiency");
  if (overlap_slowdown < 0 || overlap_slowdown >= 1)
    throw config_error("cluster overlap_slowdown must be in [0, 1)", "fix the cluster description");
}

const char* context_parallel_name(ContextParallel k) {
  switch (k) {
    case ContextParallel::ring: return "ring";
    case ContextParallel::all_gather: return "all-gather";
    case ContextParallel::all_to_all: return "all-to-all";
  }
  return "?";
}

unsigned parse_context_parallel(const std::string& list) {
  if (list == "none" || list.empty()) return 0;
  unsigned bits = 0;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    const std::string item = list.substr(start, comma - start);
    bool known = false;
    for (ContextParallel k : {ContextParallel::ring, ContextParallel::all_gather, ContextParallel::all_to_all})
      if (item == context_parallel_name(k)) bits |= unsigned(k), known = true;
    if (!known)
      throw config_error("unknown context-parallel variant '" + item + "'", "use ring, all-gather, all-to-all (comma-separated) or none");
    start = comma + 1;
  }
  return bits;
}

namespace {
constexpr unsigned kAllContextParallel = unsigned(ContextParallel::ring) | unsigned(ContextParallel::all_gather) |
                                         unsigned(ContextParallel::all_to_all);

// Megatron-Core's distributed data parallel: buckets of max(40M, 1M x dp) parameters.
void megatron_buckets(SoftwareSpec& s) { s.bucket_params = 40e6, s.bucket_params_per_dp = 1e6; }
}  // namespace

SoftwareSpec SoftwareSpec::preset(const std::string& name) {
  SoftwareSpec s;
  if (name == "tessera") {
  } else if (name == "megatron-core") {
    s.tp_comm_overlap = true, s.tp_async_backward = true, s.loss_bytes_per_logit = 52, s.partial_recompute = true, s.uneven_chunks = false;
    s.context_parallel = kAllContextParallel;
    megatron_buckets(s);
  } else if (name == "nemo-2024") {
    s.tp_comm_overlap = true, s.tp_async_backward = true, s.partial_recompute = true, s.uneven_chunks = false;
    s.context_parallel = kAllContextParallel;
    s.grad_bytes = 2, s.grad_reduce_bytes = 2, s.optimizer_bytes = 10;
    // Fitted on its fit-set run (NeMo 24.09's Llama 3.1 8B on 8 H100, published.json): NeMo 24.x's
    // kernels run about 15% faster than the r0.8 Megatron-Core table the H100 constants come from.
    s.kernel_efficiency = 1.15;
    megatron_buckets(s);
  } else if (name == "megatron-lm-2021" || name == "megatron-lm-2022") {
    s.flash_attention = false, s.overlap_grad_reduce = false, s.overlap_param_gather = false;
    s.grad_reduce_bytes = 2, s.loss_bytes_per_logit = 52, s.partial_recompute = true, s.uneven_chunks = false;
    s.tp_async_backward = name == "megatron-lm-2022";
    // Fitted on its fit-set run (the 22B GPT on 8 A100 of Korthikanti et al. 2022, published.json).
    if (name == "megatron-lm-2022") s.kernel_efficiency = 1.10;
    megatron_buckets(s);
  } else if (name == "llama3") {
    s.loss_bytes_per_logit = 52, s.max_zero = 2, s.partial_recompute = true, s.short_stages = true;
    s.elementwise_recompute = true, s.tp_async_backward = true;
    s.context_parallel = unsigned(ContextParallel::all_gather);
    megatron_buckets(s);
  } else {
    throw config_error("unknown software '" + name + "'",
                       "use --software tessera, megatron-core, nemo-2024, megatron-lm-2021, megatron-lm-2022 or llama3");
  }
  s.name = name;
  return s;
}

void SoftwareSpec::apply_json(const std::string& json_text, const std::string& where) {
  const json::Value v = json::parse(json_text, where);
  if (!v.is_object()) throw data_error("a software description must be a JSON object", where);
  for (const auto& member : v.members()) {
    const std::string& k = member.key;
    const json::Value& x = member.value;
    if (k == "name") name = x.as_string();
    else if (k == "flash_attention") flash_attention = x.as_bool();
    else if (k == "overlap_grad_reduce") overlap_grad_reduce = x.as_bool();
    else if (k == "overlap_param_gather") overlap_param_gather = x.as_bool();
    else if (k == "tp_comm_overlap") tp_comm_overlap = x.as_bool();
    else if (k == "tp_async_backward") tp_async_backward = x.as_bool();
    else if (k == "p2p_scatter_gather") p2p_scatter_gather = x.as_bool();
    else if (k == "grad_reduce_bytes") grad_reduce_bytes = x.as_double();
    else if (k == "loss_bytes_per_logit") loss_bytes_per_logit = x.as_double();
    else if (k == "max_zero") max_zero = int(x.as_int64());
    else if (k == "uneven_chunks") uneven_chunks = x.as_bool();
    else if (k == "short_stages") short_stages = x.as_bool();
    else if (k == "partial_recompute") partial_recompute = x.as_bool();
    else if (k == "elementwise_recompute") elementwise_recompute = x.as_bool();
    else if (k == "grad_bytes") grad_bytes = x.as_double();
    else if (k == "optimizer_bytes") optimizer_bytes = x.as_double();
    else if (k == "bucket_params") bucket_params = x.as_double();
    else if (k == "bucket_params_per_dp") bucket_params_per_dp = x.as_double();
    else if (k == "context_parallel") context_parallel = parse_context_parallel(x.as_string());
    else if (k == "kernel_efficiency") kernel_efficiency = x.as_double();
    else
      throw data_error("unknown software field '" + k + "'", where,
                       "fields: name flash_attention overlap_grad_reduce overlap_param_gather tp_comm_overlap tp_async_backward "
                       "p2p_scatter_gather grad_reduce_bytes loss_bytes_per_logit max_zero uneven_chunks short_stages "
                       "partial_recompute elementwise_recompute grad_bytes optimizer_bytes bucket_params "
                       "bucket_params_per_dp context_parallel kernel_efficiency");
  }
  if (!(grad_bytes > 0) || !(optimizer_bytes >= 0) || !(bucket_params > 0) || bucket_params_per_dp < 0 || max_zero < 0 ||
      !(kernel_efficiency > 0))
    throw data_error("software sizes must be positive (grad_bytes, bucket_params) or non-negative", where);
}

std::string ClusterSpec::describe() const {
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "%s: %d GPUs (%d per node), %.0f TFLOP/s, %.0f GB at %.2f TB/s, intra %.0f GB/s, inter %.0f GB/s per GPU",
                name.c_str(), gpus, gpus_per_node, peak_flops / 1e12, memory_bytes / 1e9, hbm_bandwidth / 1e12,
                intra_bandwidth / 1e9, inter_bandwidth / 1e9);
  return buf;
}

}  // namespace tessera::plan
