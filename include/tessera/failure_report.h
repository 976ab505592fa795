// Failure reports: what a rank's watchdog leaves behind when it declares a hang or a peer failure,
// for tessera-launch (which rank and host to blame, which host to leave out) and tessera-diagnose.
//
// <dir>/failure-rank-<R>.json: rank, host, pid, attempt, step, the section whose deadline expired
// (or in which the rank waited when a peer's heartbeat stopped), how long it waited, its deadline
// and how that deadline was set, the sections open, the peers whose heartbeats had stopped, and
// the rank's flight recorder (its last communicator operations).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tessera/flight_recorder.h"

namespace tessera {

struct StalePeer {
  int rank = -1;
  std::string host;
  double silent_s = 0;  // how long its heartbeat had not changed
  int64_t step = -1;    // where its last heartbeat said it was
  std::string section;
};

struct FailureReport {
  int rank = -1;
  std::string host;
  int64_t pid = 0;
  int attempt = 0;
  int64_t step = -1;
  std::string op;            // the section whose timeout expired, or in which the rank waited for a dead peer
  std::string reason = "timeout";  // "timeout" or "peer" (a peer's heartbeat stopped)
  double waited_s = 0;       // how long it had been in it
  double timeout_s = 0;      // its deadline
  std::string deadline;      // how the deadline was set: "--timeout 600", "learned 10.0 s (...)", "initial 600 s (...)"
  double started_unix = 0;   // when it entered the section (seconds since the epoch)
  double detected_unix = 0;  // when the watchdog fired
  // How long this process itself had been stopped (SIGSTOP, a wedged node) just before the watchdog
  // fired: a frozen rank that its job's teardown woke up (SIGCONT) reports its own freeze.
  double stopped_s = 0;
  std::vector<std::string> stack;  // the sections open, outermost first
  std::vector<StalePeer> stale_peers;
  std::vector<CommRecord> flight;  // oldest first
  std::string path;          // where the report was read from (read_failure_reports)
};

std::string failure_report_path(const std::string& dir, int rank);
// Writes the report atomically, creating dir if needed.
void write_failure_report(const std::string& dir, const FailureReport& report);
FailureReport read_failure_report(const std::string& path);  // data error if it does not parse
// The reports in dir, the one that entered its section first (the likeliest cause: its peers were
// waiting on it) first. Files that do not parse are skipped; a missing dir gives none.
std::vector<FailureReport> read_failure_reports(const std::string& dir);

}  // namespace tessera
