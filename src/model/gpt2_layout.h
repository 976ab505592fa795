// Where one rank's part of GPT-2 comes from: its tensor-parallel shard of every parameter and the
// model chunks its pipeline rank runs. Everything here is derived from the global parameter table
// (global shapes, split_dim, split_parts) and the layout; no memory, no communication.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "tessera/gpt2.h"
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
// not split this way: heads or the padded vocabulary not divisible by tp, fewer layers than chunks.
void validate_layout(const GPT2Config& config, const ModelLayout& layout);

struct LayerRange {
  int begin = 0, end = 0;  // transformer blocks [begin, end)
};
// Layers split into `chunks` contiguous, balanced ranges (the first n_layer % chunks get one more).
LayerRange chunk_layers(int n_layer, int chunks, int model_chunk);

// Shape of one tensor-parallel shard of a parameter (the global shape when replicated).
std::vector<int64_t> shard_shape(const ParamSpec& spec, int tp);
// Copies tp rank `rank`'s shard out of the global values (row-major, spec.shape), or back into them.
void extract_shard(const ParamSpec& spec, int tp, int rank, const float* global, float* shard);
void insert_shard(const ParamSpec& spec, int tp, int rank, const float* shard, float* global);

// The table of the parameters one rank holds: same names and order as the global table, local
// shapes, only the entries of this rank's model chunks (wte with the first and the last chunk,
// wpe with the first, ln_f with the last). global_index[i] is local entry i's global index.
struct LocalTable {
  ParamTable table;
  std::vector<size_t> global_index;
};
LocalTable local_param_table(const ParamTable& global, const GPT2Config& config, const ModelLayout& layout);

}  // namespace tessera::model
