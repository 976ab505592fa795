// Stragglers: ranks persistently slower than their peers, named while they slow the job.
//
// Each rank measures its own compute time per step (the step's duration minus the time it was
// blocked in communicator waits, so a rank that waits for a slow peer does not look slow). Once per
// window of steps the ranks exchange the median of their window (one small all-gather), and every
// rank compares each rank with the median of the other ranks doing the same work (its pipeline
// stage). A rank at least `slowdown` times slower for `persist` windows in a row is named; it is
// cleared after `persist` windows below `recovered`. Every rank reaches the same verdicts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tessera/communicator.h"
#include "tessera/context.h"

namespace tessera {

struct StragglerOptions {
  int window = 10;         // steps per measurement (0: off)
  double slowdown = 1.5;   // named at this ratio to its peers' median ...
  double recovered = 1.2;  // ... cleared below this one
  int persist = 2;         // windows in a row, both ways
};

struct StragglerEvent {
  bool recovered = false;  // false: named slow; true: back to its peers' pace
  int rank = -1;
  std::string host;
  double slowdown = 0;     // its window median over its peers' median, in the window that decided
  int64_t step = -1;       // the last step of that window
  int64_t since_step = -1; // first step of the first window of the run of windows that decided
};

// The verdicts of one window (pure: tests call it without ranks). medians[r]: rank r's median
// compute seconds; group_of_rank[r]: its peer group.
class StragglerJudge {
 public:
  StragglerJudge(std::vector<int> group_of_rank, StragglerOptions options);
  std::vector<StragglerEvent> judge(const std::vector<double>& medians, int64_t first_step, int64_t last_step);
  // The current ratio of each rank to its peers (0 for a rank without peers).
  const std::vector<double>& ratios() const { return ratios_; }
  bool named(int rank) const { return state_[size_t(rank)].named; }

 private:
  struct State {
    bool named = false;
    int run = 0;             // windows in a row past the threshold that would change `named`
    int64_t run_since = -1;  // first step of that run
  };
  std::vector<int> group_of_rank_;
  StragglerOptions options_;
  std::vector<State> state_;
  std::vector<double> ratios_;
};

class StragglerDetector {
 public:
  // Collective over world (exchanges host names). group_of_rank as for StragglerJudge; this rank's
  // host from host_identity().
  StragglerDetector(Context& ctx, Communicator& world, std::vector<int> group_of_rank, StragglerOptions options);

  bool enabled() const { return options_.window > 0 && world_.size() > 1; }
  // Every rank, every step, in step order: this rank's compute seconds of `step`. Collective at
  // the end of each window; returns that window's events (the same on every rank).
  std::vector<StragglerEvent> record(int64_t step, double compute_s);
  const std::vector<std::string>& hosts() const { return hosts_; }
  const std::vector<double>& last_medians() const { return medians_; }

 private:
  Context& ctx_;
  Communicator& world_;
  StragglerOptions options_;
  StragglerJudge judge_;
  std::vector<std::string> hosts_;
  std::vector<double> window_;  // this rank's compute seconds in the current window
  int64_t window_first_ = -1;
  std::vector<double> medians_;
};

}  // namespace tessera
