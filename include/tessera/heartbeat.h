// Heartbeats: each rank rewrites <dir>/heartbeat-rank-<R>.json every interval from a thread of its
// own, saying where it is (step, open sections, each communicator group's progress). A rank that
// died or froze (SIGSTOP, a wedged node: every thread stops) stops beating; its peers' watchdogs
// and tessera-launch notice within the heartbeat timeout, without waiting for a learned step
// deadline or for mpirun's teardown. A rank whose main thread hangs keeps beating but its step
// stops advancing, which tessera-launch's stall limit sees.
//
// Staleness is judged by the reader's own clock: how long the beat counter has not changed since
// the reader saw it change (clocks of different nodes never meet). Files are rewritten by rename
// without fsync: a reader sees a whole beat or the previous one.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tessera/failure_report.h"
#include "tessera/flight_recorder.h"
#include "tessera/watchdog.h"

namespace tessera {

struct Heartbeat {
  int rank = -1;
  std::string host;
  int64_t pid = 0;
  int attempt = 0;
  uint64_t beat = 0;            // counts up with every write
  double beat_unix = 0;
  double gap_s = 0;             // since this rank's previous beat: far over the interval after a freeze
  bool exited = false;          // the last beat of a rank that ended its run (any exit code)
  int64_t step = -1;            // the step in progress or last done
  int64_t steps_done = 0;       // steps finished in this process (advances while training advances)
  std::vector<OpenSection> sections;   // outermost first
  std::vector<GroupProgress> groups;   // from the flight recorder
  std::string path;             // where it was read from
};

std::string heartbeat_path(const std::string& dir, int rank);
void write_heartbeat(const std::string& dir, const Heartbeat& beat);  // data error when it cannot
Heartbeat read_heartbeat(const std::string& path);                    // data error when it does not parse
// Every readable heartbeat in dir (of any attempt), by rank. Half-written or foreign files are skipped.
std::vector<Heartbeat> read_heartbeats(const std::string& dir);

class HeartbeatWriter {
 public:
  // sample() fills step, steps_done, sections and groups; the writer sets the rest. Writes one beat
  // at once, then every interval_s from its thread. interval_s <= 0 or an empty dir: writes nothing.
  HeartbeatWriter(std::string dir, int rank, int attempt, double interval_s, std::function<Heartbeat()> sample);
  ~HeartbeatWriter();  // a last beat marked exited
  HeartbeatWriter(const HeartbeatWriter&) = delete;
  HeartbeatWriter& operator=(const HeartbeatWriter&) = delete;

  bool enabled() const { return enabled_; }
  double interval() const { return interval_s_; }

 private:
  void beat(bool exited);
  void run();

  std::string dir_;
  int rank_, attempt_;
  double interval_s_;
  bool enabled_;
  std::function<Heartbeat()> sample_;
  std::string host_;
  uint64_t count_ = 0;
  double previous_ = 0;  // steady seconds of the previous beat
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

// Watches heartbeats from outside (a peer, the launcher): which ranks stopped beating.
class HeartbeatWatch {
 public:
  // Only beats of `attempt` count (an older attempt's files are stale by definition).
  HeartbeatWatch(std::string dir, int attempt);

  // Reads the heartbeats of `ranks` (every file of the attempt when empty) and returns the ranks
  // that have not beaten for timeout_s of this process's time: since the beat last changed, or,
  // for a rank whose file never appeared, since the first look. Exited ranks are never stale.
  std::vector<StalePeer> stale(const std::vector<int>& ranks, double timeout_s);
  // The last beat read of each rank seen.
  const std::map<int, Heartbeat>& latest() const { return latest_; }

 private:
  struct Seen {
    uint64_t beat = 0;
    double changed = 0;  // steady seconds
  };
  void look(int rank, double now);

  std::string dir_;
  int attempt_;
  std::map<int, Seen> seen_;
  std::map<int, Heartbeat> latest_;
};

}  // namespace tessera
