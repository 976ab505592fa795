// The one description of every parameter. Flat buffers (parameters, gradients, fp32 master,
// AdamW moments), their offsets, the pipeline stage and tensor-parallel shard each rank holds, the
// gradient sums a layout needs, data-parallel buckets, ZeRO shards, checkpoint pieces and Hugging
// Face export are all derived from this table; no code looks a parameter up by its name to decide
// how to treat it.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace tessera {

enum class ParamInit : uint8_t { normal, zeros, ones };

struct ParamSpec {
  std::string name;             // Hugging Face's name where one exists
  std::vector<int64_t> shape;   // global shape, in tessera's orientation (matmul weights are (out, in))
  // Pipeline placement: the transformer block it belongs to; -1 before the blocks (with the
  // embedding, in the first model chunk), n_layer after them (with the head, in the last).
  int layer = -1;
  // Also the weight of the output layer (an embedding tied to the head): the last model chunk uses
  // it too. Under pipeline parallelism the stage running the last chunk holds a copy; the copies'
  // gradients are summed after the backward, and only the first stage's copy counts (norm, export).
  bool tied_to_head = false;
  bool weight_decay = true;     // false for biases and norm parameters
  ParamInit init = ParamInit::normal;
  float init_std = 0.02f;       // for ParamInit::normal
  // Rows past this many (dim 0) are padding, such as a vocabulary rounded up for the matmuls: zero
  // at initialisation and on import, left out of exports. 0: every row is real.
  int64_t real_rows = 0;
  int split_dim = -1;           // -1: replicated across tensor-parallel ranks; else split along this dim
  // The extent of split_dim as packed parts side by side (q|k|v of grouped-query attention: NH*HS,
  // NKV*HS, NKV*HS), each split across the tensor-parallel ranks on its own, so a rank's shard holds
  // its slice of every part. Empty: one part.
  std::vector<int64_t> parts;
  // Where the packed parts are tensors of their own in Hugging Face's files (q_proj, k_proj,
  // v_proj), their names, one per part; empty: stored packed under `name`.
  std::vector<std::string> part_names;
  // Under sequence parallelism each tensor-parallel rank sees only its rows where this parameter
  // acts (a norm in the sequence-parallel region): its gradient is a partial sum, summed over the
  // tensor-parallel group once final.
  bool sequence_parallel_partial = false;
  // Hugging Face stores it transposed, (in, out): GPT-2's Conv1D weights.
  bool stored_transposed = false;
};

class ParamTable {
 public:
  // Element offsets are aligned to this many elements so every parameter starts on a
  // 256-byte boundary in float32 (vector loads, cuBLASLt alignment).
  static constexpr int64_t kAlignElements = 64;

  // Appends a parameter; returns its index. Names must be unique; parts must add up to the
  // extent of split_dim, and part_names must name every part or none. Constant time (a table of a
  // million parameters builds in about a second).
  int add(ParamSpec spec);

  size_t size() const { return specs_.size(); }
  const ParamSpec& operator[](size_t i) const { return specs_[i]; }
  const std::vector<ParamSpec>& specs() const { return specs_; }
  // Index of a parameter by name, or -1 (constant time).
  int find(const std::string& name) const;
  // Like find, but throws a config error naming the missing parameter.
  int index_of(const std::string& name) const;

  int64_t numel(size_t i) const;
  int64_t offset(size_t i) const { return offsets_[i]; }
  // Length of the flat buffer (aligned; includes padding between parameters).
  int64_t flat_numel() const { return flat_numel_; }
  // Number of real parameter elements (no padding).
  int64_t parameter_count() const;

 private:
  std::vector<ParamSpec> specs_;
  std::vector<int64_t> offsets_;
  std::unordered_map<std::string, int> index_;  // name -> index in specs_
  int64_t flat_numel_ = 0;
};

// ---- Shard geometry: where tensor-parallel rank r's shard of a parameter sits in the global
// tensor. Part p of split_dim gives rank r its slice [r, r+1) * part/tp; a rank's shard holds its
// slices of every part, in part order. Pure geometry: no memory, no model. ----

// The extents of split_dim's parts (one part: the whole extent).
std::vector<int64_t> split_parts(const ParamSpec& spec);
// config_error naming the parameter when a part of split_dim does not divide by tp.
void check_splits(const ParamSpec& spec, int tp);
// Shape of one shard (the global shape when replicated or tp == 1).
std::vector<int64_t> shard_shape(const ParamSpec& spec, int tp);

struct Rect {
  std::vector<int64_t> offset, shape;
};
// One part of a shard rectangle: where it is in the shard and where in the global tensor (same shape).
struct ShardRect {
  Rect local, global;
};
// The rectangle `local` of rank `rank`'s shard (shard coordinates, within shard_shape) as
// rectangles of the global tensor, one per part it touches, in order along split_dim.
std::vector<ShardRect> shard_to_global(const ParamSpec& spec, int tp, int rank, const Rect& local);

// Copies the rectangle [offset, offset + shape) of a row-major array of `array_shape` to or from a
// dense row-major buffer of `shape` (elem_size bytes per element). to_dense picks the direction.
void copy_rect(void* array, const std::vector<int64_t>& array_shape, const std::vector<int64_t>& offset,
               const std::vector<int64_t>& shape, void* dense, size_t elem_size, bool to_dense);

// Rank `rank`'s shard out of the global values (row-major, spec.shape), or back into them.
void extract_shard(const ParamSpec& spec, int tp, int rank, const float* global, float* shard);
void insert_shard(const ParamSpec& spec, int tp, int rank, const float* shard, float* global);

}  // namespace tessera
