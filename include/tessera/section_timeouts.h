// Timeouts learned from the run itself, per section (a step, each collective of each group, an
// evaluation, a checkpoint save), as NVIDIA's resiliency extension's section timeouts learn them:
// once a section has been seen often enough, its deadline is a safety factor over a high percentile
// of its recent durations, never below a floor; before that it is the initial timeout.
//
//   deadline = max(floor, factor x p99 of the last `window` durations)  after `warmup` + `min_samples` observations
//
// The first `warmup` observations of each section are ignored (first steps allocate, fault in
// pages and fill caches). Not thread-safe: the watchdog calls it under its own lock.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace tessera {

struct SectionTimeoutOptions {
  double initial_s = 600;  // a section not learned yet
  double floor_s = 10;     // the shortest learned deadline
  double factor = 5;       // over the percentile
  double percentile = 0.99;
  int warmup = 2;          // observations ignored per section
  int min_samples = 5;     // observations needed (after the warm-up) before a deadline is learned
  size_t window = 200;     // recent observations kept per section
};

class SectionTimeouts {
 public:
  explicit SectionTimeouts(SectionTimeoutOptions options = {});

  void observe(const std::string& section, double seconds);
  bool learned(const std::string& section) const;
  double deadline(const std::string& section) const;
  // "learned 10.0 s (the floor; 5 x p99 = 0.6 s over 37 steps)" or "initial 600 s (not learned yet: 2 of 5 observations)"
  std::string describe(const std::string& section) const;
  const SectionTimeoutOptions& options() const { return options_; }

 private:
  struct History {
    int seen = 0;                 // every observation, warm-up included
    std::vector<double> recent;   // ring of the last `window` kept ones
    size_t next = 0;
  };
  double percentile_of(const History& h) const;

  SectionTimeoutOptions options_;
  std::map<std::string, History> sections_;
};

}  // namespace tessera
