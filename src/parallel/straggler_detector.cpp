#include "tessera/stragglers.h"

#include <algorithm>
#include <array>
#include <cstdint>

#include "tessera/cpu_wait.h"
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

namespace {

// A rank's CPU set as bits (affinity masks hold CPU_SETSIZE of them), exchanged as plain words.
constexpr int kMaxCpus = 1024;
using CpuMask = std::array<uint64_t, kMaxCpus / 64>;

CpuMask cpu_mask(const std::vector<int>& cpus) {
  CpuMask mask{};
  for (int c : cpus)
    if (c >= 0 && c < kMaxCpus) mask[size_t(c) / 64] |= uint64_t(1) << (c % 64);
  return mask;
}

// Who competes for this rank's CPUs: the job's ranks on the same machine (by its real name: tests
// give ranks of one machine distinct host identities) whose CPU sets overlap this one's. Their
// threads and the CPUs they may run on (the union of their sets, bounded by a cgroup quota).
// Collective over world.
struct CpuSharing {
  int threads = 0, cpus = 0;
};
CpuSharing cpu_sharing(Context& ctx, Communicator& world) {
  const std::string machine = machine_name();
  const CpuMask cpus = cpu_mask(allowed_cpu_list());
  // On a GPU the OpenMP threads mostly sleep: the training thread is the one that runs.
  const int32_t threads = ctx.device() == Device::cpu ? std::max(1, ctx.cpu_threads()) : 1;
  const std::vector<std::string> machines = host_all_gather_strings(ctx, world, machine);
  std::vector<CpuMask> masks(size_t(world.size()));
  host_all_gather(ctx, world, &cpus, sizeof(cpus), masks.data());
  std::vector<int32_t> thread_counts(size_t(world.size()), 0);
  host_all_gather(ctx, world, &threads, sizeof(threads), thread_counts.data());
  CpuSharing sharing;
  CpuMask shared{};
  for (size_t r = 0; r < machines.size(); ++r) {
    bool overlaps = false;
    for (size_t w = 0; w < cpus.size(); ++w) overlaps |= (masks[r][w] & cpus[w]) != 0;
    if (machines[r] != machine || !overlaps) continue;
    sharing.threads += thread_counts[r];
    for (size_t w = 0; w < cpus.size(); ++w) shared[w] |= masks[r][w];
  }
  int shared_cpus = 0;
  for (uint64_t word : shared) shared_cpus += __builtin_popcountll(word);
  const int quota = cgroup_cpu_quota();
  sharing.cpus = quota > 0 ? std::min(shared_cpus, quota) : shared_cpus;
  return sharing;
}

}  // namespace

StragglerDetector::StragglerDetector(Context& ctx, Communicator& world, std::vector<int> group_of_rank,
                                     StragglerOptions options)
    : ctx_(ctx), world_(world), options_(options), judge_(std::move(group_of_rank), options) {
  hosts_ = host_all_gather_strings(ctx, world, host_identity());
  const CpuSharing sharing = cpu_sharing(ctx, world);
  threads_competing_ = sharing.threads;
  cpus_ = sharing.cpus;
  cpu_wait_measured_ = CpuWaitClock().available();
  bool take_out = cpu_wait_measured_ && (options_.cpu_wait == CpuWaitPolicy::taken_out ||
                                         (options_.cpu_wait == CpuWaitPolicy::automatic && threads_competing_ > cpus_));
  // One rule for all: compute times with the waits taken out are not compared with times that
  // include them. Where any rank's machine is oversubscribed, every rank takes them out.
  std::vector<float> any = {take_out ? 1.0f : 0.0f};
  host_all_reduce(ctx, world, any, ReduceOp::max);
  take_out_cpu_wait_ = any[0] > 0;
}

std::string StragglerDetector::describe_cpu_wait() const {
  if (!cpu_wait_measured_) return "time spent waiting for a CPU is not measured here (no scheduler statistics)";
  auto count = [](int n, const char* what) { return std::to_string(n) + " " + what + (n == 1 ? "" : "s"); };
  const std::string layout = "this job runs " + count(threads_competing_, "thread") + " on this rank's " + count(cpus_, "CPU");
  const bool full_here = threads_competing_ > cpus_ || options_.cpu_wait == CpuWaitPolicy::taken_out;
  if (take_out_cpu_wait_)
    return (full_here ? layout : layout + ", but another rank's machine has more of its threads than CPUs") +
           ", so time spent waiting for a CPU is not counted as compute";
  return layout + "; time spent waiting for a CPU counts (a rank starved by another program is slow)";
}

std::vector<StragglerEvent> StragglerDetector::record(int64_t step, StepTiming timing) {
  if (!enabled()) return {};
  if (window_.empty()) window_first_ = step;
  const double cpu_wait = std::clamp(timing.cpu_wait_s, 0.0, std::max(0.0, timing.compute_s));
  window_.push_back(take_out_cpu_wait_ ? timing.compute_s - cpu_wait : timing.compute_s);
  window_compute_s_ += std::max(0.0, timing.compute_s);
  window_cpu_wait_s_ += cpu_wait;
  if (int(window_.size()) < options_.window) return {};
  // The median of the window: one slow step (a page fault storm, a checkpoint copy) is not a straggler.
  const size_t n = size_t(world_.size());
  const float mine[2] = {float(median(window_)),
                         float(window_compute_s_ > 0 ? window_cpu_wait_s_ / window_compute_s_ : 0.0)};
  window_.clear();
  window_compute_s_ = window_cpu_wait_s_ = 0;
  std::vector<float> all(2 * n, 0.0f);
  host_all_gather(ctx_, world_, mine, sizeof(mine), all.data());
  last_window_step_ = step;
  medians_.resize(n);
  cpu_wait_shares_.resize(n);
  for (size_t r = 0; r < n; ++r) {
    medians_[r] = all[2 * r];
    cpu_wait_shares_[r] = all[2 * r + 1];
  }
  std::vector<StragglerEvent> events = judge_.judge(medians_, window_first_, step);
  for (StragglerEvent& e : events) {
    e.host = hosts_[size_t(e.rank)];
    e.cpu_wait_share = cpu_wait_shares_[size_t(e.rank)];
  }
  return events;
}

}  // namespace tessera
