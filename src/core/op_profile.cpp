#include "tessera/op_profile.h"

namespace tessera {

void OpProfile::add(const char* op, double seconds) {
  // A few dozen distinct ops: a linear search beats a map here.
  for (Entry& e : entries_) {
    if (e.op == op) {
      e.calls++;
      e.seconds += seconds;
      return;
    }
  }
  entries_.push_back({op, 1, seconds});
}

double OpProfile::total_seconds() const {
  double total = 0.0;
  for (const Entry& e : entries_) total += e.seconds;
  return total;
}

}  // namespace tessera
