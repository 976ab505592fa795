// Stragglers: ranks persistently slower than their peers, named while they slow the job.
//
// Each rank measures its own compute time per step (the step's duration minus the time it was
// blocked in communicator waits, so a rank that waits for a slow peer does not look slow). Once per
// window of steps the ranks exchange the median of their window (one small all-gather), and every
// rank compares each rank with the median of the other ranks doing the same work (its pipeline
// stage). A rank at least `slowdown` times slower for `persist` windows in a row is named; it is
// cleared after `persist` windows below `recovered`. Every rank reaches the same verdicts.
//
// Where the job itself puts more threads on a machine than the CPUs they may run on (ranks x
// threads > CPUs, as in tests under mpirun --oversubscribe; on a GPU one thread per rank counts),
// which ranks wait for a CPU is the OS scheduler's choice from step to step, and it can hold the
// same two of four ranks back for whole windows: those ranks are not slow. There, the time the
// training thread waited for a CPU (cpu_wait.h) is taken out of its compute time, on every rank
// if any rank's machine is so full. Elsewhere it is counted: a rank starved by another program
// on its machine (a noisy neighbour) does slow the job, and is named with the share it waited.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tessera/communicator.h"
#include "tessera/context.h"

namespace tessera {

enum class CpuWaitPolicy {
  automatic,   // taken out where the job oversubscribes this rank's machine, counted elsewhere
  counted,
  taken_out,
};

struct StragglerOptions {
  int window = 10;         // steps per measurement (0: off)
  double slowdown = 1.5;   // named at this ratio to its peers' median ...
  double recovered = 1.2;  // ... cleared below this one
  int persist = 2;         // windows in a row, both ways
  CpuWaitPolicy cpu_wait = CpuWaitPolicy::automatic;
};

// One step on one rank, as the trainer measures it.
struct StepTiming {
  double compute_s = 0;   // the step's duration less its waits in communicator operations
  double cpu_wait_s = 0;  // of compute_s: the training thread waiting for a CPU (cpu_wait.h)
};

struct StragglerEvent {
  bool recovered = false;  // false: named slow; true: back to its peers' pace
  int rank = -1;
  std::string host;
  double slowdown = 0;     // its window median over its peers' median, in the window that decided
  double cpu_wait_share = 0;  // of its compute time in that window, waiting for a CPU
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
  // Collective over world (exchanges host and machine names). group_of_rank as for StragglerJudge;
  // this rank's host from host_identity().
  StragglerDetector(Context& ctx, Communicator& world, std::vector<int> group_of_rank, StragglerOptions options);

  bool enabled() const { return options_.window > 0 && world_.size() > 1; }
  // Every rank, every step, in step order: this rank's times of `step`. Collective at the end of
  // each window; returns that window's events (the same on every rank).
  std::vector<StragglerEvent> record(int64_t step, StepTiming timing);
  const std::vector<std::string>& hosts() const { return hosts_; }
  // The last window: each rank's median compute seconds (as compared) and its CPU-wait share.
  const std::vector<double>& last_medians() const { return medians_; }
  const std::vector<double>& last_cpu_wait_shares() const { return cpu_wait_shares_; }
  int64_t last_window_step() const { return last_window_step_; }  // its last step; -1 before the first
  // Whether this rank takes CPU waits out of its compute times, and why, for the run's first lines.
  bool takes_out_cpu_wait() const { return take_out_cpu_wait_; }
  std::string describe_cpu_wait() const;

 private:
  Context& ctx_;
  Communicator& world_;
  StragglerOptions options_;
  StragglerJudge judge_;
  std::vector<std::string> hosts_;
  int threads_competing_ = 1;  // this job's threads that may run on this rank's CPUs, its own included
  int cpus_ = 1;               // the CPUs they may run on
  bool cpu_wait_measured_ = false;  // the kernel gives scheduler statistics (cpu_wait.h)
  bool take_out_cpu_wait_ = false;  // agreed by all ranks
  std::vector<double> window_;  // this rank's compute seconds (as compared) in the current window
  double window_compute_s_ = 0, window_cpu_wait_s_ = 0;  // their sums before any is taken out
  int64_t window_first_ = -1, last_window_step_ = -1;
  std::vector<double> medians_, cpu_wait_shares_;
};

}  // namespace tessera
