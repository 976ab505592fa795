// Where one rank's part of a model comes from: its tensor-parallel shard of every parameter and the
// model chunks its pipeline rank runs. Everything here is derived from the global parameter table
// (placement, split_dim, parts) and the layout; no memory, no communication.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "tessera/model_config.h"
#include "tessera/param_table.h"

namespace tessera::model {

struct ModelLayout {
  int tp = 1, tp_rank = 0;
  int pp = 1, pp_rank = 0;
  int virtual_stages = 1;  // model chunks per pipeline rank
  bool sequence_parallel = false;

  int model_chunks() const { return pp * virtual_stages; }
  // Model chunk that local chunk c runs (Megatron's interleaving: chunk * pp + pp_rank).
  int model_chunk(int local_chunk) const { return local_chunk * pp + pp_rank; }
};

// Throws config_error naming the flag to change (--tp, --pp, --virtual-stages) when the model does
// not split this way: query heads, key/value heads (not replicated: Megatron-Core refuses too), the
// MLP width or the padded vocabulary not divisible by tp; fewer layers than chunks.
void validate_layout(const ModelConfig& config, const ModelLayout& layout);

struct LayerRange {
  int begin = 0, end = 0;  // transformer blocks [begin, end)
};
// Layers split into `chunks` contiguous, balanced ranges (the first n_layer % chunks get one more).
LayerRange chunk_layers(int n_layer, int chunks, int model_chunk);

// The table of the parameters one rank holds: same names and order as the global table, local
// shapes, only the entries of this rank's model chunks (by each entry's layer: -1 with the first
// chunk, n_layer with the last; a tied entry also with the last). global_index[i] is local entry
// i's global index.
struct LocalTable {
  ParamTable table;
  std::vector<size_t> global_index;
};
LocalTable local_param_table(const ParamTable& global, int n_layer, const ModelLayout& layout);

}  // namespace tessera::model
