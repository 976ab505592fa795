// Checkpoint interval and goodput under failures (Young 1974, Daly 2006).
#include <algorithm>
#include <cmath>

#include "tessera/error.h"
#include "tessera/plan.h"

namespace tessera::plan {

double young_daly_interval(double blocking_s, double mtbf_s) { return std::sqrt(2.0 * blocking_s * mtbf_s); }

FailureEstimate estimate_failures(const FailureModel& f, int gpus) {
  if (gpus < 1 || !(f.gpu_hours_per_failure > 0) || f.checkpoint_blocking_s < 0 || f.restart_s < 0)
    throw config_error("failure model needs gpus >= 1, a positive failure rate and non-negative times",
                       "check --gpu-hours-per-failure, --checkpoint-blocking, --restart");
  FailureEstimate e;
  e.gpus = gpus;
  e.mtbf_s = f.gpu_hours_per_failure * 3600.0 / gpus;
  // A new checkpoint cannot start before the previous one is durable.
  e.interval_s = std::max(young_daly_interval(f.checkpoint_blocking_s, e.mtbf_s), f.checkpoint_total_s);
  // Per interval of useful work tau: the blocking save delta; per failure (one per M of wall time):
  // the restart R plus, on average, half a segment (tau + delta) lost.
  const double tau = e.interval_s, delta = f.checkpoint_blocking_s;
  const double lost_per_failure = f.restart_s + 0.5 * (tau + delta);
  e.effective_ratio = std::max(0.0, (tau / (tau + delta)) * (1.0 - lost_per_failure / e.mtbf_s));
  return e;
}

}  // namespace tessera::plan
