#include "model/decoder_params.h"

#include <cmath>
#include <string>

#include "model/arena.h"
#include "model/family.h"

namespace tessera::model {

namespace {

std::vector<std::string> with_suffix(const std::vector<std::string>& patterns, int layer, const char* suffix) {
  std::vector<std::string> out;
  for (const std::string& p : patterns) out.push_back(block_name(p, layer) + suffix);
  return out;
}

}  // namespace

ParamTable decoder_param_table(const ModelConfig& c) {
  const FamilyNames& names = family(c.family).names;
  const int64_t C = c.n_embd, L = c.n_layer, F = c.ffn_dim, HS = c.n_embd / std::max(c.n_head, 1);
  const int64_t q = c.n_head * HS, kv = c.n_kv_head * HS;
  const bool swiglu = c.mlp == MlpKind::swiglu;
  // GPT-2's scaled initialisation of the projections into the residual stream.
  const float residual_std = 0.02f / std::sqrt(2.0f * float(L));
  ParamTable table;
  // split_dim says how Megatron splits each parameter across a tensor-parallel group:
  // column-parallel linears (q|k|v, the MLP's input) along dim 0 (weight and bias), row-parallel
  // weights along dim 1, the vocabulary-parallel embedding and output layer along their rows;
  // everything else is replicated.
  auto make = [&](std::string name, std::vector<int64_t> shape, int layer, ParamInit init, float std, int split) {
    ParamSpec s;
    s.name = std::move(name);
    s.shape = std::move(shape);
    s.layer = layer;
    s.weight_decay = s.shape.size() == 2;  // matrices decay; biases and norms do not
    s.init = init;
    s.init_std = init == ParamInit::normal ? std : 0.0f;
    s.split_dim = split;
    return s;
  };
  // A linear (out, in) of block l and its bias; packed parts are split one by one.
  auto linear = [&](const std::string& pattern, const std::vector<std::string>& part_patterns, int64_t out, int64_t in,
                    int l, float std, int split, const std::vector<int64_t>& parts) {
    ParamSpec w = make(block_name(pattern, l) + ".weight", {out, in}, l, ParamInit::normal, std, split);
    w.parts = parts;
    w.part_names = with_suffix(part_patterns, l, ".weight");
    w.stored_transposed = names.transposed_linears;
    table.add(std::move(w));
    if (!c.bias) return;
    // A column-parallel bias splits with its weight; a row-parallel one is replicated.
    ParamSpec b = make(block_name(pattern, l) + ".bias", {out}, l, ParamInit::zeros, 0, split == 0 ? 0 : -1);
    if (split == 0) {
      b.parts = parts;
      b.part_names = with_suffix(part_patterns, l, ".bias");
    }
    table.add(std::move(b));
  };
  // A norm over C channels, in the sequence-parallel region.
  auto norm = [&](const std::string& name, int l) {
    ParamSpec w = make(name + ".weight", {C}, l, ParamInit::ones, 0, -1);
    w.sequence_parallel_partial = true;
    table.add(std::move(w));
    if (c.norm != NormKind::layernorm) return;
    ParamSpec b = make(name + ".bias", {C}, l, ParamInit::zeros, 0, -1);
    b.sequence_parallel_partial = true;
    table.add(std::move(b));
  };
  // The vocabulary's rows: the token embedding, and the output layer when it is not tied to it.
  auto vocabulary = [&](const std::string& name, int layer) {
    ParamSpec v = make(name, {c.padded_vocab_size, C}, layer, ParamInit::normal, 0.02f, 0);
    v.real_rows = c.vocab_size;
    v.tied_to_head = layer < 0 && c.tie_embeddings;
    table.add(std::move(v));
  };

  vocabulary(names.token_embedding, -1);
  if (c.position == PositionKind::learned)
    table.add(make(names.position_embedding, {c.max_seq_len, C}, -1, ParamInit::normal, 0.02f, -1));
  for (int l = 0; l < int(L); ++l) {
    norm(block_name(names.norm1, l), l);
    linear(names.qkv, names.qkv_parts, q + 2 * kv, C, l, 0.02f, 0, {q, kv, kv});
    linear(names.attn_out, {}, C, q, l, residual_std, 1, {});
    norm(block_name(names.norm2, l), l);
    if (swiglu)
      linear(names.mlp_in, names.mlp_in_parts, 2 * F, C, l, 0.02f, 0, {F, F});
    else
      linear(names.mlp_in, names.mlp_in_parts, F, C, l, 0.02f, 0, {});
    linear(names.mlp_out, {}, C, F, l, residual_std, 1, {});
  }
  norm(names.final_norm, int(L));
  if (!c.tie_embeddings) vocabulary(names.lm_head + ".weight", int(L));
  return table;
}

Tensor table_view(const ParamTable& table, size_t i, const Tensor& flat) {
  Tensor range = flat.flat_range(table.offset(i), table.numel(i));
  return make_tensor(range.data, table[i].shape, flat.dtype, flat.device);
}

DecoderParams decoder_param_views(const ModelConfig& c, const ParamTable& table,
                                  const std::function<Tensor(size_t)>& view) {
  const FamilyNames& names = family(c.family).names;
  auto get = [&](const std::string& name) {
    const int i = table.find(name);
    return i < 0 ? Tensor() : view(size_t(i));
  };
  auto norm = [&](const std::string& name) { return NormParams{get(name + ".weight"), get(name + ".bias")}; };
  auto linear = [&](const std::string& name) { return LinearParams{get(name + ".weight"), get(name + ".bias")}; };
  DecoderParams p;
  p.token_embedding = get(names.token_embedding);
  p.position_embedding = c.position == PositionKind::learned ? get(names.position_embedding) : Tensor();
  for (int l = 0; l < c.n_layer; ++l) {
    BlockParams b;
    b.norm1 = norm(block_name(names.norm1, l));
    b.qkv = linear(block_name(names.qkv, l));
    b.attn_out = linear(block_name(names.attn_out, l));
    b.norm2 = norm(block_name(names.norm2, l));
    b.mlp_in = linear(block_name(names.mlp_in, l));
    b.mlp_out = linear(block_name(names.mlp_out, l));
    p.blocks.push_back(b);
  }
  p.final_norm = norm(names.final_norm);
  p.output = c.tie_embeddings ? p.token_embedding : get(names.lm_head + ".weight");
  return p;
}

namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

// xoshiro256**: small, fast, and fully specified (unlike std::normal_distribution, whose output
// differs between standard libraries).
class Xoshiro256 {
 public:
  explicit Xoshiro256(uint64_t seed) {
    for (auto& w : s_) w = splitmix64(seed);
  }
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace

void initial_values(const ParamSpec& spec, int64_t numel, uint64_t seed, float* out) {
  switch (spec.init) {
    case ParamInit::zeros:
      for (int64_t i = 0; i < numel; ++i) out[i] = 0.0f;
      return;
    case ParamInit::ones:
      for (int64_t i = 0; i < numel; ++i) out[i] = 1.0f;
      return;
    case ParamInit::normal:
      break;
  }
  uint64_t mix = seed ^ fnv1a(spec.name);
  Xoshiro256 rng(splitmix64(mix));
  const double two_pi = 6.283185307179586476925;
  // Box-Muller: each pair of uniforms gives two independent standard normals.
  for (int64_t i = 0; i < numel; i += 2) {
    const double u1 = 1.0 - rng.uniform();  // (0, 1]: log is finite
    const double u2 = rng.uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    out[i] = float(r * std::cos(two_pi * u2) * spec.init_std);
    if (i + 1 < numel) out[i + 1] = float(r * std::sin(two_pi * u2) * spec.init_std);
  }
}

}  // namespace tessera::model
