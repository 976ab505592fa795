// Every kernel tessera has: one declaration each. These entry points check shapes, dtypes and
// devices once, then call tessera::cpu::<op> (src/kernels/cpu/<op>.cpp) or tessera::cuda::<op>
// (src/kernels/cuda/<op>.cu), which have exactly the same signature and trust their arguments.
//
// Conventions (as llm.c): outputs first, then inputs, then sizes. Activations are float32 on the
// CPU and float32 or bfloat16 on CUDA. Parameter gradients, norm statistics, losses and optimizer
// state are always float32. "+=" marks outputs that are accumulated into (gradient accumulation);
// everything else is overwritten. Integer tensors (tokens, targets) are int32 on the context's device.
#pragma once

#include <vector>

#include "tessera/context.h"
#include "tessera/tensor.h"

namespace tessera {

enum class Epilogue : uint8_t { none, gelu };

struct AdamWParams {
  float lr = 3e-4f;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;  // decoupled; 0 for biases and norms
  int step = 1;               // 1-based, for bias correction
  float grad_scale = 1.0f;    // multiplies the gradient first (gradient clipping)
};

// Rotary position embeddings' frequencies: Hugging Face's default inv_freq[i] = theta^(-2i/HS),
// i < HS/2, and Llama 3.1's scaling of them (config.json's rope_scaling {"rope_type": "llama3",
// "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}), as
// transformers' _compute_llama3_parameters: wavelengths 2*pi/inv_freq above
// original_max_position_embeddings / low_freq_factor are divided by factor, those below
// original_max_position_embeddings / high_freq_factor kept, those between interpolated smoothly.
struct RopeParams {
  double theta = 10000.0;  // rope_theta
  double factor = 0.0;     // 0: no scaling
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int original_max_position_embeddings = 8192;
};
// The HS/2 inverse frequencies, computed in float64 and rounded to float32 (the values every
// backend uses: angle = float(position) * inv_freq[i] in float32, as transformers computes it),
// written to inv_freq[0, HS/2): the kernels compute them into memory they already hold, so that a
// training step allocates nothing. The vector form is for tests and tools.
void rope_inverse_frequencies(float* inv_freq, int head_size, const RopeParams& rope);
std::vector<float> rope_inverse_frequencies(int head_size, const RopeParams& rope);

#define TESSERA_KERNEL_DECLARATIONS                                                                    \
  /* out (B,T,C) = wte[tokens[b,t] - vocab_start] + wpe[t]. tokens (B,T) i32, wte (Vl,C) holds the     \
     vocabulary rows [vocab_start, vocab_start+Vl) (a vocabulary-parallel shard; all rows: 0, Vp);     \
     tokens outside that range contribute zero. wpe (maxT,C) may be empty (no position term). */       \
  void embedding_forward(Context& ctx, Tensor out, Tensor tokens, Tensor wte, Tensor wpe,              \
                         int vocab_start);                                                             \
  /* dwte (Vl,C) +=, dwpe (maxT,C) += (may be empty), both f32; dout (B,T,C). Deterministic. */        \
  void embedding_backward(Context& ctx, Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens,          \
                          int vocab_start);                                                            \
  /* out (N,C), mean (N) f32, rstd (N) f32; inp (N,C), weight (C), bias (C); eps 1e-5. */              \
  void layernorm_forward(Context& ctx, Tensor out, Tensor mean, Tensor rstd, Tensor inp,               \
                         Tensor weight, Tensor bias);                                                  \
  /* The residual add and the LayerNorm after it in one pass over each row (llm.c's fused residual     \
     forward): residual (N,C) = a + b, then out, mean, rstd = layernorm_forward of residual. Bitwise   \
     what residual_forward then layernorm_forward give. residual may alias a or b; out may alias a     \
     or b (not residual). */                                                                           \
  void residual_layernorm_forward(Context& ctx, Tensor residual, Tensor out, Tensor mean, Tensor rstd, \
                                  Tensor a, Tensor b, Tensor weight, Tensor bias);                     \
  /* dinp (N,C) +=, dweight (C) += f32, dbias (C) += f32. */                                           \
  void layernorm_backward(Context& ctx, Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout,        \
                          Tensor inp, Tensor weight, Tensor mean, Tensor rstd);                        \
  /* RMSNorm (LLaMA): out (N,C) = inp * rstd * weight, rstd (N) f32 = 1/sqrt(mean(inp^2) + eps);       \
     inp (N,C), weight (C). Statistics in f32 whatever the activations' dtype. */                      \
  void rmsnorm_forward(Context& ctx, Tensor out, Tensor rstd, Tensor inp, Tensor weight, float eps);   \
  /* residual (N,C) = a + b, then out, rstd = rmsnorm_forward of residual, in one pass over each row;  \
     bitwise residual_forward then rmsnorm_forward. Aliases as residual_layernorm_forward. */          \
  void residual_rmsnorm_forward(Context& ctx, Tensor residual, Tensor out, Tensor rstd, Tensor a,      \
                                Tensor b, Tensor weight, float eps);                                   \
  /* dinp (N,C) +=, dweight (C) += f32; dout (N,C), and the forward's inp, weight and rstd. */         \
  void rmsnorm_backward(Context& ctx, Tensor dinp, Tensor dweight, Tensor dout, Tensor inp,            \
                        Tensor weight, Tensor rstd);                                                   \
  /* out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC, may be empty). With Epilogue::gelu,          \
     pre_gelu (N,OC) receives the pre-activation and out = gelu(pre_gelu); else pre_gelu is empty. */  \
  void matmul_forward(Context& ctx, Tensor out, Tensor pre_gelu, Tensor inp, Tensor weight,            \
                      Tensor bias, Epilogue epilogue);                                                 \
  /* dinp (N,C) = dout @ weight (overwritten; may be empty to skip), dweight (OC,C) += dout^T @ inp    \
     f32, dbias (OC) += column sums of dout, f32 (may be empty). dout (N,OC). */                       \
  void matmul_backward(Context& ctx, Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout,           \
                       Tensor inp, Tensor weight);                                                     \
  /* out = gelu_tanh(inp), elementwise; out may alias inp. */                                          \
  void gelu_forward(Context& ctx, Tensor out, Tensor inp);                                             \
  /* dinp = dout * gelu_tanh'(inp), elementwise; dinp may alias dout. */                               \
  void gelu_backward(Context& ctx, Tensor dinp, Tensor inp, Tensor dout);                              \
  /* out = a + b, elementwise; out may alias a or b. */                                                \
  void residual_forward(Context& ctx, Tensor out, Tensor a, Tensor b);                                 \
  /* SwiGLU (LLaMA's MLP activation): inp (N,2F) holds one matmul's output with gate in columns        \
     [0,F) and up in [F,2F) of each row; out (N,F) = silu(gate) * up, silu(x) = x * sigmoid(x).        \
     Under tensor parallelism each rank's shard of the fused weight holds its F/tp gate rows, then     \
     its F/tp up rows, so that the split stays column-parallel and the local output is again           \
     [gate | up] of width 2F/tp. */                                                                    \
  void swiglu_forward(Context& ctx, Tensor out, Tensor inp);                                           \
  /* dinp (N,2F) = [dgate | dup] (overwritten), from dout (N,F) and the forward's inp. */              \
  void swiglu_backward(Context& ctx, Tensor dinp, Tensor dout, Tensor inp);                            \
  /* Rotary position embeddings (Hugging Face's rotate-half convention) on the q and k heads of a      \
     packed qkv (B,T,(NH+2*NKV)*HS) laid out as attention_forward reads it; v is copied unchanged.     \
     For each head and i < HS/2, with angle = float(position_offset + t) * inv_freq[i]                 \
     (rope_inverse_frequencies):                                                                       \
       out[i] = x[i] cos - x[i+HS/2] sin,  out[i+HS/2] = x[i+HS/2] cos + x[i] sin.                     \
     out (B,T,(NH+2*NKV)*HS) may alias qkv (in place). HS even. */                                     \
  void rope_forward(Context& ctx, Tensor out, Tensor qkv, int n_head, int n_kv_head,                   \
                    const RopeParams& rope, int position_offset);                                      \
  /* The transpose (the rotation by -angle): dqkv from dout, both (B,T,(NH+2*NKV)*HS); dqkv may        \
     alias dout. */                                                                                    \
  void rope_backward(Context& ctx, Tensor dqkv, Tensor dout, int n_head, int n_kv_head,                \
                     const RopeParams& rope, int position_offset);                                     \
  /* Causal self-attention with grouped-query heads. qkv (B,T,(NH+2*NKV)*HS) packs q | k | v:          \
     q holds NH heads, k and v NKV heads each, head h at columns h*HS..h*HS+HS of its part;            \
     query head h attends with key/value head h / (NH/NKV). NKV divides NH (NKV == NH: multi-head).    \
     out (B,T,NH*HS); stats (B,NH,T) f32 = natural-log logsumexp of the scaled, masked scores.         \
     The scale is 1/sqrt(HS). */                                                                       \
  void attention_forward(Context& ctx, Tensor out, Tensor stats, Tensor qkv, int n_head,               \
                         int n_kv_head);                                                               \
  /* dqkv (B,T,(NH+2*NKV)*HS) overwritten, from dout (B,T,NH*HS) and the forward's qkv, out and        \
     stats. */                                                                                         \
  void attention_backward(Context& ctx, Tensor dqkv, Tensor dout, Tensor qkv, Tensor out,              \
                          Tensor stats, int n_head, int n_kv_head);                                    \
  /* Fused softmax + cross-entropy over logits (N,Vp) whose first vocab_size columns are real.         \
     losses (N) f32 = -log softmax(logits)[targets]. If dlogits is not empty, it receives              \
     (softmax - onehot(target)) * dloss, zero in padded columns; dlogits may alias logits. */          \
  void crossentropy_forward_backward(Context& ctx, Tensor losses, Tensor dlogits, Tensor logits,       \
                                     Tensor targets, int vocab_size, float dloss);                     \
  /* Vocabulary-parallel cross-entropy (Megatron): each tensor-parallel rank holds logits (N,Vl) for   \
     global columns [vocab_start, vocab_start + Vl), of which the first `valid` are real (valid =      \
     clamp(vocab_size - vocab_start, 0, Vl)). The caller all-reduces between the steps: max after      \
     vp_max, sum of sum_exp and target_logit after vp_sums. Step 1: row_max (N) f32 = max of the       \
     first `valid` columns of logits, -inf when valid == 0. */                                         \
  void crossentropy_vp_max(Context& ctx, Tensor row_max, Tensor logits, int valid);                    \
  /* Step 2, with row_max (N) f32 the global max: sum_exp (N) f32 = sum over the valid columns of      \
     exp(x - row_max); target_logit (N) f32 = logits[n, targets[n] - vocab_start] when that column     \
     is in [0, valid), else 0. targets (N) i32 are global. */                                          \
  void crossentropy_vp_sums(Context& ctx, Tensor sum_exp, Tensor target_logit, Tensor logits,          \
                            Tensor row_max, Tensor targets, int vocab_start, int valid);               \
  /* Step 3, with sum_exp and target_logit summed over ranks: losses (N) f32 =                         \
     log(sum_exp) + row_max - target_logit. */                                                         \
  void crossentropy_vp_loss(Context& ctx, Tensor losses, Tensor sum_exp, Tensor target_logit,          \
                            Tensor row_max);                                                           \
  /* dlogits (N,Vl) = (exp(x - row_max) / sum_exp - onehot(target)) * dloss on the valid columns,      \
     zero in padded ones; row_max, sum_exp (N) f32 global; dlogits may alias logits. */                \
  void crossentropy_vp_backward(Context& ctx, Tensor dlogits, Tensor logits, Tensor row_max,           \
                                Tensor sum_exp, Tensor targets, int vocab_start, int valid,            \
                                float dloss);                                                          \
  /* One AdamW step over a flat range. param (n) f32 or bf16; master (n) f32 holds the fp32 weights    \
     (empty when param is f32: param is its own master); m, v, grad (n) f32. */                        \
  void adamw_update(Context& ctx, Tensor param, Tensor master, Tensor m, Tensor v, Tensor grad,        \
                    const AdamWParams& hp);                                                            \
  /* Sum of squares of grad (n) f32, accumulated in a fixed order (bitwise reproducible). */           \
  double sum_of_squares(Context& ctx, Tensor grad);                                                    \
  /* dst = src converted elementwise between f32 and bf16 (or copied when equal), same device. */      \
  void convert(Context& ctx, Tensor dst, Tensor src);                                                  \
  /* t *= factor, elementwise (f32 or bf16). */                                                        \
  void scale(Context& ctx, Tensor t, float factor);

namespace ops { TESSERA_KERNEL_DECLARATIONS }
namespace cpu { TESSERA_KERNEL_DECLARATIONS }
namespace cuda { TESSERA_KERNEL_DECLARATIONS }

// Whether this build has CUDA kernels (cuda:: is defined) and cuDNN attention.
bool built_with_cuda();
bool built_with_cudnn_attention();

}  // namespace tessera
