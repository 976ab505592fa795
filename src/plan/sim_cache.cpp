#include "plan/sim_cache.h"

#include <algorithm>
#include <cmath>

namespace tessera::plan::detail {

namespace {
constexpr double kBin = 0.01;
int bin(double ratio) { return ratio <= 1e-4 ? -100000 : int(std::lround(std::log(ratio) / std::log1p(kBin))); }
double unbin(int k) { return k == -100000 ? 0.0 : std::pow(1.0 + kBin, k); }
}  // namespace

const SimSummary& SimCache::get(ScheduleKind kind, int stages, int virtual_stages, int microbatches, double backward,
                                double p2p) {
  const int kb = bin(backward), kp = bin(p2p);
  const auto key = std::make_tuple(int(kind), stages, virtual_stages, microbatches, kb, kp);
  auto it = cache_.find(key);
  if (it != cache_.end()) return it->second;
  SimSummary s;
  s.backward = unbin(kb), s.p2p = unbin(kp);
  // The same schedule is simulated at many cost ratios, by layouts the planner enumerates one after
  // another: generate (and check) it once, keeping the last few (long schedules are megabytes).
  auto sched = schedules_.find(std::make_tuple(int(kind), stages, virtual_stages, microbatches));
  if (sched == schedules_.end() && schedules_.size() >= 16) schedules_.clear();
  if (sched == schedules_.end())
    sched = schedules_.emplace(std::make_tuple(int(kind), stages, virtual_stages, microbatches),
                               make_schedule(kind, stages, virtual_stages, microbatches)).first;
  const PipelineSchedule& schedule = sched->second;
  SimulationCosts costs;
  costs.forward = 1.0, costs.backward = s.backward, costs.p2p = s.p2p;
  const SimulationResult r = simulate(schedule, costs);
  ++simulations_;
  s.makespan = r.makespan, s.bubble_fraction = r.bubble_fraction, s.peak_in_flight = r.peak_in_flight;
  for (const auto& finish : r.finish) s.rank_finish.push_back(finish.empty() ? 0.0 : *std::max_element(finish.begin(), finish.end()));
  return cache_.emplace(key, std::move(s)).first->second;
}

}  // namespace tessera::plan::detail
