// Preemption and interruption. SIGTERM (a scheduler's preemption or time limit, a spot instance's
// notice), SIGINT (Ctrl-C) and SIGUSR1 (what mpirun forwards to the ranks; Slurm's --signal) ask the
// run to stop after the step in progress: the ranks agree on the step (one small all-reduce per
// step), save and commit a checkpoint, print what was saved, and exit with code 5 (preempted with
// the state saved: tessera-launch passes it on as "requeue"). A second SIGINT or SIGTERM exits at
// once with 128 + the signal, after removing the temporary directory of a save in flight, so no
// half-written checkpoint is left behind.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

#include "tessera/communicator.h"
#include "tessera/context.h"

namespace tessera::program {

constexpr int kExitPreempted = 5;

class StopSignals {
 public:
  // Installs the handlers; `announce`: this rank prints what happens (rank 0).
  explicit StopSignals(bool announce);
  ~StopSignals();  // restores the default handlers
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  int requested() const { return first_.load(); }  // the first signal received, 0 for none
  // Where temporary checkpoint directories (.tmp-step-*) are: a second signal removes them.
  void set_checkpoint_root(const std::string& root);

 private:
  void watch();

  bool announce_;
  int pipe_[2] = {-1, -1};
  std::atomic<int> first_{0};
  std::mutex mutex_;
  std::string checkpoint_root_;
  std::thread thread_;
};

// Collective over the world, once per step on every rank: the signal that stops the run (the
// largest any rank received; 0 when none did), so every rank stops after the same step.
int agreed_stop_signal(Context& ctx, Communicator& world, int mine);

// "SIGTERM", "SIGINT", "SIGUSR1", else "signal N".
std::string signal_label(int sig);

}  // namespace tessera::program
