#include "tessera/stragglers.h"

#include <algorithm>

#include "tessera/error.h"
#include "tessera/host.h"
#include "tessera/host_collectives.h"

namespace tessera {

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

StragglerJudge::StragglerJudge(std::vector<int> group_of_rank, StragglerOptions options)
    : group_of_rank_(std::move(group_of_rank)), options_(options), state_(group_of_rank_.size()),
      ratios_(group_of_rank_.size(), 0.0) {
  if (options_.slowdown <= 1 || options_.recovered < 1 || options_.recovered > options_.slowdown || options_.persist < 1)
    throw config_error("straggler thresholds need slowdown > 1, 1 <= recovered <= slowdown and persist >= 1",
                       "use e.g. --straggler-slowdown 1.3");
}

std::vector<StragglerEvent> StragglerJudge::judge(const std::vector<double>& medians, int64_t first_step,
                                                  int64_t last_step) {
  TESSERA_CHECK(medians.size() == group_of_rank_.size(), "one median per rank");
  std::vector<StragglerEvent> events;
  const size_t n = medians.size();
  for (size_t r = 0; r < n; ++r) {
    std::vector<double> others;
    for (size_t q = 0; q < n; ++q)
      if (q != r && group_of_rank_[q] == group_of_rank_[r]) others.push_back(medians[q]);
    const double reference = median(others);
    ratios_[r] = others.empty() || reference <= 0 ? 0.0 : medians[r] / reference;
    State& s = state_[r];
    if (others.empty()) continue;
    // Past the threshold that would change the verdict: slower than `slowdown` while not named,
    // faster than `recovered` while named. In between, the run of windows starts over.
    const bool toward_change = s.named ? ratios_[r] < options_.recovered : ratios_[r] >= options_.slowdown;
    if (!toward_change) {
      s.run = 0;
      continue;
    }
    if (s.run++ == 0) s.run_since = first_step;
    if (s.run < options_.persist) continue;
    s.named = !s.named;
    s.run = 0;
    StragglerEvent e;
    e.recovered = !s.named;
    e.rank = int(r);
    e.slowdown = ratios_[r];
    e.step = last_step;
    e.since_step = s.run_since;
    events.push_back(e);
  }
  return events;
}

StragglerDetector::StragglerDetector(Context& ctx, Communicator& world, std::vector<int> group_of_rank,
                                     StragglerOptions options)
    : ctx_(ctx), world_(world), options_(options), judge_(std::move(group_of_rank), options) {
  hosts_ = host_all_gather_strings(ctx, world, host_identity());
}

std::vector<StragglerEvent> StragglerDetector::record(int64_t step, double compute_s) {
  if (!enabled()) return {};
  if (window_.empty()) window_first_ = step;
  window_.push_back(compute_s);
  if (int(window_.size()) < options_.window) return {};
  // The median of the window: one slow step (a page fault storm, a checkpoint copy) is not a straggler.
  const size_t n = size_t(world_.size());
  const float mine = float(median(window_));
  window_.clear();
  std::vector<float> all(n, 0.0f);
  host_all_gather(ctx_, world_, &mine, sizeof(mine), all.data());
  medians_.assign(all.begin(), all.end());
  std::vector<StragglerEvent> events = judge_.judge(medians_, window_first_, step);
  for (StragglerEvent& e : events) e.host = hosts_[size_t(e.rank)];
  return events;
}

}  // namespace tessera
