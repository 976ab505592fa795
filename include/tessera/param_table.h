// The one description of every parameter. Flat buffers (parameters, gradients, fp32 master,
// AdamW moments), their offsets, and later DP buckets, ZeRO shards, checkpoint pieces and
// Hugging Face export are all derived from this table.
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
  int layer = -1;               // transformer block; -1 before the blocks, n_layer after them
  bool weight_decay = true;     // false for biases and norm parameters
  ParamInit init = ParamInit::normal;
  float init_std = 0.02f;       // for ParamInit::normal
  int split_dim = -1;           // -1: replicated across tensor-parallel ranks; else split along this dim
  // The extent of split_dim is this many equal parts packed side by side (c_attn's q|k|v: 3), each
  // split across the tensor-parallel ranks on its own, so a rank's shard holds its slice of every part.
  int split_parts = 1;
};

class ParamTable {
 public:
  // Element offsets are aligned to this many elements so every parameter starts on a
  // 256-byte boundary in float32 (vector loads, cuBLASLt alignment).
  static constexpr int64_t kAlignElements = 64;

  // Appends a parameter; returns its index. Names must be unique. Constant time (a table of a
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

}  // namespace tessera
