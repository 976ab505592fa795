// tessera-train's side of checkpoints: when to save, what to print and log about each completed
// save, fault injection after a commit, and every save and load under the watchdog.
//
// A save returns as soon as this rank's state is copied to host memory; the write runs in the
// background and is committed as soon as every rank's write has ended (poll(), once a step), else by
// the next save (or finish()). A save is reported when it is committed: "checkpoint step N: blocked
// X ms, written in Y ms" on the terminal and
// {"kind":"checkpoint","step","blocked_ms","write_ms","commit_ms","bytes","dir","manifest_crc32c"} in the log. A
// save that fails (a full disk, an I/O error) is never committed: it is reported with the file and the
// free space, {"kind":"checkpoint_failed","step","error","action"} is logged, and training goes on
// (the next save retries) or stops with exit code 2, as --on-save-error says.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "tessera/error.h"
#include "tessera/fault_injection.h"
#include "tessera/metrics.h"
#include "tessera/trainer.h"
#include "tessera/watchdog.h"

namespace tessera::program {

struct CheckpointPolicy {
  std::string root;  // empty: no checkpoints
  int every = 0;     // save every N steps (0: only at the end)
  int keep = 3;      // committed checkpoints kept (0: all)
  bool stop_on_error = false;  // --on-save-error stop: a save that fails ends the run (exit code 2)
};

class Checkpointer {
 public:
  // log: written on the lead rank (it may be opened after construction; it is read at each report).
  Checkpointer(Trainer& trainer, Watchdog& watchdog, CheckpointPolicy policy, const FaultInjector& faults,
               MetricsLog& log, bool lead);

  bool enabled() const { return !policy_.root.empty(); }
  const std::string& root() const { return policy_.root; }
  // Whether to save once `steps_done` of `total_steps` steps are done: every N steps and at the end.
  bool due(int64_t steps_done, int64_t total_steps) const;

  // Collective. Completes the save in flight (reporting it), then starts this one.
  void save(const TrainingState& state);
  // Collective; once a step. Commits the save in flight (reporting it) if every rank's write has
  // ended; otherwise returns at once.
  void poll(int64_t step);
  // Collective. Completes the save in flight, if any (before loading, and before exit). A failure
  // of the last save of the run ends it (exit code 2) whatever --on-save-error says.
  void finish(bool last_of_run = false);
  int64_t last_saved_step() const { return last_saved_step_; }   // of the last save started (-1: none)
  const std::string& last_committed_dir() const { return last_committed_dir_; }
  // Collective. The newest checkpoint that verifies and loads (check_state: the program's own checks
  // of its state, a data error to reject it), loaded into the trainer; nullopt when there is none.
  std::optional<TrainingState> load_latest(const std::function<void(const TrainingState&)>& check_state = {});
  // The directory the last load_latest() loaded ("" for none).
  const std::string& loaded_dir() const { return trainer_.last_checkpoint_load().dir; }

 private:
  void report(const CheckpointStats& done);
  // Completes the save in flight with `complete` (a trainer call) and reports it; a save that could
  // not be written or committed is reported, its temporary directory removed and, unless the policy
  // says stop (or it is the run's last), training goes on without it: `latest` still names the
  // previous checkpoint.
  template <typename Complete>
  void completing(Complete complete, bool last_of_run = false);
  void failed(const Error& error, bool last_of_run);

  Trainer& trainer_;
  Watchdog& watchdog_;
  CheckpointPolicy policy_;
  const FaultInjector& faults_;
  MetricsLog& log_;
  bool lead_;
  double in_flight_blocked_ms_ = 0;  // the blocked time of the save not yet committed
  int64_t in_flight_step_ = -1;
  int64_t last_saved_step_ = -1;
  std::string last_committed_dir_;
};

}  // namespace tessera::program
