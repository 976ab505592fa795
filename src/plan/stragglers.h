// The per-stage pace of synchronous training with slow or jittery GPUs, shared by the cluster
// planner (predict_stragglers) and the calibrated trainer model (predict_trainer_step).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace tessera::plan::detail {

// One step's computation factor per pipeline stage: the slowest of the stage's `per_stage` members,
// each 1 + jitter x N(0, 1) (no jitter: 1), member `slow_member` of stage `slow_stage` (1 + slowdown)
// times slower (-1: none), every factor at least 0.1.
std::vector<double> slowest_per_stage(int stages, int64_t per_stage, double jitter, int slow_stage, int64_t slow_member,
                                      double slowdown, std::mt19937_64& rng, std::normal_distribution<double>& normal);

}  // namespace tessera::plan::detail
