#include "tessera/flight_recorder.h"

#include <algorithm>
#include <chrono>

namespace tessera {

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

FlightRecorder::FlightRecorder(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {}

uint64_t FlightRecorder::start(const std::string& op, const std::string& group, std::vector<int> peers, uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto g = std::find_if(groups_.begin(), groups_.end(), [&](const GroupProgress& p) { return p.group == group; });
  if (g == groups_.end()) {
    GroupProgress fresh;
    fresh.group = group;
    groups_.push_back(std::move(fresh));
    g = groups_.end() - 1;
  }
  CommRecord r;
  r.seq = ++g->started;
  r.op = op;
  r.group = group;
  r.peers = std::move(peers);
  r.bytes = bytes;
  r.start_unix = unix_now();
  g->op = op;
  g->since_unix = r.start_unix;
  const uint64_t handle = next_handle_++;
  if (ring_.size() < capacity_) ring_.push_back(std::move(r));
  else ring_[handle % capacity_] = std::move(r);
  return handle;
}

void FlightRecorder::finish(uint64_t handle, double waited_s, double cpu_waited_s) {
  std::lock_guard<std::mutex> lock(mutex_);
  waited_s_ += waited_s;
  cpu_waited_s_ += cpu_waited_s;
  if (handle + capacity_ < next_handle_) return;  // overwritten long ago
  CommRecord& r = ring_[handle % capacity_];
  r.end_unix = unix_now();
  for (GroupProgress& g : groups_)
    if (g.group == r.group) g.completed = std::max(g.completed, r.seq);
}

std::vector<CommRecord> FlightRecorder::records() const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (ring_.size() < capacity_) return ring_;
  std::vector<CommRecord> out;
  out.reserve(capacity_);
  for (size_t i = 0; i < capacity_; ++i) out.push_back(ring_[(next_handle_ + i) % capacity_]);
  return out;
}

std::vector<GroupProgress> FlightRecorder::progress() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return groups_;
}

double FlightRecorder::waited_s() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return waited_s_;
}

double FlightRecorder::cpu_wait_in_waits_s() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cpu_waited_s_;
}

}  // namespace tessera
