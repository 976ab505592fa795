// GPT-2 (Radford et al. 2019; Hugging Face's GPT2LMHeadModel): LayerNorm, learned positions, a
// GELU (tanh) MLP, biases everywhere, the output layer tied to the token embedding.
#include <fmt/format.h>

#include <cmath>

#include "model/family.h"
#include "tessera/error.h"

namespace tessera {

ModelConfig ModelConfig::gpt2(int n_layer, int n_head, int n_embd, int vocab_size, int max_seq_len) {
  ModelConfig c;
  c.family = "gpt2";
  c.n_layer = n_layer;
  c.n_head = n_head;
  c.n_kv_head = n_head;
  c.n_embd = n_embd;
  c.ffn_dim = 4 * n_embd;
  c.vocab_size = vocab_size;
  c.padded_vocab_size = pad_vocab(vocab_size);
  c.max_seq_len = max_seq_len;
  c.norm = NormKind::layernorm;
  c.norm_eps = 1e-5f;
  c.position = PositionKind::learned;
  c.mlp = MlpKind::gelu;
  c.bias = true;
  c.tie_embeddings = true;
  return c;
}

namespace model {

namespace {

ModelConfig read_config(const json::Value& v, const std::string& path) {
  auto integer = [&](const char* key) -> int {
    const json::Value* x = v.find(key);
    if (!x) throw data_error(fmt::format("missing key \"{}\"", key), path, "is this a GPT-2 config.json?");
    if (!x->is_integer() || x->as_int64() <= 0 || x->as_int64() > (int64_t(1) << 31) - 1)
      throw data_error(fmt::format("key \"{}\" must be a positive integer, got {}", key, x->dump()), path);
    return int(x->as_int64());
  };
  auto unsupported = [&](const std::string& what) {
    return config_error(fmt::format("{}: {}", path, what), "tessera imports plain GPT-2 (GPT2LMHeadModel) models",
                        path);
  };
  if (const json::Value* a = v.find("activation_function"); a) {
    // tessera's GELU is the tanh approximation, which both of these names denote.
    if (!a->is_string() || (a->as_string() != "gelu_new" && a->as_string() != "gelu_pytorch_tanh"))
      throw unsupported(fmt::format("key \"activation_function\" is {}; tessera computes gelu_new", a->dump()));
  }
  if (const json::Value* e = v.find("layer_norm_epsilon"); e && (!e->is_number() || std::fabs(e->as_double() - 1e-5) > 1e-12))
    throw unsupported(fmt::format("key \"layer_norm_epsilon\" is {}; tessera's LayerNorm uses 1e-5", e->dump()));
  for (const char* flag : {"scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"}) {
    if (const json::Value* f = v.find(flag); f && f->is_bool() && f->as_bool())
      throw unsupported(fmt::format("key \"{}\" is true, which tessera does not implement", flag));
  }
  if (const json::Value* f = v.find("scale_attn_weights"); f && f->is_bool() && !f->as_bool())
    throw unsupported("key \"scale_attn_weights\" is false; tessera scales attention by 1/sqrt(head size)");
  if (const json::Value* t = v.find("tie_word_embeddings"); t && t->is_bool() && !t->as_bool())
    throw unsupported("key \"tie_word_embeddings\" is false; GPT-2's output layer is tied to wte");

  const int n_layer = integer("n_layer"), n_head = integer("n_head"), n_embd = integer("n_embd");
  const int vocab_size = integer("vocab_size");
  // Older configs give the context length as n_ctx only.
  const int n_positions = v.contains("n_positions") || !v.contains("n_ctx") ? integer("n_positions") : integer("n_ctx");
  ModelConfig config = ModelConfig::gpt2(n_layer, n_head, n_embd, vocab_size, n_positions);
  if (const json::Value* inner = v.find("n_inner"); inner && !inner->is_null()) config.ffn_dim = integer("n_inner");
  return config;
}

json::Value write_config(const ModelConfig& c) {
  const ModelConfig d = ModelConfig::gpt2(0, 0, 0, 0, 0);
  if (c.norm != d.norm || c.position != d.position || c.mlp != d.mlp || c.bias != d.bias || !c.tie_embeddings ||
      c.n_kv_head != c.n_head)
    throw config_error("Hugging Face's GPT-2 format holds LayerNorm, learned positions, a GELU MLP, biases, "
                       "multi-head attention and a tied output layer; this model differs: " + c.describe(),
                       "export a model of GPT-2's own pieces, or choose --family llama");
  json::Value v = json::Value::object();
  json::Value architectures = json::Value::array();
  architectures.push_back("GPT2LMHeadModel");
  v.set("activation_function", "gelu_new");
  v.set("architectures", architectures);
  v.set("attn_pdrop", 0.0);
  // GPT-2's end-of-text is the last token of its vocabulary (50256), as in the byte tokenizer (256).
  v.set("bos_token_id", c.vocab_size - 1);
  v.set("embd_pdrop", 0.0);
  v.set("eos_token_id", c.vocab_size - 1);
  v.set("initializer_range", 0.02);
  v.set("layer_norm_epsilon", 1e-5);
  v.set("model_type", "gpt2");
  v.set("n_ctx", c.max_seq_len);
  v.set("n_embd", c.n_embd);
  v.set("n_head", c.n_head);
  v.set("n_inner", c.ffn_dim == 4 * c.n_embd ? json::Value(nullptr) : json::Value(c.ffn_dim));
  v.set("n_layer", c.n_layer);
  v.set("n_positions", c.max_seq_len);
  v.set("reorder_and_upcast_attn", false);
  v.set("resid_pdrop", 0.0);
  v.set("scale_attn_by_inverse_layer_idx", false);
  v.set("scale_attn_weights", true);
  v.set("tie_word_embeddings", true);
  v.set("torch_dtype", "float32");
  v.set("use_cache", true);
  v.set("vocab_size", c.vocab_size);
  return v;
}

Family make_family() {
  Family f;
  f.name = "gpt2";
  f.display_name = "GPT-2";
  f.hf_model_type = "gpt2";
  f.hf_architecture = "GPT2LMHeadModel";
  FamilyNames& n = f.names;
  n.token_embedding = "transformer.wte.weight";
  n.position_embedding = "transformer.wpe.weight";
  n.norm1 = "transformer.h.{}.ln_1";
  n.qkv = "transformer.h.{}.attn.c_attn";
  n.attn_out = "transformer.h.{}.attn.c_proj";
  n.norm2 = "transformer.h.{}.ln_2";
  n.mlp_in = "transformer.h.{}.mlp.c_fc";
  n.mlp_out = "transformer.h.{}.mlp.c_proj";
  n.final_norm = "transformer.ln_f";
  n.lm_head = "lm_head";
  n.transposed_linears = true;
  f.hf_ignored_suffixes = {".attn.bias", ".attn.masked_bias"};  // causal-mask buffers
  f.defaults = ModelConfig::gpt2(0, 0, 0, 0, 0);
  f.ffn_dim_for = [](int n_embd) { return 4 * n_embd; };
  f.presets = {{"tiny", ModelConfig::gpt2(4, 4, 128, 257, 256)},
               {"gpt2", ModelConfig::gpt2(12, 12, 768, 50257, 1024)},
               {"gpt2-medium", ModelConfig::gpt2(24, 16, 1024, 50257, 1024)},
               {"gpt2-large", ModelConfig::gpt2(36, 20, 1280, 50257, 1024)},
               {"gpt2-xl", ModelConfig::gpt2(48, 25, 1600, 50257, 1024)}};
  f.read_hf_config = read_config;
  f.write_hf_config = write_config;
  return f;
}

}  // namespace

const Family& gpt2_family() {
  static const Family f = make_family();
  return f;
}

}  // namespace model
}  // namespace tessera
