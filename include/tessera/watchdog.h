// Hang detection: a watchdog thread per rank, and the failure reports it leaves for the launcher.
//
// The trainer brackets each step and each collective with enter()/leave() (or a Scope). When an
// operation stays entered longer than its timeout, the watchdog writes
// <report_dir>/failure-rank-<R>.json (rank, host, pid, step, the operation, how long it waited),
// prints one line to stderr, calls the abort function (the trainer aborts its communicators, so
// peers blocked on this rank fail too) and ends the process with exit code 3. Detection comes within
// the timeout plus a polling interval (at most a second).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tessera {

struct FailureReport {
  int rank = -1;
  std::string host;
  int64_t pid = 0;
  int64_t step = -1;
  std::string op;            // the operation whose timeout expired
  double waited_s = 0;       // how long it had been in it
  double timeout_s = 0;
  double started_unix = 0;   // when it entered the operation (seconds since the epoch)
  double detected_unix = 0;  // when the watchdog fired
  std::vector<std::string> stack;  // the operations entered, outermost first
  std::string path;          // where the report was read from (read_failure_reports)
};

std::string failure_report_path(const std::string& dir, int rank);
// Writes the report atomically, creating dir if needed.
void write_failure_report(const std::string& dir, const FailureReport& report);
// The reports in dir, the one that entered its operation first (the likeliest cause: its peers
// were waiting on it) first. Files that do not parse are skipped; a missing dir gives none.
std::vector<FailureReport> read_failure_reports(const std::string& dir);

struct WatchdogOptions {
  double timeout_s = 0;        // <= 0 disables the watchdog
  std::string report_dir;      // empty: the report is only printed
  int rank = 0;
  std::function<void()> abort_fn;  // called from the watchdog thread before exiting
  double abort_grace_s = 5;    // exit this long after calling abort_fn even if it has not returned
  int exit_code = 3;           // ExitCode::hang_or_peer
};

class Watchdog {
 public:
  explicit Watchdog(WatchdogOptions options);
  Watchdog(double timeout_s, std::string report_dir, int rank, std::function<void()> abort_fn = {});
  ~Watchdog();  // stops the thread
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  bool enabled() const { return options_.timeout_s > 0; }
  double timeout() const { return options_.timeout_s; }

  // Operations nest (a step, then a collective inside it). timeout_s <= 0: the watchdog's timeout.
  void enter(const std::string& op, int64_t step, double timeout_s = 0);
  void leave();  // leaves the innermost operation

  class Scope {
   public:
    Scope(Watchdog& w, const std::string& op, int64_t step, double timeout_s = 0) : w_(&w) { w_->enter(op, step, timeout_s); }
    ~Scope() {
      if (w_) w_->leave();
    }
    Scope(Scope&& o) noexcept : w_(o.w_) { o.w_ = nullptr; }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    Scope& operator=(Scope&&) = delete;

   private:
    Watchdog* w_;
  };
  Scope scope(const std::string& op, int64_t step, double timeout_s = 0) { return Scope(*this, op, step, timeout_s); }

 private:
  struct Entry {
    std::string op;
    int64_t step;
    double timeout_s;
    double entered;       // steady clock seconds
    double entered_unix;  // wall clock seconds
  };
  void run();
  [[noreturn]] void fire(const Entry& expired, std::vector<Entry> stack, double now);

  WatchdogOptions options_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Entry> stack_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace tessera
