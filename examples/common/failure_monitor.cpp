#include "common/failure_monitor.h"

#include <algorithm>
#include <cstdio>

#include "tessera/watched_communicator.h"

namespace tessera::program {

FailureMonitor::FailureMonitor(FailureMonitorOptions options) : options_(std::move(options)) {
  const bool heartbeats = options_.heartbeat_interval_s > 0 && !options_.report_dir.empty();
  if (heartbeats) peers_ = std::make_unique<HeartbeatWatch>(options_.report_dir, options_.attempt);

  WatchdogOptions w;
  w.timeout_s = options_.timeout_s;
  w.learn = options_.timeout_s <= 0 && options_.learn;
  w.learning.floor_s = options_.timeout_floor_s;
  w.learning.initial_s = options_.initial_timeout_s;
  w.report_dir = options_.report_dir;
  w.rank = options_.rank;
  w.attempt = options_.attempt;
  w.abort_fn = [this] {
    if (Communicator* world = world_.load()) world->abort();
  };
  w.annotate = [this](FailureReport& r) { annotate(r); };
  if (heartbeats) {
    w.peer_check = [this] { return stale_peers(heartbeat_timeout_s()); };
    w.peer_check_after_s = std::max(1.0, options_.heartbeat_interval_s);
  }
  watchdog_ = std::make_unique<Watchdog>(w);

  if (heartbeats)
    heartbeat_ = std::make_unique<HeartbeatWriter>(options_.report_dir, options_.rank, options_.attempt,
                                                   options_.heartbeat_interval_s, [this] {
                                                     Heartbeat b;
                                                     b.step = step_.load();
                                                     b.steps_done = steps_done_.load();
                                                     b.sections = watchdog_->open_sections();
                                                     b.groups = recorder_.progress();
                                                     return b;
                                                   });
}

FailureMonitor::~FailureMonitor() {
  heartbeat_.reset();  // the last beat says "exited" before the watchdog goes
  watchdog_.reset();
}

std::unique_ptr<Communicator> FailureMonitor::watch(Context& ctx, std::unique_ptr<Communicator> world) {
  std::unique_ptr<Communicator> watched = watch_communicator(ctx, std::move(world), recorder_, watchdog_.get());
  world_.store(watched.get());
  return watched;
}

std::vector<StalePeer> FailureMonitor::stale_peers(double threshold_s) {
  if (!peers_) return {};
  // The peers of the operations this rank is waiting in.
  std::vector<int> waited_for;
  for (const CommRecord& r : recorder_.records()) {
    if (!r.waiting()) continue;
    for (int p : r.peers)
      if (p != options_.rank && std::find(waited_for.begin(), waited_for.end(), p) == waited_for.end())
        waited_for.push_back(p);
  }
  if (waited_for.empty()) return {};
  return peers_->stale(waited_for, threshold_s);
}

void FailureMonitor::annotate(FailureReport& report) {
  report.flight = recorder_.records();
  // A deadline that expired while a peer had stopped beating (but not yet for the full heartbeat
  // timeout) still names that peer: three missed beats are telling.
  if (report.stale_peers.empty()) report.stale_peers = stale_peers(3 * options_.heartbeat_interval_s);
}

std::string FailureMonitor::describe() const {
  char buf[400];
  std::string how;
  if (options_.timeout_s > 0) {
    std::snprintf(buf, sizeof(buf), "watchdog timeout %g s (--timeout)", options_.timeout_s);
    how = buf;
  } else if (options_.learn) {
    std::snprintf(buf, sizeof(buf),
                  "deadlines learned per section (5 x p99 of its durations, at least %g s; %g s until learned)",
                  options_.timeout_floor_s, options_.initial_timeout_s);
    how = buf;
  } else {
    how = "watchdog off";
  }
  if (heartbeat_) {
    std::snprintf(buf, sizeof(buf), ", heartbeat every %g s (a peer silent %g s is dead) in %s",
                  options_.heartbeat_interval_s, 10 * options_.heartbeat_interval_s, options_.report_dir.c_str());
    how += buf;
  }
  return how;
}

}  // namespace tessera::program
