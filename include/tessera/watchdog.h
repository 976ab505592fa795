// Hang detection: a watchdog thread per rank.
//
// The program brackets each step, evaluation and checkpoint save with enter()/leave() (or a
// Scope), and a watched communicator (watched_communicator.h) brackets the wait of every
// collective ("all_reduce(dp)"). Each section has a deadline: --timeout when given (fixed),
// otherwise learned from the run's own durations of that section (section_timeouts.h). When a
// section stays open past its deadline, or when a peer that this rank waits for has stopped its
// heartbeat (the optional peer check), the watchdog builds a failure report (failure_report.h),
// lets the program annotate it (flight recorder, peers), writes it, prints one line to stderr,
// calls the abort function (the trainer aborts its communicators, so peers blocked on this rank
// fail too) and ends the process with exit code 3. Detection comes within the deadline plus a
// polling interval (at most a second).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tessera/failure_report.h"
#include "tessera/section_timeouts.h"

namespace tessera {

struct WatchdogOptions {
  double timeout_s = 0;        // > 0: every section's deadline (--timeout), unless enter() gives one
  bool learn = false;          // with timeout_s <= 0: deadlines learned per section; neither: off
  SectionTimeoutOptions learning;
  std::string report_dir;      // empty: the report is only printed
  int rank = 0;
  int attempt = 0;             // the launch this process belongs to (TESSERA_RESTART_COUNT)
  std::function<void()> abort_fn;  // called from the watchdog thread before exiting
  double abort_grace_s = 5;    // exit this long after calling abort_fn even if it has not returned
  int exit_code = 3;           // ExitCode::hang_or_peer
  // Adds what the program knows to a report before it is written (flight recorder, peers).
  std::function<void(FailureReport&)> annotate;
  // Asked once per poll while the innermost section has been open longer than peer_check_after_s:
  // the peers this rank waits for whose heartbeats have stopped. Any answer fires the watchdog.
  std::function<std::vector<StalePeer>()> peer_check;
  double peer_check_after_s = 1;
};

// A section as the watchdog sees it (heartbeats report them).
struct OpenSection {
  std::string op;
  int64_t step = -1;
  double since_unix = 0;
  double deadline_s = 0;
};

class Watchdog {
 public:
  explicit Watchdog(WatchdogOptions options);
  Watchdog(double timeout_s, std::string report_dir, int rank, std::function<void()> abort_fn = {});
  ~Watchdog();  // stops the thread
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  bool enabled() const { return options_.timeout_s > 0 || options_.learn; }
  bool learning() const { return options_.timeout_s <= 0 && options_.learn; }
  double timeout() const { return options_.timeout_s; }

  // Sections nest (a step, then a collective inside it). timeout_s > 0 fixes this section's
  // deadline; otherwise it is --timeout or the learned one. step -1: the enclosing section's step,
  // or the last step entered.
  void enter(const std::string& op, int64_t step, double timeout_s = 0);
  void leave();  // leaves the innermost section (and, when learning, records its duration)

  std::vector<OpenSection> open_sections() const;  // outermost first
  // How the deadline of `op` is set now: "--timeout 600 s", "learned 10.0 s (...)", "initial 600 s (...)".
  std::string describe_deadline(const std::string& op) const;

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
    std::string deadline;  // how it was set
    double entered;        // steady clock seconds
    double entered_unix;   // wall clock seconds
  };
  void run();
  std::string deadline_basis(const std::string& op) const;  // under the lock
  [[noreturn]] void fire(const Entry& expired, std::vector<Entry> stack, double now, std::vector<StalePeer> peers,
                         double stopped_s);

  WatchdogOptions options_;
  SectionTimeouts learned_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Entry> stack_;
  int64_t last_step_ = -1;  // sections outside a step belong to the last step entered
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace tessera
