#include "tessera/watchdog.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>

#include <unistd.h>

#include "tessera/host.h"

namespace tessera {

namespace {

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string seconds_str(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", s);
  return buf;
}

}  // namespace

Watchdog::Watchdog(WatchdogOptions options) : options_(std::move(options)), learned_(options_.learning) {
  if (enabled()) thread_ = std::thread([this] { run(); });
}

Watchdog::Watchdog(double timeout_s, std::string report_dir, int rank, std::function<void()> abort_fn)
    : Watchdog([&] {
        WatchdogOptions o;
        o.timeout_s = timeout_s;
        o.report_dir = std::move(report_dir);
        o.rank = rank;
        o.abort_fn = std::move(abort_fn);
        return o;
      }()) {}

Watchdog::~Watchdog() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

std::string Watchdog::deadline_basis(const std::string& op) const {
  if (options_.timeout_s > 0) return "--timeout " + seconds_str(options_.timeout_s) + " s";
  return learned_.describe(op);
}

void Watchdog::enter(const std::string& op, int64_t step, double timeout_s) {
  if (!enabled()) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (step < 0) step = stack_.empty() ? last_step_ : stack_.back().step;
  last_step_ = std::max(last_step_, step);
  Entry e;
  e.op = op;
  e.step = step;
  if (timeout_s > 0) {
    e.timeout_s = timeout_s;
    e.deadline = "fixed " + seconds_str(timeout_s) + " s";
  } else {
    e.timeout_s = options_.timeout_s > 0 ? options_.timeout_s : learned_.deadline(op);
    e.deadline = deadline_basis(op);
  }
  e.entered = steady_seconds();
  e.entered_unix = unix_now();
  stack_.push_back(std::move(e));
}

void Watchdog::leave() {
  if (!enabled()) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (stack_.empty()) return;
  if (learning()) learned_.observe(stack_.back().op, steady_seconds() - stack_.back().entered);
  stack_.pop_back();
}

std::vector<OpenSection> Watchdog::open_sections() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<OpenSection> out;
  for (const Entry& e : stack_) out.push_back(OpenSection{e.op, e.step, e.entered_unix, e.timeout_s});
  return out;
}

std::string Watchdog::describe_deadline(const std::string& op) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return deadline_basis(op);
}

void Watchdog::run() {
  // Checks often enough that a hang is caught within its deadline plus at most a second.
  const double shortest = options_.timeout_s > 0 ? options_.timeout_s : options_.learning.floor_s;
  const double poll = std::clamp(shortest / 10, 0.01, 1.0);
  std::unique_lock<std::mutex> lock(mutex_);
  double last_poll = steady_seconds();
  while (!stop_) {
    wake_.wait_for(lock, std::chrono::duration<double>(poll));
    if (stop_) break;
    double now = steady_seconds();
    // A poll far later than asked for means the whole process was stopped (SIGSTOP, a wedged node)
    // and has just been woken: the hang is this rank's own freeze.
    const double stopped_s = now - last_poll > 3 * poll + 2 ? now - last_poll : 0;
    last_poll = now;
    // The innermost expired section is the most precise answer to "where is it stuck".
    for (size_t i = stack_.size(); i-- > 0;) {
      if (now - stack_[i].entered > stack_[i].timeout_s) {
        Entry expired = stack_[i];
        std::vector<Entry> stack = stack_;
        lock.unlock();
        fire(expired, std::move(stack), now, {}, stopped_s);
      }
    }
    // A peer this rank waits for may have died or frozen: its heartbeat says so long before a
    // learned step deadline would.
    if (options_.peer_check && !stack_.empty() && now - stack_.back().entered > options_.peer_check_after_s) {
      Entry innermost = stack_.back();
      std::vector<Entry> stack = stack_;
      lock.unlock();
      std::vector<StalePeer> stale = options_.peer_check();
      if (!stale.empty()) fire(innermost, std::move(stack), steady_seconds(), std::move(stale), 0);
      lock.lock();
    }
  }
}

void Watchdog::fire(const Entry& expired, std::vector<Entry> stack, double now, std::vector<StalePeer> peers,
                    double stopped_s) {
  FailureReport r;
  r.rank = options_.rank;
  r.host = host_identity();
  r.pid = int64_t(::getpid());
  r.attempt = options_.attempt;
  r.step = expired.step;
  r.op = expired.op;
  r.reason = peers.empty() ? "timeout" : "peer";
  r.waited_s = now - expired.entered;
  r.timeout_s = expired.timeout_s;
  r.deadline = expired.deadline;
  r.started_unix = expired.entered_unix;
  r.detected_unix = unix_now();
  r.stopped_s = stopped_s;
  for (const auto& e : stack) r.stack.push_back(e.op + " (step " + std::to_string(e.step) + ", " + seconds_str(now - e.entered) + " s)");
  r.stale_peers = std::move(peers);
  if (options_.annotate) {
    try {
      options_.annotate(r);
    } catch (...) {
      // The report matters more than what the annotation would have added.
    }
  }

  std::string line = "tessera: watchdog: rank " + std::to_string(r.rank) + " on " + r.host + " has been in " + r.op +
                     " at step " + std::to_string(r.step) + " for " + seconds_str(r.waited_s) + " s";
  if (r.reason == "peer") {
    const StalePeer& p = r.stale_peers.front();
    line += " while rank " + std::to_string(p.rank) + " on " + p.host + " has not sent a heartbeat for " +
            seconds_str(p.silent_s) + " s (last seen in " + p.section + " at step " + std::to_string(p.step) +
            "): treating it as a peer failure";
  } else if (r.stopped_s > 0) {
    line += " of which this process was stopped " + seconds_str(r.stopped_s) + " s (frozen from outside, or a wedged node)";
  } else {
    line += " (deadline " + seconds_str(r.timeout_s) + " s: " + r.deadline + "): treating it as a hang";
  }
  line += " and exiting with code " + std::to_string(options_.exit_code);
  if (!options_.report_dir.empty()) {
    try {
      write_failure_report(options_.report_dir, r);
      line += "; report: " + failure_report_path(options_.report_dir, r.rank);
    } catch (const std::exception& e) {
      line += std::string("; could not write the failure report: ") + e.what();
    }
  }
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);

  if (options_.abort_fn) {
    // The abort may itself block on a dead peer: give it a grace period, then exit regardless.
    auto finished = std::make_shared<std::atomic<bool>>(false);
    std::thread([fn = options_.abort_fn, finished] {
      try {
        fn();
      } catch (...) {
      }
      finished->store(true);
    }).detach();
    double deadline = steady_seconds() + options_.abort_grace_s;
    while (!finished->load() && steady_seconds() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::fflush(nullptr);
  ::_exit(options_.exit_code);
}

}  // namespace tessera
