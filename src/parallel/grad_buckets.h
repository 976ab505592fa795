// The layout the data-parallel optimizer derives from a parameter table: gradient buckets in
// reverse table order, each bucket's ZeRO-1 slices, and which parts of the flat buffer count
// toward the gradient norm. Pure arithmetic on the table, no memory and no communication.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "tessera/param_table.h"

namespace tessera::detail {

struct FlatRange {
  int64_t offset = 0, count = 0;
  int64_t end() const { return offset + count; }
};

// One bucket: whole table entries [first_entry, end_entry), i.e. the contiguous flat range
// `range` (each entry with its alignment padding). Under ZeRO-1 with dp ranks it is padded to
// shard * dp elements and rank r owns the slice [r * shard, (r + 1) * shard) of it.
struct BucketLayout {
  size_t first_entry = 0, end_entry = 0;
  FlatRange range;
  int64_t shard = 0;  // ceil(range.count / dp)
  int64_t padded(int dp) const { return shard * dp; }
  // The real (unpadded) part of rank r's slice, as a flat range (count 0 when all padding).
  FlatRange owned(int rank) const;
};

// Flat extent of entry i including its alignment padding: [offset(i), offset(i + 1)).
FlatRange entry_extent(const ParamTable& table, size_t i);

// Buckets in launch order: the first holds the last table entries. Entries are added while the
// bucket stays within bucket_bytes of float32 gradients; an entry larger than that gets a
// bucket of its own.
std::vector<BucketLayout> plan_grad_buckets(const ParamTable& table, size_t bucket_bytes, int dp);

// The parts of the flat buffer that count toward the gradient norm, as merged runs in
// increasing offset: extents of the entries with counts[i] != 0 (all entries when counts is
// empty). Merging keeps the all-counted case a single run over the whole buffer.
std::vector<FlatRange> counted_runs(const ParamTable& table, const std::vector<uint8_t>& counts);

// a ∩ b (count 0 when disjoint).
FlatRange intersect(FlatRange a, FlatRange b);

}  // namespace tessera::detail
