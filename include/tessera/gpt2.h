// GPT-2: configuration, and a model whose forward and backward passes are written by hand over
// the kernels (as llm.c). Parameters live in one flat buffer described by a ParamTable;
// gradients in a second, float32, flat buffer of the same layout; activations in one arena.
// With a process grid (ModelOptions::grid) a rank holds and runs only its tensor- and
// pipeline-parallel part of the model; the Trainer (trainer.h) drives it through a schedule.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "tessera/context.h"
#include "tessera/param_table.h"
#include "tessera/tensor.h"

namespace tessera {

class ProcessGrid;

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
  // Null: one process holds the whole model. Otherwise this rank holds only its part, as the grid's
  // layout says (Megatron-style): tensor-parallel shards (attention heads, MLP columns, vocabulary
  // rows of wte) of the model chunks its pipeline rank runs. Layers are split into pp x
  // virtual_stages balanced contiguous model chunks, local chunk c running model chunk c*pp + pp_rank;
  // wte and wpe live with model chunk 0, ln_f and the tied lm head (a second copy of wte when pp > 1)
  // with the last. The grid must outlive the model.
  const ProcessGrid* grid = nullptr;
};

class GPT2 {
 public:
  // Allocates the parameters (zero until init_weights or an import) and gradients (zero). With a
  // grid, first checks that the model splits that way (config_error naming --tp, --pp or
  // --virtual-stages: heads and padded vocabulary divisible by tp, at least one layer per chunk).
  GPT2(Context& ctx, const GPT2Config& config, const ModelOptions& options = {});
  ~GPT2();
  GPT2(const GPT2&) = delete;
  GPT2& operator=(const GPT2&) = delete;

  const GPT2Config& config() const;
  Context& context() const;
  DType dtype() const;  // of parameters and activations
  const ModelOptions& options() const;

  // This rank's parameters (local shapes; only its chunks' entries, in the global order). Without a
  // grid, or with tp = pp = 1, the same as global_params().
  const ParamTable& params() const;
  // The whole model's table (global shapes and how each parameter splits).
  const ParamTable& global_params() const;
  size_t global_index(size_t local_entry) const;  // index in global_params() of params()[local_entry]
  bool holds_all_parameters() const;  // params() is the whole model, unsplit
  // Whether this rank's copy of a local entry is the one that counts (gradient norm, export): false
  // for a parameter replicated across tensor-parallel ranks on tp rank != 0, and for the last
  // stage's copy of the tied wte when pp > 1.
  bool is_primary_copy(size_t local_entry) const;
  Tensor param_buffer() const;  // flat (params().flat_numel()), dtype(), on the context's device
  Tensor grad_buffer() const;   // flat, f32 (padding between parameters stays zero)
  Tensor param(size_t i) const;  // views shaped as the table says
  Tensor grad(size_t i) const;

  // GPT-2 initialisation, as the table describes it (normal std 0.02, residual projections
  // 0.02/sqrt(2*n_layer), biases 0, LayerNorm weights 1, padded wte rows 0). Values come from a
  // per-parameter random stream derived from (seed, parameter name), generated on the host in
  // float32, so they do not depend on the device, the thread count or the parallel layout: each
  // rank generates the global tensor and keeps its shard.
  void init_weights(uint64_t seed);

  // tokens/targets: host int32 (B,T). Returns the mean cross-entropy loss; with targets == nullptr
  // returns NaN and only computes logits. Throws config_error if T > max_seq_len and data_error if
  // a token or target is outside [0, vocab_size). Plans the activation arena once per (B,T).
  // One microbatch through every chunk: needs pp == 1 (collective over tp when tp > 1).
  float forward(const int32_t* tokens, const int32_t* targets, int B, int T);
  // Accumulates d(loss_scale * mean loss)/dparams of the last forward into the grad buffer.
  // Needs a forward with targets; consumes that forward's logits (one backward per forward).
  void backward(float loss_scale = 1.0f);
  void zero_grad();

  // vocab_size floats of the last forward's logits at (b, t) (microbatch 0), as float32 on the
  // host. Valid between a forward and the next backward, on the last stage (collective over tp).
  void logits_row(int b, int t, float* out) const;
  // Bytes of the activation arena planned for the last (B,T) (0 before the first forward).
  size_t activation_bytes() const;

  // Training FLOPs per token for MFU. PaLM (appendix B): 6N + 12*L*C*T, where N counts every real
  // parameter except the positional table wpe (a lookup, no matmul); wte counts once, since the
  // tied lm head is a matmul with it.
  double flops_per_token_palm(int T) const;
  // llm.c's estimate: 6N + 6*L*C*T with N = every real parameter (llm.c also counts padded rows).
  double flops_per_token_llmc(int T) const;

  // ---- Pipeline-parallel steps: what the Trainer and run_pipeline drive. forward() and backward()
  // above are one microbatch through every local chunk in order, on top of these. ----

  int local_chunks() const;    // model chunks this rank runs (virtual stages; 1 without a grid)
  bool has_embedding() const;  // runs model chunk 0 (the embedding)
  bool has_head() const;       // runs the last model chunk (ln_f, the lm head, the loss)
  // Starts a step of `microbatches` microbatches of B x T sequences, with `slots` activation slots
  // per local chunk: as many microbatches as the schedule keeps in flight on a chunk (0: one per
  // microbatch). A slot is taken when a microbatch's input arrives or its forward starts, and given
  // back by its backward. Replans only when these sizes change. Throws config_error for bad sizes
  // (T > max_seq_len; B*T not divisible by tp under sequence parallelism).
  void begin_step(int microbatches, int B, int T, int slots = 0);
  // Host int32 (B,T) tokens and targets of microbatch mb (targets null: forward only, no loss).
  // data_error for an id outside the vocabulary.
  void set_microbatch(int mb, const int32_t* tokens, const int32_t* targets);
  // Forward of one local chunk. Its input must be there: the embedding (chunk holding model chunk
  // 0), the previous local chunk's output (pp == 1), or a received activation_to_receive(mb, chunk).
  void forward_chunk(int mb, int chunk);
  // Backward of one local chunk, accumulating d(loss_scale * mean loss of mb)/dparams. Its output
  // gradient must be there: from the loss (last model chunk), the next local chunk (pp == 1), or a
  // received gradient_to_receive(mb, chunk). Consumes the last chunk's logits.
  void backward_chunk(int mb, int chunk, float loss_scale);
  // Point-to-point buffers (views into the planned activations): the chunk's output, where its
  // input arrives, the gradient of its input (after backward_chunk), where its output's gradient
  // arrives. Row shards under sequence parallelism.
  // activation_to_receive takes the microbatch's slot on the chunk.
  Tensor activation_to_send(int mb, int chunk);
  Tensor activation_to_receive(int mb, int chunk);
  Tensor gradient_to_send(int mb, int chunk);
  Tensor gradient_to_receive(int mb, int chunk);
  // Mean loss of microbatch mb (has_head() ranks, after its forward with targets).
  float microbatch_loss(int mb) const;
  // Called with decreasing entries during the backward of the step's last microbatch: gradients of
  // params() entries >= first_final_entry are final (data-parallel buckets can start). The tied
  // wte's final call comes from finish_backward().
  void set_grads_ready_hook(std::function<void(size_t first_final_entry)> hook);
  // Ends a step's backward (gradients zeroed at its start): sums the tied wte's gradients over the
  // first and last stages (pp > 1), then reports every entry final.
  void finish_backward();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera
