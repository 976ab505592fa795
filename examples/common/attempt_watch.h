// tessera-launch's own view of a running attempt: the ranks' heartbeats (heartbeat.h) in the
// failure directory, and the wall clock. It ends an attempt that no rank's watchdog ends itself:
//   heartbeat: a rank that beat before has been silent for --heartbeat-timeout seconds (it died or
//              froze, and its peers could not say so: they froze too, or their watchdogs are off);
//   stall:     ranks beat but no step has finished for --stall-timeout seconds (a main thread hung
//              with --timeout 0);
//   attempt:   the attempt has run --attempt-timeout seconds (any command, heartbeats or not);
//   exit:      every rank has said it exited (its last heartbeat) but the command has not ended for
//              max(30 s, --heartbeat-timeout): a rank stuck in the launcher's teardown.
// Each says which limit applied and which rank it concerns.
#pragma once

#include <chrono>
#include <string>

#include "tessera/heartbeat.h"

namespace tessera::program {

struct LaunchLimits {
  double heartbeat_timeout_s = 60;  // 0: off
  double stall_timeout_s = 1800;    // 0: off
  double attempt_timeout_s = 0;     // 0: off
};

struct HangVerdict {
  std::string limit;    // "heartbeat", "stall" or "attempt"; empty: no hang
  std::string message;  // one line: which limit, which rank and host, since when
  int rank = -1;
  std::string host;
};

class AttemptWatch {
 public:
  AttemptWatch(std::string failure_dir, int attempt, LaunchLimits limits);
  // Call about once a second while the attempt runs.
  HangVerdict check();
  // Heartbeats read so far, by rank (the host of a rank that died, for example).
  const std::map<int, Heartbeat>& heartbeats() const { return watch_.latest(); }
  // "heartbeat timeout 60 s, stall timeout 1800 s, no attempt limit"
  static std::string describe(const LaunchLimits& limits);

 private:
  double elapsed() const;

  std::string dir_;
  LaunchLimits limits_;
  HeartbeatWatch watch_;
  std::chrono::steady_clock::time_point started_;
  int64_t progress_ = -1;   // steps finished, summed over the ranks seen
  double progress_at_ = 0;  // when it last grew (seconds into the attempt)
  bool warned_silent_ = false;
  double all_exited_at_ = -1;  // when every rank seen had exited (seconds into the attempt)
};

}  // namespace tessera::program
