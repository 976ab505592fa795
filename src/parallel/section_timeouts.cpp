#include "tessera/section_timeouts.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace tessera {

SectionTimeouts::SectionTimeouts(SectionTimeoutOptions options) : options_(options) {
  options_.window = std::max<size_t>(options_.window, 1);
  options_.min_samples = std::max(options_.min_samples, 1);
}

void SectionTimeouts::observe(const std::string& section, double seconds) {
  History& h = sections_[section];
  if (h.seen++ < options_.warmup) return;
  if (h.recent.size() < options_.window) {
    h.recent.push_back(seconds);
  } else {
    h.recent[h.next] = seconds;
    h.next = (h.next + 1) % options_.window;
  }
}

bool SectionTimeouts::learned(const std::string& section) const {
  auto it = sections_.find(section);
  return it != sections_.end() && int(it->second.recent.size()) >= options_.min_samples;
}

double SectionTimeouts::percentile_of(const History& h) const {
  std::vector<double> sorted = h.recent;
  std::sort(sorted.begin(), sorted.end());
  // Nearest rank: with fewer than 100 observations the 99th percentile is the maximum.
  size_t rank = size_t(std::ceil(options_.percentile * double(sorted.size())));
  return sorted[std::min(sorted.size(), std::max<size_t>(rank, 1)) - 1];
}

double SectionTimeouts::deadline(const std::string& section) const {
  if (!learned(section)) return options_.initial_s;
  return std::max(options_.floor_s, options_.factor * percentile_of(sections_.at(section)));
}

std::string SectionTimeouts::describe(const std::string& section) const {
  char buf[200];
  auto it = sections_.find(section);
  if (!learned(section)) {
    const int kept = it == sections_.end() ? 0 : int(it->second.recent.size());
    std::snprintf(buf, sizeof(buf), "initial %.0f s (not learned yet: %d of %d observations after a warm-up of %d)",
                  options_.initial_s, kept, options_.min_samples, options_.warmup);
    return buf;
  }
  const double p = percentile_of(it->second), scaled = options_.factor * p;
  std::snprintf(buf, sizeof(buf), "learned %.1f s (%s; %g x p%g = %.3f s over the last %zu)", deadline(section),
                scaled >= options_.floor_s ? "the percentile" : "the floor", options_.factor, options_.percentile * 100,
                scaled, it->second.recent.size());
  return buf;
}

}  // namespace tessera
