#include "common/sample_digest.h"

#include <cstdio>

#include "tessera/host_collectives.h"

namespace tessera::program {

namespace {

constexpr uint64_t kOffsetBasis = 14695981039346656037ull, kPrime = 1099511628211ull;

void mix(uint64_t& h, uint64_t value) {
  for (int i = 0; i < 8; ++i) {
    h ^= (value >> (8 * i)) & 0xff;
    h *= kPrime;
  }
}

}  // namespace

uint64_t digest_samples(const std::vector<SampleId>& ids) {
  uint64_t h = kOffsetBasis;
  for (const SampleId& id : ids) {
    mix(h, uint64_t(id.shard));
    mix(h, uint64_t(id.offset));
  }
  return h;
}

uint64_t global_step_digest(Context& ctx, Communicator* dp, const std::vector<SampleId>& mine) {
  const uint64_t own = digest_samples(mine);
  if (!dp || dp->size() == 1) return own;
  std::vector<uint64_t> all(size_t(dp->size()), 0);
  host_all_gather(ctx, *dp, &own, sizeof(own), all.data());
  uint64_t h = kOffsetBasis;
  for (uint64_t d : all) mix(h, d);
  return h;
}

std::string digest_hex(uint64_t digest) {
  char buf[20];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(digest));
  return buf;
}

}  // namespace tessera::program
