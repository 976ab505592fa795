// tessera-train's failure detection, in one place: the watchdog (deadlines learned per section, or
// --timeout), the flight recorder behind the watched world communicator, this rank's heartbeat, the
// check of the peers' heartbeats while waiting for them, and the failure report they fill.
//
// A rank frozen from outside (SIGSTOP, a wedged node) stops beating; the ranks waiting for it in a
// collective see its heartbeat stop within the heartbeat timeout (10 intervals) and exit with code 3
// naming it, or hit the collective's learned deadline first, whichever comes first.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "tessera/communicator.h"
#include "tessera/context.h"
#include "tessera/flight_recorder.h"
#include "tessera/heartbeat.h"
#include "tessera/watchdog.h"

namespace tessera::program {

struct FailureMonitorOptions {
  double timeout_s = 0;            // > 0: --timeout, every section's fixed deadline
  bool learn = true;               // with timeout_s == 0: learned deadlines; neither: watchdog off
  double timeout_floor_s = 10;     // the shortest learned deadline
  double initial_timeout_s = 600;  // a section not learned yet
  double heartbeat_interval_s = 1; // 0: no heartbeat (and no peer check)
  std::string report_dir;          // failure reports and heartbeats ("" : reports printed only, no heartbeat)
  int rank = 0;
  int attempt = 0;
};

class FailureMonitor {
 public:
  explicit FailureMonitor(FailureMonitorOptions options);
  ~FailureMonitor();

  // Wraps the world communicator; from then on a hang aborts it (peers blocked on this rank fail too).
  std::unique_ptr<Communicator> watch(Context& ctx, std::unique_ptr<Communicator> world);

  Watchdog& watchdog() { return *watchdog_; }
  const FlightRecorder& recorder() const { return recorder_; }
  // Seconds this rank has been blocked in communicator waits so far.
  double waited_s() const { return recorder_.waited_s(); }
  // Seconds the training thread has waited for a CPU outside those waits (cpu_wait.h).
  double cpu_wait_outside_waits_s() const { return recorder_.cpu_wait_s() - recorder_.cpu_wait_in_waits_s(); }
  // What the heartbeat says about progress.
  void step_started(int64_t step) { step_.store(step); }
  void step_finished() { ++steps_done_; }

  double heartbeat_timeout_s() const { return 10 * options_.heartbeat_interval_s; }
  // One line for the start of the run: how hangs are detected.
  std::string describe() const;

 private:
  std::vector<StalePeer> stale_peers(double threshold_s);
  void annotate(FailureReport& report);

  FailureMonitorOptions options_;
  FlightRecorder recorder_;
  std::atomic<Communicator*> world_{nullptr};
  std::atomic<int64_t> step_{-1};
  std::atomic<int64_t> steps_done_{0};
  std::unique_ptr<HeartbeatWatch> peers_;  // read by the watchdog thread only
  std::unique_ptr<Watchdog> watchdog_;
  std::unique_ptr<HeartbeatWriter> heartbeat_;
};

}  // namespace tessera::program
