// tessera-train's side of checkpoints: when to save, what to print and log about each completed
// save, fault injection after a commit, and every save and load under the watchdog.
//
// A save returns as soon as this rank's state is copied to host memory; the write runs in the
// background and is committed as soon as every rank's write has ended (poll(), once a step), else by
// the next save (or finish()). A save is reported when it is committed: "checkpoint step N: blocked
// X ms, written in Y ms" on the terminal and
// {"kind":"checkpoint","step","blocked_ms","write_ms","commit_ms","bytes","dir","manifest_crc32c"} in the log.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "tessera/fault_injection.h"
#include "tessera/metrics.h"
#include "tessera/trainer.h"
#include "tessera/watchdog.h"

namespace tessera::program {

struct CheckpointPolicy {
  std::string root;  // empty: no checkpoints
  int every = 0;     // save every N steps (0: only at the end)
  int keep = 3;      // committed checkpoints kept (0: all)
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
  // Collective. Completes the save in flight, if any (before loading, and before exit).
  void finish();
  // Collective. The newest checkpoint that verifies and loads (check_state: the program's own checks
  // of its state, a data error to reject it), loaded into the trainer; nullopt when there is none.
  std::optional<TrainingState> load_latest(const std::function<void(const TrainingState&)>& check_state = {});
  // The directory the last load_latest() loaded ("" for none).
  const std::string& loaded_dir() const { return trainer_.last_checkpoint_load().dir; }

 private:
  void report(const CheckpointStats& done);

  Trainer& trainer_;
  Watchdog& watchdog_;
  CheckpointPolicy policy_;
  const FaultInjector& faults_;
  MetricsLog& log_;
  bool lead_;
  double in_flight_blocked_ms_ = 0;  // the blocked time of the save not yet committed
};

}  // namespace tessera::program
