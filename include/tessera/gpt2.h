// GPT-2: configuration, and a model whose forward and backward passes are written by hand over
// the kernels (as llm.c). Parameters live in one flat buffer described by a ParamTable;
// gradients in a second, float32, flat buffer of the same layout; activations in one arena.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "tessera/context.h"
#include "tessera/param_table.h"
#include "tessera/tensor.h"

namespace tessera {

struct GPT2Config {
  int n_layer = 0, n_head = 0, n_embd = 0;
  int vocab_size = 0;          // real vocabulary
  int padded_vocab_size = 0;   // rows of wte: vocab rounded up to a multiple of 128
  int max_seq_len = 0;

  // "tiny" (4 layers, 4 heads, 128 channels, the 257-token byte vocabulary, 256 positions),
  // "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl" (the 50257-token vocabulary, 1024 positions).
  static GPT2Config preset(const std::string& name);
  static GPT2Config custom(int n_layer, int n_head, int n_embd, int vocab_size, int max_seq_len);
  static int pad_vocab(int vocab_size);

  // Throws config_error for non-positive sizes, n_embd not divisible by n_head, or a padded
  // vocabulary smaller than the real one.
  void validate() const;
  // Real parameters: wte counted once (the lm head is tied to it), padded rows excluded.
  int64_t parameter_count() const;
  // e.g. "GPT-2 L=12 H=12 C=768 V=50257 (padded 50304) T<=1024, 124.4M parameters"
  std::string describe() const;
};

// automatic: bf16 on a GPU context, f32 on the CPU (bf16 on a CPU context is a config_error).
enum class Precision { automatic, f32, bf16 };
// full: keep only each block's input; recompute the block's activations during backward.
enum class Recompute { none, full };

struct ModelOptions {
  Precision precision = Precision::automatic;
  Recompute recompute = Recompute::none;
};

class GPT2 {
 public:
  // Allocates the parameters (zero until init_weights or an import) and gradients (zero).
  GPT2(Context& ctx, const GPT2Config& config, const ModelOptions& options = {});
  ~GPT2();
  GPT2(const GPT2&) = delete;
  GPT2& operator=(const GPT2&) = delete;

  const GPT2Config& config() const;
  Context& context() const;
  DType dtype() const;  // of parameters and activations
  const ModelOptions& options() const;

  const ParamTable& params() const;
  Tensor param_buffer() const;  // flat (params().flat_numel()), dtype(), on the context's device
  Tensor grad_buffer() const;   // flat, f32 (padding between parameters stays zero)
  Tensor param(size_t i) const;  // views shaped as the table says
  Tensor grad(size_t i) const;

  // GPT-2 initialisation, as the table describes it (normal std 0.02, residual projections
  // 0.02/sqrt(2*n_layer), biases 0, LayerNorm weights 1, padded wte rows 0). Values come from a
  // per-parameter random stream derived from (seed, parameter name), generated on the host in
  // float32, so they do not depend on the device, the thread count or the parallel layout.
  void init_weights(uint64_t seed);

  // tokens/targets: host int32 (B,T). Returns the mean cross-entropy loss; with targets == nullptr
  // returns NaN and only computes logits. Throws config_error if T > max_seq_len and data_error if
  // a token or target is outside [0, vocab_size). Plans the activation arena once per (B,T).
  float forward(const int32_t* tokens, const int32_t* targets, int B, int T);
  // Accumulates d(loss_scale * mean loss)/dparams of the last forward into the grad buffer.
  // Needs a forward with targets; consumes that forward's logits (one backward per forward).
  void backward(float loss_scale = 1.0f);
  void zero_grad();

  // vocab_size floats of the last forward's logits at (b, t), as float32 on the host. Valid
  // between a forward and the next backward.
  void logits_row(int b, int t, float* out) const;
  // Bytes of the activation arena planned for the last (B,T) (0 before the first forward).
  size_t activation_bytes() const;

  // Training FLOPs per token for MFU. PaLM (appendix B): 6N + 12*L*C*T, where N counts every real
  // parameter except the positional table wpe (a lookup, no matmul); wte counts once, since the
  // tied lm head is a matmul with it.
  double flops_per_token_palm(int T) const;
  // llm.c's estimate: 6N + 6*L*C*T with N = every real parameter (llm.c also counts padded rows).
  double flops_per_token_llmc(int T) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera
