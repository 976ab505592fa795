// Pipeline simulations shared by the layouts of one planning run. simulate() is exact for given costs;
// makespans scale linearly with the costs, so a run is keyed by the schedule and the backward/forward
// and p2p/forward ratios (1% logarithmic bins) and rescaled by the forward cost.
#pragma once

#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

#include "tessera/plan.h"
#include "tessera/schedule.h"

namespace tessera::plan::detail {

struct SimSummary {
  double makespan = 0, bubble_fraction = 0;  // for forward cost 1
  int peak_in_flight = 0;
  std::vector<double> rank_finish;  // for forward cost 1
  double backward = 0, p2p = 0;     // the ratios actually simulated
};

class SimCache {
 public:
  // Simulation for forward cost 1, backward cost `backward`, p2p cost `p2p` (binned), of the schedule.
  const SimSummary& get(ScheduleKind kind, int stages, int virtual_stages, int microbatches, double backward, double p2p);
  int64_t simulations() const { return simulations_; }

 private:
  std::map<std::tuple<int, int, int, int, int, int>, SimSummary> cache_;
  std::map<std::tuple<int, int, int, int>, PipelineSchedule> schedules_;
  int64_t simulations_ = 0;
};

// Layers in the largest model chunk of the layout (pp x virtual_stages chunks, the slowest counts).
int layers_per_chunk(const ModelShape& m, const Layout& l);
// Ranks holding the same weights, over which gradients are reduced and ZeRO shards: dp x cp.
int gradient_group(const Layout& l);

// Whether another context-parallel variant the software has (and the layout allows) exchanges K/V
// for less time per layer than l.cp_kind: the rest of the prediction is the same.
bool context_parallel_dominated(const ModelShape& m, const ClusterSpec& c, const Layout& l, const SoftwareSpec& sw);

// predict() with a shared cache (plan() predicts thousands of layouts).
Prediction predict_cached(const ModelShape& m, const ClusterSpec& c, const Layout& l, int global_batch,
                          const SoftwareSpec& sw, SimCache& cache);

}  // namespace tessera::plan::detail
