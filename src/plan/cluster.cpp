// Cluster presets and their JSON overrides.
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
    // Typical cuBLAS throughput on transformer GEMM shapes, FlashAttention-2's reported fraction.
    c.gemm_efficiency = 0.65, c.attention_efficiency = 0.6;
  } else if (name == "h100") {
    // DGX H100: 989 TFLOP/s dense bf16, 3.35 TB/s HBM3, NVLink 4 900 GB/s bidirectional,
    // 8 x NDR 400 Gb/s InfiniBand (50 GB/s per GPU).
    c.peak_flops = 989e12, c.memory_bytes = 80e9, c.hbm_bandwidth = 3.35e12;
    c.intra_bandwidth = 450e9, c.inter_bandwidth = 50e9;
    c.gemm_efficiency = 0.65, c.attention_efficiency = 0.5;
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
    else if (k == "hbm_efficiency") hbm_efficiency = x.as_double();
    else if (k == "link_efficiency") link_efficiency = x.as_double();
    else if (k == "memory_reserved_gb") memory_reserved_bytes = x.as_double() * 1e9;
    else
      throw data_error("unknown cluster field '" + k + "'", where,
                       "fields: name gpus gpus_per_node peak_tflops memory_gb hbm_gbps intra_gbps intra_latency_us "
                       "inter_gbps inter_latency_us gemm_efficiency gemm_half_dim attention_efficiency "
                       "hbm_efficiency link_efficiency memory_reserved_gb");
  }
}

void ClusterSpec::validate() const {
  if (gpus < 1) throw config_error("the cluster needs at least one GPU", "set --gpus");
  if (gpus_per_node < 1) throw config_error("--gpus-per-node must be positive", "set --gpus-per-node");
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
