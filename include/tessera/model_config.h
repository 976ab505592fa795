// What model to build: one decoder-only transformer description for every family. A family
// (GPT-2, LLaMA) is a set of presets, Hugging Face names and formats, and its choices of the
// decoder's pieces: the norm, the position encoding, the MLP, biases, and whether the output layer
// is tied to the embedding. Sizes and choices can be combined freely ("custom").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

enum class NormKind { layernorm, rmsnorm };
enum class PositionKind { learned, rope };  // a learned table added to the embedding, or rotary (q and k)
enum class MlpKind { gelu, swiglu };        // gelu(x W1) W2, or (silu(x Wg) * x Wu) W2

// Llama 3.1's rotary frequency scaling (Hugging Face's "rope_type": "llama3"): wavelengths longer
// than original_max_position / low_freq_factor are divided by factor, shorter than
// original_max_position / high_freq_factor kept, and those between blended. factor 0: none.
struct RopeScaling {
  float factor = 0.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position = 8192;
  bool operator==(const RopeScaling& o) const;
};

struct ModelConfig {
  std::string family = "gpt2";  // "gpt2" or "llama": parameter names and the Hugging Face format
  int n_layer = 0, n_head = 0;
  int n_kv_head = 0;            // key/value heads (grouped-query attention); n_head: multi-head
  int n_embd = 0;               // channels; n_head * head size
  int ffn_dim = 0;              // MLP width (GPT-2: 4 * n_embd)
  int vocab_size = 0;           // real vocabulary
  int padded_vocab_size = 0;    // rows of the embedding and output layer: vocab rounded up to 128
  int max_seq_len = 0;
  NormKind norm = NormKind::layernorm;
  float norm_eps = 1e-5f;       // LayerNorm's is fixed at 1e-5
  PositionKind position = PositionKind::learned;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  MlpKind mlp = MlpKind::gelu;
  bool bias = true;             // biases in every linear (a LayerNorm always has its own)
  bool tie_embeddings = true;   // the output layer is the token embedding

  // Presets of every family: "tiny", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl" (GPT-2),
  // "llama-tiny", "llama3.2-1b", "llama3.1-8b", "llama3.1-70b", "llama3.1-405b" (LLaMA).
  // config_error listing them for another name.
  static ModelConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();
  // A family's choices with these sizes: GPT-2 (LayerNorm, learned positions, GELU MLP of 4C,
  // biases, tied head).
  static ModelConfig gpt2(int n_layer, int n_head, int n_embd, int vocab_size, int max_seq_len);
  // LLaMA (RMSNorm, RoPE with theta 500000, SwiGLU, no biases, untied head).
  static ModelConfig llama(int n_layer, int n_head, int n_kv_head, int n_embd, int ffn_dim, int vocab_size,
                           int max_seq_len);
  // The family's choices (norm, positions, MLP, biases, tying, rope theta) with sizes unset;
  // config_error naming the families for an unknown one.
  static ModelConfig family_defaults(const std::string& family);
  // A family's choices with these sizes, multi-head attention and the family's MLP width (GPT-2:
  // 4C; LLaMA: Meta's SwiGLU sizing, 8C/3 rounded up to a multiple of 256).
  static ModelConfig custom(const std::string& family, int n_layer, int n_head, int n_embd, int vocab_size,
                            int max_seq_len);
  static int pad_vocab(int vocab_size);

  // Throws config_error for non-positive sizes, n_embd not divisible by n_head, n_head not
  // divisible by n_kv_head, an odd head size with RoPE, a padded vocabulary smaller than the real one.
  void validate() const;
  int head_size() const { return n_embd / n_head; }
  // Real parameters: the tied embedding counted once, padded vocabulary rows excluded.
  int64_t parameter_count() const;
  // Training FLOPs per token for MFU, PaLM's convention (appendix B): 6N + 12*L*C*T, N the
  // parameters that take part in a matmul (all but the lookup tables: the learned position table,
  // and the token embedding when the output layer is not tied to it; SwiGLU's three matrices and
  // GQA's smaller key/value projections count as they are), and 12*L*C*T the attention scores and
  // weighted values over T positions (every query head; causal savings not counted).
  double flops_per_token(int T) const;
  // llm.c's estimate: 6N + 6*L*C*T with N = every real parameter.
  double flops_per_token_llmc(int T) const;
  // e.g. "GPT-2 L=12 H=12 C=768 V=50257 (padded 50304) T<=1024, 124.4M parameters"
  std::string describe() const;

  // Every field as a JSON object (checkpoints, calibration files); from_json reads it back, and
  // reads an object without "family" (checkpoints before LLaMA) as GPT-2. data_error naming
  // `where` and the key for a malformed object.
  std::string to_json() const;
  static ModelConfig from_json(const std::string& json, const std::string& where);

  bool operator==(const ModelConfig& o) const;
  bool operator!=(const ModelConfig& o) const { return !(*this == o); }
};

const char* norm_kind_name(NormKind k);   // "layernorm", "rmsnorm"
NormKind parse_norm_kind(const std::string& s);  // config_error naming --norm for another value

}  // namespace tessera
