// Stragglers and jitter at cluster scale through the pipeline simulation (plan.h).
#include <algorithm>
#include <cmath>
#include <random>

#include "tessera/error.h"
#include "tessera/plan.h"
#include "tessera/schedule.h"

namespace tessera::plan {

StragglerEstimate predict_stragglers(const Prediction& p, const StragglerModel& s) {
  if (s.slowdown < 0 || s.jitter < 0 || s.samples < 1)
    throw config_error("straggler model: slowdown and jitter must be non-negative, samples positive",
                       "e.g. --straggler 5 (percent) or --jitter 0.02");
  const Layout& l = p.layout;
  const PipelineSchedule schedule = make_schedule(l.schedule, l.pp, l.virtual_stages, l.microbatches);
  SimulationCosts costs;
  costs.forward = p.chunk_forward, costs.backward = p.chunk_backward, costs.p2p = p.p2p_transfer;
  // The head and loss run on the last stage for every microbatch, at that stage's pace.
  auto step = [&](const std::vector<double>& factor) {
    SimulationVariation v;
    v.rank_factor = factor;
    const SimulationResult r = simulate(schedule, costs, v);
    return r.makespan + l.microbatches * p.head_per_microbatch * factor.back() + p.after_pipeline;
  };
  StragglerEstimate e;
  e.base_step_time = step(std::vector<double>(size_t(l.pp), 1.0));
  const bool random = s.jitter > 0;
  const int samples = random ? s.samples : 1;
  const int64_t per_stage = int64_t(l.tp) * l.dp;
  std::mt19937_64 rng(s.seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  double sum = 0;
  for (int k = 0; k < samples; ++k) {
    std::vector<double> factor(size_t(l.pp), 1.0);
    for (int st = 0; st < l.pp; ++st) {
      double worst = 0;
      for (int64_t g = 0; g < (random ? per_stage : 1); ++g) {
        double f = random ? std::max(0.1, 1.0 + s.jitter * normal(rng)) : 1.0;
        if (st == 0 && g == 0) f *= 1.0 + s.slowdown;
        worst = std::max(worst, f);
      }
      factor[size_t(st)] = worst;
    }
    sum += step(factor);
  }
  e.step_time = sum / samples;
  return e;
}

}  // namespace tessera::plan
