// Card calibration: what one GPU type (or this CPU) actually sustains, measured on a node of that
// type by `tessera-calibrate --card --out card.json` and used by `tessera-plan --card-calibration
// card.json` instead of the cluster preset's constants: GEMM rates at a few shapes, memory
// bandwidth, fused attention forward and backward, and collective bus bandwidths where measured.
//
// The file (JSON, "format": "tessera-card-calibration", "version": 1):
//   "card" (the device's name), "device" ("cuda" or "cpu"),
//   "gemm": [{"m", "n", "k", "dtype", "tflops"}]          Y[m x n] = X[m x k] W[k x n], 2mnk FLOPs
//   "hbm_gbps": device-to-device copy bandwidth, bytes read plus bytes written per second
//   "attention": [{"batch", "seq", "heads", "head_dim", "dtype", "forward_tflops", "backward_tflops"}]
//       causal; FLOPs as FlashAttention counts them: forward 2 x 2 b s^2 h d / 2, backward 2.5 x that
//   "collectives": [{"op", "ranks", "per_node", "bytes", "seconds"}]  nccl-tests' size and time
// Every number is a measurement; missing sections leave the preset's constants as they are.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tessera/plan.h"

namespace tessera {
class Communicator;
class Context;
}  // namespace tessera

namespace tessera::plan {

struct CardGemm {
  int64_t m = 0, n = 0, k = 0;
  std::string dtype;  // "bf16" (what the planner models), "f32"
  double tflops = 0;
};

struct CardAttention {
  int64_t batch = 0, seq = 0, heads = 0, head_dim = 0;
  std::string dtype;
  double forward_tflops = 0, backward_tflops = 0;
};

struct CardCollective {
  std::string op;  // all_reduce, all_gather, reduce_scatter
  int ranks = 0, per_node = 0;
  double bytes = 0, seconds = 0;
  double bus_bandwidth() const;  // bytes/s as nccl-tests reports busbw
};

struct CardCalibration {
  std::string card, device;
  double hbm_gbps = 0;
  std::vector<CardGemm> gemm;
  std::vector<CardAttention> attention;
  std::vector<CardCollective> collectives;

  // data_error naming `where` (and the field) for a malformed file or an implausible number.
  static CardCalibration parse(const std::string& json_text, const std::string& where);
  static CardCalibration load(const std::string& path);
  std::string to_json() const;

  // Replaces c's constants with what was measured (relative to c's nominal peak and bandwidths, so
  // MFU keeps its meaning): gemm_efficiency and gemm_half_dim fitted to the bf16 GEMMs (least
  // squares over the model's shape terms), hbm_efficiency, attention_efficiency and
  // attention_backward_efficiency from the bf16 attention, intra- and inter-node bandwidth and
  // latency from the collectives. Returns one line per change. config_error when the file has no
  // bf16 measurement to apply (e.g. written on a CPU, which measures f32).
  std::vector<std::string> apply_to(ClusterSpec& c) const;
};

struct CardMeasureOptions {
  int reps = 5;        // timed repetitions per sample (the median counts)
  bool quick = false;  // small shapes and buffers (a CPU smoke run), not the card's sustained rates
};

// Measures this process's device (bf16 on a GPU, f32 on the CPU): GEMMs, a copy, attention, and,
// when `world` has more than one rank, its collectives (every rank must call it). Rank 0's numbers.
CardCalibration measure_card(Context& ctx, Communicator* world, const CardMeasureOptions& options = {});

}  // namespace tessera::plan
