// Transformer shapes for the planner: parameter counts and model FLOPs (see plan.h for the convention).
#include <algorithm>
#include <cstdio>

#include "tessera/error.h"
#include "tessera/model_config.h"
#include "tessera/plan.h"

namespace tessera::plan {

ModelShape ModelShape::gpt(int64_t layers, int64_t hidden, int64_t heads, int64_t vocab, int64_t seq_len) {
  ModelShape m;
  m.name = "gpt";
  m.layers = layers, m.hidden = hidden, m.heads = heads, m.kv_heads = heads, m.ffn = 4 * hidden;
  m.vocab = vocab, m.seq_len = seq_len;
  return m;
}

ModelShape ModelShape::llama(int64_t layers, int64_t hidden, int64_t heads, int64_t kv_heads, int64_t ffn, int64_t vocab,
                              int64_t seq_len) {
  ModelShape m;
  m.name = "llama";
  m.layers = layers, m.hidden = hidden, m.heads = heads, m.kv_heads = kv_heads, m.ffn = ffn;
  m.vocab = vocab, m.seq_len = seq_len;
  m.gated_mlp = true, m.tied_embedding = false, m.dropout = false, m.learned_positions = false;
  return m;
}

ModelShape ModelShape::preset(const std::string& name) {
  ModelShape m;
  if (name == "gpt2") m = gpt(12, 768, 12, 50257, 1024);
  else if (name == "gpt2-medium") m = gpt(24, 1024, 16, 50257, 1024);
  else if (name == "gpt2-large") m = gpt(36, 1280, 20, 50257, 1024);
  else if (name == "gpt2-xl") m = gpt(48, 1600, 25, 50257, 1024);
  else if (name == "gpt3-175b") m = gpt(96, 12288, 96, 50257, 2048);
  else if (name == "mcore-177b") m = gpt(96, 12288, 96, 131072, 4096);  // Megatron-Core's benchmark GPT-3
  else if (name == "llama2-7b") m = llama(32, 4096, 32, 32, 11008, 32000, 4096);
  else if (name == "llama2-13b") m = llama(40, 5120, 40, 40, 13824, 32000, 4096);
  else if (name == "llama2-70b") m = llama(80, 8192, 64, 8, 28672, 32000, 4096);
  else if (name == "llama3-8b") m = llama(32, 4096, 32, 8, 14336, 128256, 8192);
  else if (name == "llama3-70b") m = llama(80, 8192, 64, 8, 28672, 128256, 8192);
  else if (name == "llama3-405b") m = llama(126, 16384, 128, 8, 53248, 128256, 8192);
  else if (const auto& trained = ModelConfig::preset_names(); std::count(trained.begin(), trained.end(), name))
    m = of(ModelConfig::preset(name));  // tessera-train's names mean the same model here
  else
    throw config_error("unknown model '" + name + "'",
                       "use --model gpt2, gpt2-medium, gpt2-large, gpt2-xl, gpt3-175b, mcore-177b, llama2-7b, llama2-13b, llama2-70b, "
                       "llama3-8b, llama3-70b, llama3-405b, one of tessera-train's presets, or custom with --layers --hidden --heads ...");
  m.name = name;
  return m;
}

ModelShape ModelShape::of(const ModelConfig& c) {
  // A model whose rotary frequencies are scaled to a longer context is pretrained at the original one.
  const int seq_len = c.position == PositionKind::rope && c.rope_scaling.factor > 0
                          ? std::min(c.max_seq_len, c.rope_scaling.original_max_position)
                          : c.max_seq_len;
  ModelShape m = c.mlp == MlpKind::swiglu
                     ? llama(c.n_layer, c.n_embd, c.n_head, c.n_kv_head, c.ffn_dim, c.vocab_size, seq_len)
                     : gpt(c.n_layer, c.n_embd, c.n_head, c.vocab_size, seq_len);
  m.ffn = c.ffn_dim;
  m.kv_heads = c.n_kv_head;
  m.tied_embedding = c.tie_embeddings;
  m.learned_positions = c.position == PositionKind::learned;
  return m;
}

void ModelShape::validate() const {
  auto in_range = [](int64_t v, int64_t max, const char* flag) {
    if (v <= 0) throw config_error(std::string("model size ") + flag + " must be positive", std::string("set ") + flag);
    if (v > max)
      throw config_error(std::string("model size ") + flag + " " + std::to_string(v) + " is larger than the planner handles (at most " +
                             std::to_string(max) + ")",
                         std::string("check ") + flag);
  };
  in_range(layers, kMaxLayers, "--layers"), in_range(hidden, kMaxHidden, "--hidden"), in_range(heads, hidden, "--heads");
  in_range(kv_heads, heads, "--kv-heads"), in_range(ffn, kMaxFfn, "--ffn"), in_range(vocab, kMaxVocab, "--vocab");
  in_range(seq_len, kMaxSeqLen, "--seq-len");
  if (hidden % heads != 0) throw config_error("--heads must divide --hidden", "pick heads dividing the hidden size");
  if (heads % kv_heads != 0) throw config_error("--kv-heads must divide --heads", "pick kv heads dividing heads");
}

double ModelShape::layer_parameters() const {
  const double h = hidden, f = ffn, kv = double(kv_heads) * head_dim();
  const double attention = h * (h + 2 * kv) + h * h;
  const double mlp = (gated_mlp ? 3 : 2) * h * f;
  const double small = gated_mlp ? 2 * h : (4 * h + (h + 2 * kv) + h + f + h);  // norms (+ biases)
  return attention + mlp + small;
}

double ModelShape::embedding_parameters() const {
  double p = double(vocab) * hidden;
  if (!tied_embedding) p *= 2;
  if (learned_positions) p += double(seq_len) * hidden;
  return p + (gated_mlp ? 1 : 2) * double(hidden);  // final norm
}

double ModelShape::parameters() const { return double(layers) * layer_parameters() + embedding_parameters(); }

double ModelShape::layer_forward_flops_per_token() const {
  const double h = hidden, f = ffn, kv = double(kv_heads) * head_dim();
  const double linear = 2 * (h * (h + 2 * kv) + h * h + (gated_mlp ? 3 : 2) * h * f);
  const double attention = 4.0 * double(seq_len) * h;  // QK^T and AV over every position
  return linear + attention;
}

double ModelShape::logits_forward_flops_per_token() const { return 2.0 * hidden * vocab; }

double ModelShape::model_flops_per_sequence() const {
  return 3.0 * double(seq_len) * (double(layers) * layer_forward_flops_per_token() + logits_forward_flops_per_token());
}

double ModelShape::hardware_flops_per_sequence_full_recompute() const {
  return model_flops_per_sequence() + double(seq_len) * double(layers) * layer_forward_flops_per_token();
}

std::string ModelShape::describe() const {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s: L=%lld h=%lld heads=%lld kv=%lld ffn=%lld V=%lld s=%lld%s, %.2fB parameters",
                name.c_str(), (long long)layers, (long long)hidden, (long long)heads, (long long)kv_heads, (long long)ffn,
                (long long)vocab, (long long)seq_len, gated_mlp ? " (SwiGLU)" : "", parameters() / 1e9);
  return buf;
}

}  // namespace tessera::plan
