// The published runs of tests/plan/published.json, planned once per test binary: each case's stated
// layout (the best fitting layout with the stated tp, cp, pp, virtual stages, micro batch, ...) and
// the planner's own best, for the [plan] tests and their printed fit-set and test-set tables.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tessera/plan.h"

namespace tessera::plan::testing {

struct PublishedCase {
  std::string name, set, source, metric;  // set: "fit" or "test"; metric: mfu, hfu_full_recompute, step_time_s
  ModelShape model;
  ClusterSpec cluster;
  SoftwareSpec software;
  int tp = 1, cp = 1, pp = 1, global_batch = 1;
  int micro_batch = 0, virtual_stages = 0;  // 0: planner's choice
  bool recompute_stated = false;
  Recompute recompute = Recompute::none;
  int sp = -1;    // -1: planner's choice; 0: off (e.g. software before sequence parallelism existed)
  int zero = -1;  // -1: planner's choice
  double published = 0;
};

struct PlannedCase {
  PublishedCase c;
  std::optional<Prediction> stated;  // the best fitting layout with the stated fields; none when none fits
  std::optional<Prediction> best;    // the planner's best layout in the case's convention
  // Relative error of the stated layout's prediction, as throughput (step-time cases: published /
  // predicted - 1; MFU cases: predicted / published - 1): positive means predicted faster.
  double error = 0;
  double best_ratio = 0;  // the planner's best against the published figure, as throughput
};

std::vector<PublishedCase> load_published_cases();
// Every case planned (once per process).
const std::vector<PlannedCase>& planned_cases();
// The metric's value for a prediction (step_time_s: seconds).
double metric_value(const PublishedCase& c, const Prediction& p);

// A per-GPU memory figure from a source (published.json's "memory").
struct MemoryCase {
  std::string name, kind, source;  // kind: "activations" (a layout's peak activations) or "model_states"
  PublishedCase layout;            // activations: the layout (metric and published unused)
  double published_gb = 0;
  // model_states: parameters, data-parallel size, the software's bytes, and the expected GB per ZeRO stage.
  double parameters = 0, grad_bytes = 0, optimizer_bytes = 0;
  int dp = 1;
  std::vector<std::pair<int, double>> expect_gb;
};
std::vector<MemoryCase> load_memory_cases();

}  // namespace tessera::plan::testing
