// Model configurations: presets of every family, validation, counts, descriptions and JSON.
#include <fmt/format.h>

#include "io/json.h"
#include "model/decoder_params.h"
#include "model/family.h"
#include "tessera/error.h"
#include "tessera/model_config.h"

namespace tessera {

namespace {

constexpr int kVocabMultiple = 128;  // embedding rows padded so the output layer's matmul has friendly shapes

const char* position_kind_name(PositionKind k) { return k == PositionKind::learned ? "learned" : "rope"; }
const char* mlp_kind_name(MlpKind k) { return k == MlpKind::gelu ? "gelu" : "swiglu"; }

std::string count_string(double n) {
  return n >= 1e9 ? fmt::format("{:.2f}B", n / 1e9) : n >= 1e6 ? fmt::format("{:.1f}M", n / 1e6) : fmt::format("{:.1f}K", n / 1e3);
}

}  // namespace

bool RopeScaling::operator==(const RopeScaling& o) const {
  return factor == o.factor && low_freq_factor == o.low_freq_factor && high_freq_factor == o.high_freq_factor &&
         original_max_position == o.original_max_position;
}

const char* norm_kind_name(NormKind k) { return k == NormKind::layernorm ? "layernorm" : "rmsnorm"; }

NormKind parse_norm_kind(const std::string& s) {
  if (s == "layernorm") return NormKind::layernorm;
  if (s == "rmsnorm") return NormKind::rmsnorm;
  throw config_error("--norm '" + s + "' is not layernorm or rmsnorm");
}

ModelConfig ModelConfig::preset(const std::string& name) {
  for (const model::Family* f : model::families())
    for (const auto& [preset_name, config] : f->presets)
      if (preset_name == name) return config;
  std::string names;
  for (const std::string& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
  throw config_error("unknown model '" + name + "'", "valid names: " + names + " (or custom with the sizes)");
}

std::vector<std::string> ModelConfig::preset_names() {
  std::vector<std::string> names;
  for (const model::Family* f : model::families())
    for (const auto& preset : f->presets) names.push_back(preset.first);
  return names;
}

ModelConfig ModelConfig::family_defaults(const std::string& family) { return model::family(family).defaults; }

ModelConfig ModelConfig::custom(const std::string& family, int n_layer, int n_head, int n_embd, int vocab_size,
                                int max_seq_len) {
  const model::Family& f = model::family(family);
  ModelConfig c = f.defaults;
  c.n_layer = n_layer;
  c.n_head = n_head;
  c.n_kv_head = n_head;
  c.n_embd = n_embd;
  c.ffn_dim = f.ffn_dim_for(n_embd);
  c.vocab_size = vocab_size;
  c.padded_vocab_size = pad_vocab(vocab_size);
  c.max_seq_len = max_seq_len;
  return c;
}

int ModelConfig::pad_vocab(int vocab_size) {
  if (vocab_size <= 0) return vocab_size;
  return (vocab_size + kVocabMultiple - 1) / kVocabMultiple * kVocabMultiple;
}

void ModelConfig::validate() const {
  const model::Family& f = model::family(family);
  const std::string what = f.display_name + " config";
  auto positive = [&](const char* name, int v) {
    if (v <= 0)
      throw config_error(fmt::format("{}: {} must be positive, got {}", what, name, v),
                         "use ModelConfig::preset, or give every size of a custom model");
  };
  positive("n_layer", n_layer);
  positive("n_head", n_head);
  positive("n_kv_head", n_kv_head);
  positive("n_embd", n_embd);
  positive("ffn_dim", ffn_dim);
  positive("vocab_size", vocab_size);
  positive("max_seq_len", max_seq_len);
  if (n_embd % n_head != 0)
    throw config_error(fmt::format("{}: n_embd {} is not divisible by n_head {}", what, n_embd, n_head),
                       "choose n_embd as a multiple of n_head");
  if (n_head % n_kv_head != 0)
    throw config_error(fmt::format("{}: n_head {} is not divisible by n_kv_head {} (each key/value head serves a "
                                   "group of query heads)",
                                   what, n_head, n_kv_head),
                       "choose --n-kv-head dividing --n-head");
  if (position == PositionKind::rope && head_size() % 2 != 0)
    throw config_error(fmt::format("{}: rotary embeddings rotate pairs of channels, but the head size {} is odd",
                                   what, head_size()),
                       "choose n_embd / n_head even");
  if (position == PositionKind::rope && !(rope_theta > 0))
    throw config_error(fmt::format("{}: rope_theta must be positive, got {}", what, rope_theta));
  if (!(norm_eps > 0)) throw config_error(fmt::format("{}: norm_eps must be positive, got {}", what, norm_eps));
  if (norm == NormKind::layernorm && norm_eps != 1e-5f)
    throw config_error(fmt::format("{}: LayerNorm's epsilon is fixed at 1e-5, got {}", what, norm_eps));
  if (padded_vocab_size < vocab_size)
    throw config_error(fmt::format("{}: padded_vocab_size {} is smaller than vocab_size {}", what, padded_vocab_size,
                                   vocab_size),
                       "set padded_vocab_size = ModelConfig::pad_vocab(vocab_size)");
}

int64_t ModelConfig::parameter_count() const {
  // Every block adds the same parameters, so the tables of one and of two blocks give the count of
  // any depth without building its table (a million layers would take seconds and gigabytes), in
  // long double: sizes that no machine could hold must not overflow (they saturate).
  auto real_parameters = [&](int layers) {
    ModelConfig c = *this;
    c.n_layer = layers;
    const ParamTable table = model::decoder_param_table(c);
    long double n = 0;
    for (const ParamSpec& s : table.specs()) {
      long double numel = s.real_rows > 0 ? (long double)s.real_rows : 1;
      for (size_t d = s.real_rows > 0 ? 1 : 0; d < s.shape.size(); ++d) numel *= (long double)s.shape[d];
      n += numel;
    }
    return n;
  };
  const long double one = real_parameters(1), per_block = real_parameters(2) - one;
  const long double n = (one - per_block) + (long double)n_layer * per_block;
  return n >= (long double)INT64_MAX ? INT64_MAX : int64_t(n);
}

double ModelConfig::flops_per_token(int T) const {
  double N = double(parameter_count());
  if (position == PositionKind::learned) N -= double(max_seq_len) * n_embd;  // a lookup, no matmul
  if (!tie_embeddings) N -= double(vocab_size) * n_embd;                    // the input embedding: a lookup
  return 6.0 * N + 12.0 * n_layer * double(n_embd) * T;
}

double ModelConfig::flops_per_token_llmc(int T) const {
  return 6.0 * double(parameter_count()) + 6.0 * n_layer * double(n_embd) * T;
}

std::string ModelConfig::describe() const {
  const model::Family& f = model::family(family);
  std::string s = fmt::format("{} L={} H={}", f.display_name, n_layer, n_head);
  if (n_kv_head != n_head) s += fmt::format(" KV={}", n_kv_head);
  s += fmt::format(" C={}", n_embd);
  if (ffn_dim != 4 * n_embd) s += fmt::format(" F={}", ffn_dim);
  s += fmt::format(" V={}", vocab_size);
  if (padded_vocab_size != vocab_size) s += fmt::format(" (padded {})", padded_vocab_size);
  s += fmt::format(" T<={}", max_seq_len);
  // The pieces that differ from the family's own.
  const ModelConfig& d = f.defaults;
  if (norm != d.norm) s += norm == NormKind::rmsnorm ? ", RMSNorm" : ", LayerNorm";
  if (position != d.position) s += position == PositionKind::rope ? ", RoPE" : ", learned positions";
  if (position == PositionKind::rope && rope_theta != d.rope_theta) s += fmt::format(" theta {:g}", rope_theta);
  if (mlp != d.mlp) s += mlp == MlpKind::swiglu ? ", SwiGLU" : ", GELU MLP";
  if (bias != d.bias) s += bias ? ", biases" : ", no biases";
  if (tie_embeddings != d.tie_embeddings) s += tie_embeddings ? ", tied" : ", untied";
  return s + ", " + count_string(double(parameter_count())) + " parameters";
}

std::string ModelConfig::to_json() const {
  json::Value v = json::Value::object();
  v["family"] = family;
  v["n_layer"] = n_layer;
  v["n_head"] = n_head;
  v["n_kv_head"] = n_kv_head;
  v["n_embd"] = n_embd;
  v["ffn_dim"] = ffn_dim;
  v["vocab_size"] = vocab_size;
  v["padded_vocab_size"] = padded_vocab_size;
  v["max_seq_len"] = max_seq_len;
  v["norm"] = norm_kind_name(norm);
  v["norm_eps"] = norm_eps;
  v["position"] = position_kind_name(position);
  v["rope_theta"] = rope_theta;
  json::Value scaling = json::Value::object();
  scaling["factor"] = rope_scaling.factor;
  scaling["low_freq_factor"] = rope_scaling.low_freq_factor;
  scaling["high_freq_factor"] = rope_scaling.high_freq_factor;
  scaling["original_max_position"] = rope_scaling.original_max_position;
  v["rope_scaling"] = scaling;
  v["mlp"] = mlp_kind_name(mlp);
  v["bias"] = bias;
  v["tie_embeddings"] = tie_embeddings;
  return v.dump();
}

namespace {

ModelConfig config_from_json(const std::string& text, const std::string& where) {
  const json::Value v = json::parse(text, where);
  if (!v.is_object()) throw data_error("a model configuration must be a JSON object", where);
  auto integer = [&](const char* key) { return int(v.at(key).as_int64()); };
  auto choice = [&](const char* key, std::initializer_list<const char*> names) {
    const std::string& s = v.at(key).as_string();
    int i = 0;
    for (const char* n : names) {
      if (s == n) return i;
      ++i;
    }
    throw data_error(fmt::format("model key \"{}\" is \"{}\", which this build does not know", key, s), where);
  };
  // Written before LLaMA: a GPT-2, six sizes.
  const bool old_gpt2 = !v.contains("family");
  ModelConfig c = ModelConfig::gpt2(0, 0, 0, 0, 0);
  if (!old_gpt2) {
    c.family = v.at("family").as_string();
    bool known = false;
    for (const model::Family* f : model::families()) known = known || f->name == c.family;
    if (!known) throw data_error("unknown model family \"" + c.family + "\"", where);
  }
  c.n_layer = integer("n_layer");
  c.n_head = integer("n_head");
  c.n_embd = integer("n_embd");
  c.vocab_size = integer("vocab_size");
  c.padded_vocab_size = integer("padded_vocab_size");
  c.max_seq_len = integer("max_seq_len");
  c.n_kv_head = c.n_head;
  c.ffn_dim = 4 * c.n_embd;
  if (old_gpt2) return c;
  c.n_kv_head = integer("n_kv_head");
  c.ffn_dim = integer("ffn_dim");
  c.norm = NormKind(choice("norm", {"layernorm", "rmsnorm"}));
  c.norm_eps = float(v.at("norm_eps").as_double());
  c.position = PositionKind(choice("position", {"learned", "rope"}));
  c.rope_theta = float(v.at("rope_theta").as_double());
  const json::Value& scaling = v.at("rope_scaling");
  c.rope_scaling.factor = float(scaling.at("factor").as_double());
  c.rope_scaling.low_freq_factor = float(scaling.at("low_freq_factor").as_double());
  c.rope_scaling.high_freq_factor = float(scaling.at("high_freq_factor").as_double());
  c.rope_scaling.original_max_position = int(scaling.at("original_max_position").as_int64());
  c.mlp = MlpKind(choice("mlp", {"gelu", "swiglu"}));
  c.bias = v.at("bias").as_bool();
  c.tie_embeddings = v.at("tie_embeddings").as_bool();
  return c;
}

}  // namespace

ModelConfig ModelConfig::from_json(const std::string& text, const std::string& where) {
  try {
    return config_from_json(text, where);
  } catch (const Error& e) {
    if (e.where() == where) throw;
    throw data_error("model configuration: " + e.what_happened(), where, "was it written by another version of tessera?");
  }
}

bool ModelConfig::operator==(const ModelConfig& o) const { return to_json() == o.to_json(); }

}  // namespace tessera
