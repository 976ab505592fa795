#include "train/shard_rects.h"

#include <algorithm>
#include <cstring>

#include "tessera/error.h"

namespace tessera::train {

std::vector<ShardRect> shard_to_global(const ParamSpec& spec, int tp, int rank, const Rect& local) {
  const int d = spec.split_dim;
  if (d < 0 || tp == 1) return {ShardRect{local, local}};
  const int64_t parts = std::max(spec.split_parts, 1);
  const int64_t part = spec.shape[size_t(d)] / parts;  // one part's global extent
  const int64_t piece = part / tp;                      // one rank's slice of a part
  std::vector<ShardRect> out;
  const int64_t begin = local.offset[size_t(d)], end = begin + local.shape[size_t(d)];
  for (int64_t s = begin; s < end;) {
    const int64_t p = s / piece;  // the part this run of the shard belongs to
    const int64_t e = std::min(end, (p + 1) * piece);
    ShardRect r{local, local};
    r.local.offset[size_t(d)] = s;
    r.local.shape[size_t(d)] = e - s;
    r.global.offset[size_t(d)] = p * part + int64_t(rank) * piece + (s - p * piece);
    r.global.shape[size_t(d)] = e - s;
    out.push_back(std::move(r));
    s = e;
  }
  return out;
}

void copy_rect(void* array, const std::vector<int64_t>& array_shape, const std::vector<int64_t>& offset,
               const std::vector<int64_t>& shape, void* dense, size_t elem_size, bool to_dense) {
  const size_t n = array_shape.size();
  TESSERA_CHECK(offset.size() == n && shape.size() == n, "copy_rect: rank mismatch");
  for (size_t k = 0; k < n; ++k)
    TESSERA_CHECK(offset[k] >= 0 && shape[k] >= 0 && offset[k] + shape[k] <= array_shape[k],
                  "copy_rect: rectangle outside the array");
  char* a = static_cast<char*>(array);
  char* b = static_cast<char*>(dense);
  if (n == 0) {  // a scalar
    to_dense ? std::memcpy(b, a, elem_size) : std::memcpy(a, b, elem_size);
    return;
  }
  for (int64_t s : shape)
    if (s == 0) return;
  std::vector<int64_t> stride(n, 1);  // of the array, in elements
  for (size_t k = n - 1; k > 0; --k) stride[k - 1] = stride[k] * array_shape[k];
  const size_t row = size_t(shape[n - 1]) * elem_size;
  std::vector<int64_t> index(n, 0);  // over the rectangle's rows (the last dimension stays 0)
  for (;;) {
    int64_t at = 0;
    for (size_t k = 0; k < n; ++k) at += (offset[k] + index[k]) * stride[k];
    char* src = a + size_t(at) * elem_size;
    to_dense ? std::memcpy(b, src, row) : std::memcpy(src, b, row);
    b += row;
    size_t k = n - 1;
    for (;;) {  // next row: odometer over dims n-2 .. 0
      if (k == 0) return;
      --k;
      if (++index[k] < shape[k]) break;
      index[k] = 0;
    }
  }
}

}  // namespace tessera::train
