// Wall time per kernel entry point (ops::<op>), collected when ContextOptions::profile_ops is set:
// the per-op breakdown of a training step. Each timed call synchronizes the device before and after,
// so GPU figures are exact and unoverlapped; leave profiling off when timing whole steps.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

class OpProfile {
 public:
  struct Entry {
    std::string op;
    int64_t calls = 0;
    double seconds = 0.0;
  };

  void add(const char* op, double seconds);
  // One entry per op, in the order of each op's first call.
  const std::vector<Entry>& entries() const { return entries_; }
  double total_seconds() const;
  void clear() { entries_.clear(); }

 private:
  std::vector<Entry> entries_;
};

}  // namespace tessera
