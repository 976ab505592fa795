// The flight recorder: one rank's last communicator operations, kept in memory (a ring) so that a
// failure report can say which collective each rank was in, with whom, and since when.
//
// A communicator watched by watch_communicator() (watched_communicator.h) records every operation
// it starts: the operation, its group ("world", "tp", "dp", "pp", "embedding"), the peers as world
// ranks, the bytes, a per-group sequence number (the same operation has the same number on every
// member, so the member whose number lags is the one the others wait for), when it started and when
// its wait ended ("still waiting" while it has not). Communication writes no files: the program's
// failure report and heartbeat code read the recorder.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "tessera/cpu_wait.h"

namespace tessera {

struct CommRecord {
  uint64_t seq = 0;         // per group, from 1
  std::string op;           // all_reduce, reduce_scatter, all_gather, broadcast, exchange, barrier, split
  std::string group;        // the communicator's label
  std::vector<int> peers;   // world ranks: the group's members, or an exchange's peers
  uint64_t bytes = 0;
  double start_unix = 0;
  double end_unix = 0;      // 0: still waiting
  bool waiting() const { return end_unix == 0; }
};

// Where one group stands on this rank.
struct GroupProgress {
  std::string group;
  uint64_t started = 0;    // sequence number of the last operation started
  uint64_t completed = 0;  // ... and of the last one whose wait ended
  std::string op;          // the last operation started
  double since_unix = 0;   // when it started
};

class FlightRecorder {
 public:
  // Built on the training thread, whose waits it measures (cpu_wait_s below).
  explicit FlightRecorder(size_t capacity = 512);
  FlightRecorder(const FlightRecorder&) = delete;
  FlightRecorder& operator=(const FlightRecorder&) = delete;

  // Records an operation that starts now and returns its handle for finish(). Thread-safe.
  uint64_t start(const std::string& op, const std::string& group, std::vector<int> peers, uint64_t bytes);
  // Its wait ended after `waited_s` seconds of this rank's time blocked in it, `cpu_waited_s` of
  // which the training thread spent waiting for a CPU (the increase of cpu_wait_s() meanwhile).
  void finish(uint64_t handle, double waited_s, double cpu_waited_s);

  std::vector<CommRecord> records() const;        // oldest first, at most capacity
  std::vector<GroupProgress> progress() const;    // one per group, in the order first seen
  // Seconds this rank has spent blocked in waits since it started (the straggler monitor's
  // "waiting" part of a step: compute time = step time - the increase of this).
  double waited_s() const;
  // Seconds the training thread has waited for a CPU since the recorder was built, and the part of
  // them inside waits (the straggler monitor takes the rest out of compute time on an
  // oversubscribed machine). Only the training thread's: an OpenMP worker's wait shows only as
  // the barrier it holds up.
  double cpu_wait_s() const { return cpu_wait_.seconds(); }
  double cpu_wait_in_waits_s() const;

 private:
  mutable std::mutex mutex_;
  size_t capacity_;
  std::vector<CommRecord> ring_;
  uint64_t next_handle_ = 0;  // handle of the next record: ring_[handle % capacity_]
  std::vector<GroupProgress> groups_;
  double waited_s_ = 0;
  double cpu_waited_s_ = 0;
  CpuWaitClock cpu_wait_;
};

double unix_now();

}  // namespace tessera
