// LLaMA (Touvron et al. 2023; Llama 3, Grattafiori et al. 2024; Hugging Face's LlamaForCausalLM):
// RMSNorm, rotary positions (Hugging Face's rotate-half convention, Llama 3.1's frequency scaling),
// a SwiGLU MLP, grouped-query attention, no biases, an untied output layer (tied in Llama 3.2 1B).
// Hugging Face keeps q, k, v and gate, up as tensors of their own; tessera packs each group into
// one column-parallel linear whose parts split across tensor-parallel ranks one by one.
#include <fmt/format.h>

#include <cmath>

#include "model/family.h"
#include "tessera/error.h"

namespace tessera {

ModelConfig ModelConfig::llama(int n_layer, int n_head, int n_kv_head, int n_embd, int ffn_dim, int vocab_size,
                               int max_seq_len) {
  ModelConfig c;
  c.family = "llama";
  c.n_layer = n_layer;
  c.n_head = n_head;
  c.n_kv_head = n_kv_head;
  c.n_embd = n_embd;
  c.ffn_dim = ffn_dim;
  c.vocab_size = vocab_size;
  c.padded_vocab_size = pad_vocab(vocab_size);
  c.max_seq_len = max_seq_len;
  c.norm = NormKind::rmsnorm;
  c.norm_eps = 1e-5f;
  c.position = PositionKind::rope;
  c.rope_theta = 500000.0f;
  c.mlp = MlpKind::swiglu;
  c.bias = false;
  c.tie_embeddings = false;
  return c;
}

namespace model {

namespace {

// Llama 3.1's published shapes: 128K context through frequency scaling of an 8K original.
ModelConfig llama31(int n_layer, int n_head, int n_embd, int ffn_dim, bool tied, float factor) {
  ModelConfig c = ModelConfig::llama(n_layer, n_head, 8, n_embd, ffn_dim, 128256, 131072);
  c.rope_scaling.factor = factor;
  c.rope_scaling.low_freq_factor = 1.0f;
  c.rope_scaling.high_freq_factor = 4.0f;
  c.rope_scaling.original_max_position = 8192;
  c.tie_embeddings = tied;
  return c;
}

// The CPU-sized model of the demo and the tests: the byte vocabulary, two query heads per
// key/value head, a short context (and the short-context theta).
ModelConfig llama_tiny() {
  ModelConfig c = ModelConfig::llama(4, 4, 2, 128, 384, 257, 256);
  c.rope_theta = 10000.0f;
  return c;
}

ModelConfig read_config(const json::Value& v, const std::string& path) {
  auto integer = [&](const char* key) -> int {
    const json::Value* x = v.find(key);
    if (!x) throw data_error(fmt::format("missing key \"{}\"", key), path, "is this a LLaMA config.json?");
    if (!x->is_integer() || x->as_int64() <= 0 || x->as_int64() > (int64_t(1) << 31) - 1)
      throw data_error(fmt::format("key \"{}\" must be a positive integer, got {}", key, x->dump()), path);
    return int(x->as_int64());
  };
  auto number = [&](const json::Value& obj, const char* key, double fallback) {
    const json::Value* x = obj.find(key);
    if (!x || x->is_null()) return fallback;
    if (!x->is_number()) throw data_error(fmt::format("key \"{}\" must be a number, got {}", key, x->dump()), path);
    return x->as_double();
  };
  auto flag = [&](const char* key, bool fallback) {
    const json::Value* x = v.find(key);
    if (!x || x->is_null()) return fallback;
    if (!x->is_bool()) throw data_error(fmt::format("key \"{}\" must be true or false, got {}", key, x->dump()), path);
    return x->as_bool();
  };
  auto unsupported = [&](const std::string& what) {
    return config_error(fmt::format("{}: {}", path, what), "tessera imports LlamaForCausalLM models", path);
  };
  if (const json::Value* a = v.find("hidden_act"); a && (!a->is_string() || a->as_string() != "silu"))
    throw unsupported(fmt::format("key \"hidden_act\" is {}; tessera's SwiGLU gates with silu", a->dump()));
  const bool attention_bias = flag("attention_bias", false), mlp_bias = flag("mlp_bias", false);
  if (attention_bias != mlp_bias)
    throw unsupported("keys \"attention_bias\" and \"mlp_bias\" differ; tessera gives every linear a bias or none");

  const int n_layer = integer("num_hidden_layers"), n_head = integer("num_attention_heads");
  const int n_kv_head = v.contains("num_key_value_heads") && !v.at("num_key_value_heads").is_null()
                            ? integer("num_key_value_heads")
                            : n_head;
  const int n_embd = integer("hidden_size");
  ModelConfig c = ModelConfig::llama(n_layer, n_head, n_kv_head, n_embd, integer("intermediate_size"),
                                     integer("vocab_size"), integer("max_position_embeddings"));
  if (const json::Value* h = v.find("head_dim"); h && !h->is_null() && (!h->is_integer() || h->as_int64() * n_head != n_embd))
    throw unsupported(fmt::format("key \"head_dim\" is {}; tessera's head size is hidden_size / num_attention_heads = {}",
                                  h->dump(), n_embd / n_head));
  c.bias = attention_bias;
  c.tie_embeddings = flag("tie_word_embeddings", false);
  c.norm_eps = float(number(v, "rms_norm_eps", 1e-6));  // LlamaConfig's default
  // Rotary positions: Transformers 5 writes "rope_parameters" (theta inside), older versions
  // "rope_theta" beside an optional "rope_scaling".
  const json::Value* rope = v.find("rope_parameters");
  if (!rope || rope->is_null()) rope = v.find("rope_scaling");
  c.rope_theta = float(number(v, "rope_theta", 10000.0));  // LlamaConfig's default
  if (rope && !rope->is_null()) {
    if (!rope->is_object()) throw data_error("key \"rope_scaling\" / \"rope_parameters\" must be an object", path);
    c.rope_theta = float(number(*rope, "rope_theta", c.rope_theta));
    std::string type = "default";
    if (const json::Value* t = rope->find("rope_type")) type = t->as_string();
    else if (const json::Value* t2 = rope->find("type")) type = t2->as_string();
    if (type == "llama3") {
      c.rope_scaling.factor = float(number(*rope, "factor", 0));
      c.rope_scaling.low_freq_factor = float(number(*rope, "low_freq_factor", 1));
      c.rope_scaling.high_freq_factor = float(number(*rope, "high_freq_factor", 4));
      c.rope_scaling.original_max_position = int(number(*rope, "original_max_position_embeddings", 8192));
      if (!(c.rope_scaling.factor > 0)) throw unsupported("llama3 rope scaling without a positive \"factor\"");
    } else if (type != "default") {
      throw unsupported(fmt::format("rope type \"{}\"; tessera implements default and llama3", type));
    }
  }
  return c;
}

json::Value write_config(const ModelConfig& c) {
  const ModelConfig d = ModelConfig::llama(0, 0, 0, 0, 0, 0, 0);
  if (c.norm != d.norm || c.position != d.position || c.mlp != d.mlp)
    throw config_error("Hugging Face's LLaMA format holds RMSNorm, rotary positions and a SwiGLU MLP; this model "
                       "differs: " + c.describe(),
                       "export a model of LLaMA's own pieces, or choose --family gpt2");
  json::Value v = json::Value::object();
  json::Value architectures = json::Value::array();
  architectures.push_back("LlamaForCausalLM");
  v.set("architectures", architectures);
  v.set("attention_bias", c.bias);
  v.set("attention_dropout", 0.0);
  // Llama 3's tokenizer: <|begin_of_text|> 128000, <|end_of_text|> 128001; otherwise the last
  // token (the byte tokenizer's end of text, 256).
  const bool llama3_vocab = c.vocab_size == 128256;
  v.set("bos_token_id", llama3_vocab ? 128000 : c.vocab_size - 1);
  v.set("eos_token_id", llama3_vocab ? 128001 : c.vocab_size - 1);
  v.set("head_dim", c.head_size());
  v.set("hidden_act", "silu");
  v.set("hidden_size", c.n_embd);
  v.set("initializer_range", 0.02);
  v.set("intermediate_size", c.ffn_dim);
  v.set("max_position_embeddings", c.max_seq_len);
  v.set("mlp_bias", c.bias);
  v.set("model_type", "llama");
  v.set("num_attention_heads", c.n_head);
  v.set("num_hidden_layers", c.n_layer);
  v.set("num_key_value_heads", c.n_kv_head);
  v.set("pretraining_tp", 1);
  v.set("rms_norm_eps", double(c.norm_eps));
  if (c.rope_scaling.factor > 0) {
    json::Value scaling = json::Value::object();
    scaling.set("factor", double(c.rope_scaling.factor));
    scaling.set("high_freq_factor", double(c.rope_scaling.high_freq_factor));
    scaling.set("low_freq_factor", double(c.rope_scaling.low_freq_factor));
    scaling.set("original_max_position_embeddings", c.rope_scaling.original_max_position);
    scaling.set("rope_type", "llama3");
    v.set("rope_scaling", scaling);
  } else {
    v.set("rope_scaling", nullptr);
  }
  v.set("rope_theta", double(c.rope_theta));
  v.set("tie_word_embeddings", c.tie_embeddings);
  v.set("torch_dtype", "float32");
  v.set("use_cache", true);
  v.set("vocab_size", c.vocab_size);
  return v;
}

Family make_family() {
  Family f;
  f.name = "llama";
  f.display_name = "LLaMA";
  f.hf_model_type = "llama";
  f.hf_architecture = "LlamaForCausalLM";
  FamilyNames& n = f.names;
  n.token_embedding = "model.embed_tokens.weight";
  n.norm1 = "model.layers.{}.input_layernorm";
  n.qkv = "model.layers.{}.self_attn.qkv_proj";
  n.qkv_parts = {"model.layers.{}.self_attn.q_proj", "model.layers.{}.self_attn.k_proj",
                 "model.layers.{}.self_attn.v_proj"};
  n.attn_out = "model.layers.{}.self_attn.o_proj";
  n.norm2 = "model.layers.{}.post_attention_layernorm";
  n.mlp_in = "model.layers.{}.mlp.gate_up_proj";
  n.mlp_in_parts = {"model.layers.{}.mlp.gate_proj", "model.layers.{}.mlp.up_proj"};
  n.mlp_out = "model.layers.{}.mlp.down_proj";
  n.final_norm = "model.norm";
  n.lm_head = "lm_head";
  f.hf_ignored_suffixes = {".rotary_emb.inv_freq"};  // a buffer older versions saved
  f.defaults = ModelConfig::llama(0, 0, 0, 0, 0, 0, 0);
  // Meta's SwiGLU width: two thirds of 4C (three matrices instead of two), rounded up to 256.
  f.ffn_dim_for = [](int n_embd) { return (2 * 4 * n_embd / 3 + 255) / 256 * 256; };
  f.presets = {{"llama-tiny", llama_tiny()},
               {"llama3.2-1b", llama31(16, 32, 2048, 8192, true, 32.0f)},
               {"llama3.1-8b", llama31(32, 32, 4096, 14336, false, 8.0f)},
               {"llama3.1-70b", llama31(80, 64, 8192, 28672, false, 8.0f)},
               {"llama3.1-405b", llama31(126, 128, 16384, 53248, false, 8.0f)}};
  f.read_hf_config = read_config;
  f.write_hf_config = write_config;
  return f;
}

}  // namespace

const Family& llama_family() {
  static const Family f = make_family();
  return f;
}

}  // namespace model
}  // namespace tessera
