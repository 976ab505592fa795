// Stragglers and jitter at cluster scale through the pipeline simulation (plan.h).
#include <algorithm>
#include <cmath>
#include <random>

#include "plan/stragglers.h"
#include "tessera/error.h"
#include "tessera/plan.h"
#include "tessera/schedule.h"

namespace tessera::plan {

namespace detail {

std::vector<double> slowest_per_stage(int stages, int64_t per_stage, double jitter, int slow_stage, int64_t slow_member,
                                      double slowdown, std::mt19937_64& rng, std::normal_distribution<double>& normal) {
  std::vector<double> factor(size_t(stages), 1.0);
  for (int st = 0; st < stages; ++st) {
    double worst = 0;
    for (int64_t g = 0; g < per_stage; ++g) {
      double f = 1.0 + (jitter > 0 ? jitter * normal(rng) : 0.0);
      if (st == slow_stage && g == slow_member) f *= 1.0 + slowdown;
      worst = std::max(worst, std::max(0.1, f));
    }
    factor[size_t(st)] = worst;
  }
  return factor;
}

}  // namespace detail

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
  // Without jitter only the slow GPU matters: one member per stage stands for all.
  const bool random = s.jitter > 0;
  const int samples = random ? s.samples : 1;
  const int64_t per_stage = random ? int64_t(l.tp) * l.cp * l.dp : 1;
  std::mt19937_64 rng(s.seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  double sum = 0;
  for (int k = 0; k < samples; ++k)
    sum += step(detail::slowest_per_stage(l.pp, per_stage, s.jitter, 0, 0, s.slowdown, rng, normal));
  e.step_time = sum / samples;
  return e;
}

}  // namespace tessera::plan
