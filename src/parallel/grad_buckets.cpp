#include "parallel/grad_buckets.h"

#include <algorithm>

namespace tessera::detail {

FlatRange BucketLayout::owned(int rank) const {
  const int64_t begin = int64_t(rank) * shard;
  const int64_t count = std::clamp<int64_t>(range.count - begin, 0, shard);
  return {range.offset + std::min(begin, range.count), count};
}

FlatRange entry_extent(const ParamTable& table, size_t i) {
  const int64_t begin = table.offset(i);
  const int64_t end = i + 1 < table.size() ? table.offset(i + 1) : table.flat_numel();
  return {begin, end - begin};
}

std::vector<BucketLayout> plan_grad_buckets(const ParamTable& table, size_t bucket_bytes, int dp) {
  const int64_t limit = std::max<int64_t>(1, int64_t(bucket_bytes / sizeof(float)));
  std::vector<BucketLayout> buckets;
  size_t end = table.size();
  while (end > 0) {
    size_t first = end - 1;
    int64_t count = entry_extent(table, first).count;
    while (first > 0 && count + entry_extent(table, first - 1).count <= limit) {
      --first;
      count += entry_extent(table, first).count;
    }
    BucketLayout b;
    b.first_entry = first;
    b.end_entry = end;
    b.range = {table.offset(first), count};
    b.shard = (count + dp - 1) / dp;
    buckets.push_back(b);
    end = first;
  }
  return buckets;
}

std::vector<FlatRange> counted_runs(const ParamTable& table, const std::vector<uint8_t>& counts) {
  std::vector<FlatRange> runs;
  for (size_t i = 0; i < table.size(); ++i) {
    if (!counts.empty() && !counts[i]) continue;
    FlatRange e = entry_extent(table, i);
    if (!runs.empty() && runs.back().end() == e.offset)
      runs.back().count += e.count;
    else
      runs.push_back(e);
  }
  return runs;
}

FlatRange intersect(FlatRange a, FlatRange b) {
  const int64_t begin = std::max(a.offset, b.offset), end = std::min(a.end(), b.end());
  return end > begin ? FlatRange{begin, end - begin} : FlatRange{begin, 0};
}

}  // namespace tessera::detail
