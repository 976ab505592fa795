#include "model/gpt2_params.h"

#include <cmath>
#include <string>

#include "model/arena.h"

namespace tessera::model {

ParamTable gpt2_param_table(const GPT2Config& config) {
  const int64_t C = config.n_embd, L = config.n_layer;
  const float residual_std = 0.02f / std::sqrt(2.0f * float(L));
  ParamTable table;
  // split_dim says how Megatron would split each parameter across a tensor-parallel group:
  // column-parallel c_attn/c_fc along dim 0 (weight and bias), row-parallel c_proj weights along
  // dim 1, the vocab-parallel embedding along its rows; everything else is replicated.
  auto matrix = [&](std::string name, int64_t rows, int64_t cols, int layer, float std, int split, int parts = 1) {
    ParamSpec s;
    s.name = std::move(name);
    s.shape = {rows, cols};
    s.layer = layer;
    s.weight_decay = true;
    s.init = ParamInit::normal;
    s.init_std = std;
    s.split_dim = split;
    s.split_parts = parts;
    table.add(std::move(s));
  };
  auto vector = [&](std::string name, int64_t n, int layer, ParamInit init, int split, int parts = 1) {
    ParamSpec s;
    s.name = std::move(name);
    s.shape = {n};
    s.layer = layer;
    s.weight_decay = false;
    s.init = init;
    s.init_std = 0.0f;
    s.split_dim = split;
    s.split_parts = parts;
    table.add(std::move(s));
  };
  matrix("transformer.wte.weight", config.padded_vocab_size, C, -1, 0.02f, 0);
  matrix("transformer.wpe.weight", config.max_seq_len, C, -1, 0.02f, -1);
  for (int l = 0; l < L; ++l) {
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    vector(p + "ln_1.weight", C, l, ParamInit::ones, -1);
    vector(p + "ln_1.bias", C, l, ParamInit::zeros, -1);
    // q|k|v packed: each of the three is split by heads, so a rank holds its heads' q, k and v.
    matrix(p + "attn.c_attn.weight", 3 * C, C, l, 0.02f, 0, 3);
    vector(p + "attn.c_attn.bias", 3 * C, l, ParamInit::zeros, 0, 3);
    matrix(p + "attn.c_proj.weight", C, C, l, residual_std, 1);
    vector(p + "attn.c_proj.bias", C, l, ParamInit::zeros, -1);
    vector(p + "ln_2.weight", C, l, ParamInit::ones, -1);
    vector(p + "ln_2.bias", C, l, ParamInit::zeros, -1);
    matrix(p + "mlp.c_fc.weight", 4 * C, C, l, 0.02f, 0);
    vector(p + "mlp.c_fc.bias", 4 * C, l, ParamInit::zeros, 0);
    matrix(p + "mlp.c_proj.weight", C, 4 * C, l, residual_std, 1);
    vector(p + "mlp.c_proj.bias", C, l, ParamInit::zeros, -1);
  }
  vector("transformer.ln_f.weight", C, int(L), ParamInit::ones, -1);
  vector("transformer.ln_f.bias", C, int(L), ParamInit::zeros, -1);
  return table;
}

Tensor table_view(const ParamTable& table, size_t i, const Tensor& flat) {
  Tensor range = flat.flat_range(table.offset(i), table.numel(i));
  return make_tensor(range.data, table[i].shape, flat.dtype, flat.device);
}

GPT2Params gpt2_param_views(const ParamTable& table, const GPT2Config& config, const Tensor& flat) {
  // A table of one rank's parameters lacks other stages' entries: their views stay empty.
  auto view = [&](const std::string& name) {
    const int i = table.find(name);
    return i < 0 ? Tensor() : table_view(table, size_t(i), flat);
  };
  GPT2Params p;
  p.wte = view("transformer.wte.weight");
  p.wpe = view("transformer.wpe.weight");
  for (int l = 0; l < config.n_layer; ++l) {
    const std::string n = "transformer.h." + std::to_string(l) + ".";
    BlockParams b;
    b.ln1w = view(n + "ln_1.weight");
    b.ln1b = view(n + "ln_1.bias");
    b.qkvw = view(n + "attn.c_attn.weight");
    b.qkvb = view(n + "attn.c_attn.bias");
    b.attprojw = view(n + "attn.c_proj.weight");
    b.attprojb = view(n + "attn.c_proj.bias");
    b.ln2w = view(n + "ln_2.weight");
    b.ln2b = view(n + "ln_2.bias");
    b.fcw = view(n + "mlp.c_fc.weight");
    b.fcb = view(n + "mlp.c_fc.bias");
    b.fcprojw = view(n + "mlp.c_proj.weight");
    b.fcprojb = view(n + "mlp.c_proj.bias");
    p.blocks.push_back(b);
  }
  p.lnfw = view("transformer.ln_f.weight");
  p.lnfb = view("transformer.ln_f.bias");
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
