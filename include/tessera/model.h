// The model boundary: what the Trainer, checkpoints, Hugging Face I/O, sampling and calibration
// see of a model, whatever its family. A Model is one rank's part of a decoder-only transformer
// (its tensor-parallel shards of the model chunks its pipeline rank runs), with its parameters in
// one flat buffer described by a ParamTable, gradients in a second (float32) flat buffer of the same
// layout, and activations in one arena. It runs one microbatch through one local chunk at a time,
// forward or backward, as a pipeline schedule drives it, exchanging activations and gradients with
// the neighbouring stages through the point-to-point buffers it names.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "tessera/context.h"
#include "tessera/model_config.h"
#include "tessera/param_table.h"
#include "tessera/tensor.h"

namespace tessera {

class ProcessGrid;

// automatic: bf16 on a GPU context, f32 on the CPU (bf16 on a CPU context is a config_error).
enum class Precision { automatic, f32, bf16 };
// full: keep only each block's input; recompute the block's activations during backward.
enum class Recompute { none, full };

struct ModelOptions {
  Precision precision = Precision::automatic;
  Recompute recompute = Recompute::none;
  // This rank's place in a parallel layout (Megatron-style): tensor-parallel shards (attention
  // query and key/value heads, MLP columns, vocabulary rows) of the model chunks its pipeline rank
  // runs. Layers are split into pp x virtual_stages balanced contiguous model chunks, local chunk c
  // running model chunk c*pp + pp_rank; the embedding lives with model chunk 0, the final norm and
  // output layer with the last (a tied embedding has a copy there when pp > 1). Null: one process
  // holding the whole model (a grid of one rank). The grid must outlive the model.
  const ProcessGrid* grid = nullptr;
};

class Model {
 public:
  virtual ~Model() = default;

  virtual const ModelConfig& config() const = 0;
  virtual Context& context() const = 0;
  virtual DType dtype() const = 0;  // of parameters and activations
  virtual const ModelOptions& options() const = 0;
  virtual const ProcessGrid& grid() const = 0;  // the one given, or the model's own grid of one rank

  // ---- Parameters ----
  // This rank's parameters (local shapes; only its chunks' entries, in the global order).
  virtual const ParamTable& params() const = 0;
  // The whole model's table (global shapes, placement, how each parameter splits).
  virtual const ParamTable& global_params() const = 0;
  virtual size_t global_index(size_t local_entry) const = 0;  // index in global_params() of params()[local_entry]
  virtual bool holds_all_parameters() const = 0;              // params() is the whole model, unsplit
  // Whether this rank's copy of a local entry is the one that counts (gradient norm, export): false
  // for a replicated parameter on tp rank != 0, and for a tied parameter's copy on the last stage.
  virtual bool is_primary_copy(size_t local_entry) const = 0;
  virtual Tensor param_buffer() const = 0;  // flat (params().flat_numel()), dtype(), on the context's device
  virtual Tensor grad_buffer() const = 0;   // flat, f32 (padding between parameters stays zero)
  virtual Tensor param(size_t local_entry) const = 0;  // views shaped as the table says
  virtual Tensor grad(size_t local_entry) const = 0;

  // The table's initialisation (normal with each entry's std, zeros, ones; padded rows zero).
  // Values come from a per-parameter random stream derived from (seed, parameter name), generated
  // on the host in float32, so they do not depend on the device, the thread count or the parallel
  // layout: each rank generates the global tensor and keeps its shard.
  virtual void init_weights(uint64_t seed) = 0;

  // ---- One microbatch through every local chunk (pp == 1; collective over tp) ----
  // tokens/targets: host int32 (B,T). Returns the mean cross-entropy loss; with targets == nullptr
  // returns NaN and only computes logits. config_error if T > max_seq_len, data_error if a token or
  // target is outside [0, vocab_size).
  virtual float forward(const int32_t* tokens, const int32_t* targets, int B, int T) = 0;
  // Accumulates d(loss_scale * mean loss)/dparams of the last forward into the grad buffer. Needs
  // a forward with targets; consumes its logits.
  virtual void backward(float loss_scale = 1.0f) = 0;
  virtual void zero_grad() = 0;
  // vocab_size floats of the last forward's logits at (b, t) (microbatch 0), as float32 on the
  // host. Valid between a forward and the next backward, on the last stage (collective over tp).
  virtual void logits_row(int b, int t, float* out) const = 0;
  // Bytes of the activation arena planned for the last step (0 before the first).
  virtual size_t activation_bytes() const = 0;

  // ---- Pipeline steps: what the Trainer and run_pipeline drive ----
  virtual int local_chunks() const = 0;    // model chunks this rank runs (virtual stages)
  virtual bool has_embedding() const = 0;  // runs model chunk 0 (the embedding)
  virtual bool has_head() const = 0;       // runs the last model chunk (final norm, output layer, loss)
  // Starts a step of `microbatches` microbatches of B x T sequences, with `slots` activation slots
  // per local chunk: as many microbatches as the schedule keeps in flight on a chunk (0: one per
  // microbatch). A slot is taken when a microbatch's input arrives or its forward starts, and given
  // back by its backward. Replans only when these sizes change. config_error for bad sizes
  // (T > max_seq_len; B*T not divisible by tp under sequence parallelism).
  virtual void begin_step(int microbatches, int B, int T, int slots = 0) = 0;
  // Host int32 (B,T) tokens and targets of microbatch mb (targets null: forward only, no loss).
  // data_error for an id outside the vocabulary.
  virtual void set_microbatch(int mb, const int32_t* tokens, const int32_t* targets) = 0;
  // Forward of one local chunk. Its input must be there: the embedding (model chunk 0), the
  // previous local chunk's output (pp == 1), or a received activation_to_receive(mb, chunk).
  virtual void forward_chunk(int mb, int chunk) = 0;
  // Backward of one local chunk, accumulating d(loss_scale * mean loss of mb)/dparams. Its output
  // gradient must be there: from the loss (last model chunk), the next local chunk (pp == 1), or a
  // received gradient_to_receive(mb, chunk). Consumes the last chunk's logits.
  virtual void backward_chunk(int mb, int chunk, float loss_scale) = 0;
  // Point-to-point buffers (views into the planned activations): the chunk's output, where its
  // input arrives, the gradient of its input (after backward_chunk), where its output's gradient
  // arrives. Row shards under sequence parallelism. activation_to_receive takes the microbatch's
  // slot on the chunk.
  virtual Tensor activation_to_send(int mb, int chunk) = 0;
  virtual Tensor activation_to_receive(int mb, int chunk) = 0;
  virtual Tensor gradient_to_send(int mb, int chunk) = 0;
  virtual Tensor gradient_to_receive(int mb, int chunk) = 0;
  // Mean loss of microbatch mb (has_head() ranks, after its forward; NaN without targets).
  virtual float microbatch_loss(int mb) const = 0;
  // Called with decreasing entries during the backward of the step's last microbatch: gradients of
  // params() entries >= first_final_entry are final (data-parallel buckets can start). Tied copies
  // become final in finish_backward().
  virtual void set_grads_ready_hook(std::function<void(size_t first_final_entry)> hook) = 0;
  // Ends a step's backward (gradients zeroed at its start): sums tied parameters' gradients over
  // the stages holding copies (pp > 1), then reports every entry final.
  virtual void finish_backward() = 0;
};

// The decoder of config's family on this rank. Allocates the parameters (zero until init_weights
// or an import) and gradients (zero). With a grid, first checks that the model splits that way
// (config_error naming --tp, --pp or --virtual-stages).
std::unique_ptr<Model> make_model(Context& ctx, const ModelConfig& config, const ModelOptions& options = {});

}  // namespace tessera
