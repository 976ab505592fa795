// Where a tensor-parallel shard of a parameter sits in the global tensor, as rectangles: what a
// rank's checkpoint pieces describe and what loading under another layout reads back.
//
// A parameter split along split_dim into split_parts packed parts (c_attn's q|k|v) gives tp rank r
// slice r of every part, so a rectangle of the shard maps to one global rectangle per part it
// touches. Pure geometry: no memory, no model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "tessera/param_table.h"

namespace tessera::train {

struct Rect {
  std::vector<int64_t> offset, shape;
};

// One part of a shard rectangle: where it is in the shard and where in the global tensor (same shape).
struct ShardRect {
  Rect local, global;
};

// The rectangle `local` of tp rank `rank`'s shard of `spec` (shard coordinates, within
// model::shard_shape(spec, tp)) as rectangles of the global tensor (spec.shape), in the order of
// their positions along split_dim.
std::vector<ShardRect> shard_to_global(const ParamSpec& spec, int tp, int rank, const Rect& local);

// Copies the rectangle [offset, offset + shape) of a row-major array of `array_shape` to or from a
// dense row-major buffer of `shape` (elem_size bytes per element). to_dense picks the direction.
void copy_rect(void* array, const std::vector<int64_t>& array_shape, const std::vector<int64_t>& offset,
               const std::vector<int64_t>& shape, void* dense, size_t elem_size, bool to_dense);

}  // namespace tessera::train
