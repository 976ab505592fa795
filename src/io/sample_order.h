// The order in which an epoch visits the data's windows: a pseudo-random permutation of [0, n) drawn
// from (seed, epoch), evaluated one index at a time in constant memory and time, so any position of
// any epoch is found directly (a resume needs no replay, a 100 GB dataset no permutation table).
//
// A balanced Feistel network over the smallest even number of bits that covers n is a bijection on
// [0, 2^bits); "cycle walking" (applying it again while the result is >= n) restricts it to a
// bijection on [0, n), taking under four applications on average since 2^bits < 4n. The same
// construction backs TensorFlow's random index shuffle and Grain's global shuffle.
#pragma once

#include <cstdint>

namespace tessera::io {

class SampleOrder {
 public:
  static constexpr int kRounds = 6;

  SampleOrder(int64_t n, int64_t seed, int64_t epoch);
  int64_t operator()(int64_t i) const;  // the window at position i (0 <= i < n)

 private:
  uint64_t permute_bits(uint64_t x) const;

  int64_t n_;
  int half_bits_ = 0;
  uint64_t half_mask_ = 0;
  uint64_t keys_[kRounds] = {};
};

}  // namespace tessera::io
