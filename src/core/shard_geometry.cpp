// Where a tensor-parallel shard of a parameter sits in the global tensor: the one implementation
// that model initialisation, Hugging Face import, parameter gathering and checkpoints all use.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "tessera/error.h"
#include "tessera/param_table.h"

namespace tessera {

std::vector<int64_t> split_parts(const ParamSpec& spec) {
  if (!spec.parts.empty()) return spec.parts;
  if (spec.split_dim < 0) return {};
  return {spec.shape[size_t(spec.split_dim)]};
}

void check_splits(const ParamSpec& spec, int tp) {
  if (spec.split_dim < 0 || tp == 1) return;
  TESSERA_CHECK(spec.split_dim < int(spec.shape.size()), "split dimension of " + spec.name + " out of range");
  for (int64_t part : split_parts(spec))
    if (part % tp != 0)
      throw config_error(fmt::format("parameter {} splits dim {} into parts of {}, which --tp {} does not divide",
                                     spec.name, spec.split_dim, part, tp),
                         "choose a --tp that divides the model's heads, MLP width and padded vocabulary");
}

std::vector<int64_t> shard_shape(const ParamSpec& spec, int tp) {
  std::vector<int64_t> shape = spec.shape;
  if (spec.split_dim >= 0 && tp > 1) {
    check_splits(spec, tp);
    shape[size_t(spec.split_dim)] /= tp;
  }
  return shape;
}

std::vector<ShardRect> shard_to_global(const ParamSpec& spec, int tp, int rank, const Rect& local) {
  const int d = spec.split_dim;
  if (d < 0 || tp == 1) return {ShardRect{local, local}};
  check_splits(spec, tp);
  std::vector<ShardRect> out;
  const int64_t begin = local.offset[size_t(d)], end = begin + local.shape[size_t(d)];
  int64_t shard_at = 0, global_at = 0;  // where the current part starts in the shard and in the global tensor
  for (int64_t part : split_parts(spec)) {
    const int64_t piece = part / tp;  // this rank's slice of the part
    const int64_t s = std::max(begin, shard_at), e = std::min(end, shard_at + piece);
    if (s < e) {
      ShardRect r{local, local};
      r.local.offset[size_t(d)] = s;
      r.local.shape[size_t(d)] = e - s;
      r.global.offset[size_t(d)] = global_at + int64_t(rank) * piece + (s - shard_at);
      r.global.shape[size_t(d)] = e - s;
      out.push_back(std::move(r));
    }
    shard_at += piece;
    global_at += part;
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

namespace {

// Copies between the global tensor and rank's shard, one global rectangle per part.
void copy_shard(const ParamSpec& spec, int tp, int rank, float* global, float* shard, bool to_shard) {
  const std::vector<int64_t> local_shape = shard_shape(spec, tp);
  const Rect whole{std::vector<int64_t>(local_shape.size(), 0), local_shape};
  std::vector<float> dense;
  for (const ShardRect& r : shard_to_global(spec, tp, rank, whole)) {
    int64_t n = 1;
    for (int64_t s : r.global.shape) n *= s;
    dense.resize(size_t(n));
    if (to_shard) {
      copy_rect(global, spec.shape, r.global.offset, r.global.shape, dense.data(), sizeof(float), true);
      copy_rect(shard, local_shape, r.local.offset, r.local.shape, dense.data(), sizeof(float), false);
    } else {
      copy_rect(shard, local_shape, r.local.offset, r.local.shape, dense.data(), sizeof(float), true);
      copy_rect(global, spec.shape, r.global.offset, r.global.shape, dense.data(), sizeof(float), false);
    }
  }
}

}  // namespace

void extract_shard(const ParamSpec& spec, int tp, int rank, const float* global, float* shard) {
  copy_shard(spec, tp, rank, const_cast<float*>(global), shard, true);
}

void insert_shard(const ParamSpec& spec, int tp, int rank, const float* shard, float* global) {
  copy_shard(spec, tp, rank, global, const_cast<float*>(shard), false);
}

}  // namespace tessera
