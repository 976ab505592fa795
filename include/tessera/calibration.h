// The calibrated planner: a calibration file (written by tessera-calibrate under mpirun on the machine
// itself) holds measured kernel times at the shapes of a model and batch and measured collective times
// at a few sizes, for N ranks sharing one node. From it the planner predicts the step time of the real
// Trainer for a layout, modelling what Trainer::step does: per layer the kernels and the blocking
// tensor-parallel collectives; the pipeline schedule through simulate() with per-chunk costs (the
// embedding on the first chunk, the head and loss on the last); the tied-embedding gradient sum; the
// data-parallel all-reduce in buckets (MPI progresses only inside calls, so it is counted as exposed);
// the gradient norm and AdamW. With more threads than cores, the ranks computing while others wait in
// the pipeline's bubble run faster by the measured idle_speedup.
//
// Kernel lookup: the exact shape when it was measured, otherwise a least-squares fit of
// time = overhead + work / rate over that op's samples (work: FLOPs for matmuls and attention, bytes
// otherwise). Collectives: time = latency + bytes / bandwidth fitted per (op, group size), plus the
// measured synchronisation cost of a blocking collective between computations (sync_time) for every
// one the Trainer blocks on.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tessera/model_config.h"
#include "tessera/schedule.h"

namespace tessera::plan {

struct OpSample {
  std::string op;              // matmul_forward, matmul_backward, attention_forward, ...
  std::vector<int64_t> dims;   // the op's shape key (see tessera-calibrate)
  double work = 0;             // FLOPs or bytes
  double seconds = 0;
};

struct CollectiveSample {
  std::string op;  // all_reduce, all_gather, reduce_scatter, sendrecv
  int group = 2;
  double bytes = 0;  // the larger buffer (nccl-tests' size)
  double seconds = 0;
};

struct Calibration {
  int ranks = 1, threads = 1;
  int cores = 0;  // CPU cores of the node the ranks shared (0: unknown, e.g. an older file)
  // How much faster ranks compute while half of them wait in a blocking receive than while all
  // compute (1: no effect, e.g. a core per rank; 2: waiting ranks give their cores up entirely).
  double idle_speedup = 1;
  // A real training step's kernels take this many times their back-to-back times: what the kernel
  // samples miss (inputs no longer in cache, the small work between kernels). tessera-calibrate
  // measures it from whole steps of a one-rank replica on every rank at once, against this file's
  // prediction of that step; 1 in an older file. op_time includes it.
  double step_scale = 1;
  std::string device, model;
  int batch_size = 0, seq_len = 0;
  std::vector<OpSample> ops;
  std::vector<CollectiveSample> collectives;

  static Calibration parse(const std::string& json_text, const std::string& where);
  static Calibration load(const std::string& path);
  std::string to_json() const;

  // Seconds for one op inside a step: its sample (exact shape, else the fitted line) x step_scale;
  // config_error when the op was never measured.
  double op_time(const std::string& op, const std::vector<int64_t>& dims, double work) const;
  // Seconds for one collective on a group of `group` ranks (0 for a group of one).
  double collective_time(const std::string& op, int group, double bytes) const;
  // Extra seconds a blocking collective on a group of `group` ranks costs between computations, all
  // groups at once, beyond its idle time (the "sync" samples): with more ranks than cores, the time
  // until a partner the OS has descheduled runs again. 0 for a group of one or an older file.
  double sync_time(int group) const;
};

// One layout of the real Trainer (tessera-train's flags).
struct TrainerLayout {
  int tp = 1, pp = 1, dp = 1;
  bool sp = false;
  int zero = 0;
  int microbatches = 1;
  ScheduleKind schedule = ScheduleKind::one_f_one_b;
  int virtual_stages = 1;
  int batch_size = 1, seq_len = 1;  // per microbatch and data-parallel rank
  int ranks() const { return tp * pp * dp; }
  std::string describe() const;  // "tp=2 pp=2 dp=1 mb=4 1f1b"
};
// "tp=2,pp=2,mb=4,schedule=interleaved,v=2,sp,zero" (tessera-bench-training's --layouts syntax); dp
// from the world size when absent.
TrainerLayout parse_trainer_layout(const std::string& spec, int world, int batch_size, int seq_len);

// Synchronous-training disturbances, through the same simulation.
struct Disturbance {
  int slow_rank = -1;       // pipeline rank that is slower (-1: none)
  double slowdown = 0;      // its computation takes (1 + slowdown) times as long
  double jitter = 0;        // per-step, per-rank relative spread (std. dev.) of computation time
  int jitter_samples = 200; // steps sampled (fixed seed) for the expected step time
  uint64_t seed = 1;
};

struct TrainerPrediction {
  double step_time = 0;     // seconds
  double pipeline_time = 0; // simulated forward/backward makespan
  double bubble_fraction = 0;
  double tp_comm_time = 0;  // blocking TP collectives per step on one rank (inside the pipeline time)
  double p2p_time = 0;      // per message
  double grad_sync_time = 0;  // tied embedding + data-parallel reduction after the pipeline
  double optimizer_time = 0;  // norm + AdamW (+ ZeRO-1 gather)
  double tokens_per_s = 0;
};

// The calibrated model covers GPT-2's pieces (LayerNorm, learned positions, GELU MLP, multi-head
// attention, tied head); config_error naming what differs for another model (a LLaMA), which is
// not calibrated yet.
void require_calibrated_pieces(const ModelConfig& config);

TrainerPrediction predict_trainer_step(const ModelConfig& config, const Calibration& cal, const TrainerLayout& layout,
                                       const Disturbance& disturbance = {});

}  // namespace tessera::plan

namespace tessera::plan {

// The kernels one rank of the Trainer runs for `config` at batch B, sequence T and tensor-parallel
// degree tp (with and without sequence parallelism), as op samples with their dims and work (seconds
// 0): what tessera-calibrate measures and predict_trainer_step looks up.
std::vector<OpSample> trainer_op_shapes(const ModelConfig& config, int batch_size, int seq_len, int tp);

}  // namespace tessera::plan

namespace tessera {
class Communicator;
class Context;
}  // namespace tessera

namespace tessera::plan {

struct CalibrateOptions {
  int reps = 7;                        // timed repetitions per sample (the median counts)
  std::vector<int> tp_degrees;         // empty: 1, 2, 4, ... up to the world size, dividing the heads
  std::vector<double> collective_bytes = {4096, 65536, 524288, 4194304};
};

// Collective over `world` (every rank runs the same kernels at the same time, as in training, so the
// times include the ranks' contention for the machine's cores and memory). Returns on every rank the
// mean over ranks of each sample's median time.
Calibration measure_calibration(Context& ctx, Communicator& world, const ModelConfig& config, int batch_size,
                                int seq_len, const CalibrateOptions& options = {});

}  // namespace tessera::plan

namespace tessera::plan {

// One line of tessera-bench-training --json (kind "throughput").
struct MeasuredStep {
  std::string layout;  // ParallelLayout::describe()
  int ranks = 1;
  double ms = 0;       // median step time
};
std::vector<MeasuredStep> read_throughput_log(const std::string& path);

}  // namespace tessera::plan
