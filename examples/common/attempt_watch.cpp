#include "common/attempt_watch.h"

#include <algorithm>
#include <cstdio>

namespace tessera::program {

namespace {

std::string seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", s);
  return buf;
}

std::string limit_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g s", s);
  return buf;
}

}  // namespace

AttemptWatch::AttemptWatch(std::string failure_dir, int attempt, LaunchLimits limits)
    : dir_(std::move(failure_dir)), limits_(limits), watch_(dir_, attempt), started_(std::chrono::steady_clock::now()) {}

double AttemptWatch::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
}

std::string AttemptWatch::describe(const LaunchLimits& l) {
  std::string s = l.heartbeat_timeout_s > 0 ? "heartbeat timeout " + limit_text(l.heartbeat_timeout_s) : "no heartbeat timeout";
  s += l.stall_timeout_s > 0 ? ", stall timeout " + limit_text(l.stall_timeout_s) : ", no stall timeout";
  s += l.attempt_timeout_s > 0 ? ", attempt timeout " + limit_text(l.attempt_timeout_s) : ", no attempt time limit";
  return s;
}

HangVerdict AttemptWatch::check() {
  HangVerdict v;
  const double now = elapsed();
  if (limits_.attempt_timeout_s > 0 && now >= limits_.attempt_timeout_s) {
    v.limit = "attempt";
    v.message = "the attempt has run " + seconds(now) + " s (--attempt-timeout " + limit_text(limits_.attempt_timeout_s) + ")";
    return v;
  }
  if (dir_.empty()) return v;
  const std::vector<StalePeer> stale = watch_.stale({}, limits_.heartbeat_timeout_s > 0 ? limits_.heartbeat_timeout_s : 1e300);
  if (watch_.latest().empty()) {
    if (!warned_silent_ && now > 60 && limits_.attempt_timeout_s <= 0) {
      warned_silent_ = true;
      std::fprintf(stderr,
                   "tessera-launch: no heartbeat from the job in its first 60 s (not tessera-train, or --heartbeat-interval 0): "
                   "a hang ends only at --attempt-timeout, which is not set\n");
    }
    return v;
  }
  if (!stale.empty()) {
    const StalePeer& p = stale.front();
    v.limit = "heartbeat";
    v.rank = p.rank;
    v.host = p.host;
    v.message = "rank " + std::to_string(p.rank) + " on " + p.host + " has sent no heartbeat for " + seconds(p.silent_s) +
                " s (--heartbeat-timeout " + limit_text(limits_.heartbeat_timeout_s) + "; last seen in " +
                (p.section.empty() ? "no section" : p.section) + " at step " + std::to_string(p.step) + ")";
    return v;
  }
  bool all_exited = true;
  for (const auto& [rank, beat] : watch_.latest()) all_exited = all_exited && beat.exited;
  if (!all_exited) all_exited_at_ = -1;
  else if (all_exited_at_ < 0) all_exited_at_ = now;
  const double exit_limit = std::max(30.0, limits_.heartbeat_timeout_s);
  if (all_exited && now - all_exited_at_ >= exit_limit) {
    v.limit = "exit";
    v.message = "every rank ended its run " + seconds(now - all_exited_at_) + " s ago but the job has not exited (a rank stuck "
                "in the launcher's teardown; limit " + limit_text(exit_limit) + ")";
    return v;
  }
  int64_t progress = 0;
  int64_t step = -1;
  for (const auto& [rank, beat] : watch_.latest()) {
    progress += beat.steps_done;
    step = std::max(step, beat.step);
  }
  if (progress != progress_) {
    progress_ = progress;
    progress_at_ = now;
  }
  if (limits_.stall_timeout_s > 0 && now - progress_at_ >= limits_.stall_timeout_s) {
    v.limit = "stall";
    // The rank in the oldest open section is where the others wait.
    double oldest = 1e300;
    for (const auto& [rank, beat] : watch_.latest())
      if (!beat.exited && !beat.sections.empty() && beat.sections.back().since_unix < oldest) {
        oldest = beat.sections.back().since_unix;
        v.rank = rank;
        v.host = beat.host;
      }
    v.message = "no step has finished for " + seconds(now - progress_at_) + " s although every rank beats (--stall-timeout " +
                limit_text(limits_.stall_timeout_s) + "; last step " + std::to_string(step) + ")";
    if (v.rank >= 0) v.message += "; rank " + std::to_string(v.rank) + " on " + v.host + " has been in its section longest";
  }
  return v;
}

}  // namespace tessera::program
