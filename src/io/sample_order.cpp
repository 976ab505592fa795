#include "io/sample_order.h"

namespace tessera::io {

namespace {

// SplitMix64's output function: a bijective 64-bit mixer with full avalanche.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

SampleOrder::SampleOrder(int64_t n, int64_t seed, int64_t epoch) : n_(n) {
  int bits = 2;
  while (bits < 62 && (uint64_t(1) << bits) < uint64_t(n)) bits += 2;
  half_bits_ = bits / 2;
  half_mask_ = (uint64_t(1) << half_bits_) - 1;
  uint64_t key = mix(uint64_t(seed) ^ mix(uint64_t(epoch) + 0x5851f42d4c957f2dull));
  for (uint64_t& k : keys_) k = key = mix(key);
}

uint64_t SampleOrder::permute_bits(uint64_t x) const {
  uint64_t left = x >> half_bits_, right = x & half_mask_;
  for (uint64_t k : keys_) {
    const uint64_t next = left ^ (mix(right ^ k) & half_mask_);
    left = right;
    right = next;
  }
  return (left << half_bits_) | right;
}

int64_t SampleOrder::operator()(int64_t i) const {
  uint64_t x = uint64_t(i);
  do x = permute_bits(x);
  while (x >= uint64_t(n_));
  return int64_t(x);
}

}  // namespace tessera::io
