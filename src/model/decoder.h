// The decoder-only transformer every family configures: token embedding (+ learned positions),
// n_layer blocks (norm -> q|k|v -> [rotary] -> grouped-query attention -> projection -> residual ->
// norm -> MLP (GELU or SwiGLU) -> projection -> residual), final norm, output layer (tied or not),
// cross-entropy. Forward and backward are written by hand over the kernels, as llm.c writes them.
//
// One rank's part of any layout runs the same code: the tensor-parallel pieces of
// parallel/tensor_parallel.h (column-parallel q|k|v and MLP input, row-parallel projections,
// vocabulary-parallel embedding and cross-entropy, sequence-parallel gathers and scatters), the
// gradient finishing of parallel/grad_finishing.h, and the slot bookkeeping of pipeline_slots.h.
#pragma once

#include <functional>
#include <limits>
#include <memory>
#include <vector>

#include "kernels/ops.h"
#include "model/arena.h"
#include "model/decoder_params.h"
#include "model/model_layout.h"
#include "model/pipeline_slots.h"
#include "parallel/grad_finishing.h"
#include "parallel/tensor_parallel.h"
#include "parallel/vocab_parallel.h"
#include "tessera/buffer.h"
#include "tessera/communicator.h"
#include "tessera/model.h"
#include "tessera/parallel.h"

namespace tessera::model {

class Decoder final : public Model {
 public:
  Decoder(Context& ctx, const ModelConfig& config, const ModelOptions& options);
  ~Decoder() override;

  const ModelConfig& config() const override { return config_; }
  Context& context() const override { return *ctx_; }
  DType dtype() const override { return dtype_; }
  const ModelOptions& options() const override { return options_; }
  const ProcessGrid& grid() const override { return *grid_; }

  const ParamTable& params() const override { return local_.table; }
  const ParamTable& global_params() const override { return global_table_; }
  size_t global_index(size_t local_entry) const override;
  bool holds_all_parameters() const override;
  bool is_primary_copy(size_t local_entry) const override;
  Tensor param_buffer() const override { return params_flat_; }
  Tensor grad_buffer() const override { return grads_flat_; }
  Tensor param(size_t i) const override;
  Tensor grad(size_t i) const override;
  void init_weights(uint64_t seed) override;

  float forward(const int32_t* tokens, const int32_t* targets, int B, int T) override;
  void backward(float loss_scale) override;
  void zero_grad() override;
  void logits_row(int b, int t, float* out) const override;
  size_t activation_bytes() const override { return arena_.capacity_bytes(); }

  int local_chunks() const override { return int(chunks_.size()); }
  bool has_embedding() const override { return chunks_.front().embedding; }
  bool has_head() const override { return chunks_.back().head; }
  void begin_step(int microbatches, int B, int T, int slots) override;
  void set_microbatch(int mb, const int32_t* tokens, const int32_t* targets) override;
  void forward_chunk(int mb, int chunk) override;
  void backward_chunk(int mb, int chunk, float loss_scale) override;
  Tensor activation_to_send(int mb, int chunk) override;
  Tensor activation_to_receive(int mb, int chunk) override;
  Tensor gradient_to_send(int mb, int chunk) override;
  Tensor gradient_to_receive(int mb, int chunk) override;
  float microbatch_loss(int mb) const override;
  void set_grads_ready_hook(std::function<void(size_t)> hook) override { grads_ready_ = std::move(hook); }
  void finish_backward() override;

 private:
  // What a norm keeps for its backward: its output on every row, and per-row statistics of its rows.
  struct NormActs {
    Tensor out;   // (N,C) every row
    Tensor mean;  // (Nr) f32, LayerNorm only
    Tensor rstd;  // (Nr) f32
  };
  // What one block keeps from its forward for its backward. N rows are all B*T positions; Nr rows
  // the residual stream's (N/tp under sequence parallelism, else N).
  struct BlockActs {
    NormActs norm1;
    Tensor qkv;        // (N,QKVl) this rank's q|k|v heads (rotated, with rotary positions)
    Tensor att;        // (N,Ql) attention output, before the projection
    Tensor att_stats;  // (B,NHl,T) f32 logsumexp
    Tensor residual2;  // (Nr,C) block input + attention branch
    NormActs norm2;
    Tensor mlp_pre;    // (N,Fl) before GELU, or (N,2Fl) gate|up before SwiGLU
    Tensor mlp_act;    // (N,Fl)
  };
  // One microbatch in flight on one local chunk.
  struct ChunkActs {
    std::vector<Tensor> residual;  // blocks+1 of (Nr,C): [0] the chunk's input, [k+1] its k-th block's output
    std::vector<BlockActs> blocks; // one per block (none with Recompute::full)
    Tensor grad;                   // (Nr,C) pp > 1: d(output) as received, d(input) after backward
  };
  // The last model chunk's part of one microbatch (one per slot of the last local chunk).
  struct HeadActs {
    NormActs norm;
    Tensor logits;    // (N,Vl); dlogits in place during backward
    Tensor losses;    // (N) f32
    Tensor ce_stats;  // (3N) f32, tp > 1: row max | sum of exp | target logit
  };
  struct Microbatch {
    Tensor tokens, targets;  // (B,T) i32
    bool has_targets = false;
    bool logits_valid = false;    // the head's logits are intact
    bool backward_ready = false;  // a forward with targets not consumed by a backward yet
    float loss = std::numeric_limits<float>::quiet_NaN();
  };
  // Shared by every microbatch: used and finished within one forward or backward of one chunk.
  struct Scratch {
    Tensor proj;      // (N,C) row-parallel partial sums; the embedding before its reduction
    Tensor shard;     // (Nr,C) sequence parallelism: a norm's rows before the all-gather, reduced shards
    Tensor gathered;  // (N,C) sequence parallelism: every row of a residual gradient
    Tensor dbtc;      // (N,C) d(norm outputs), d(attention output) in turn
    Tensor dwide;     // (N,max(mlp_pre width, QKVl)): d(mlp_pre), then d(qkv)
    Tensor dact;      // (N,Fl) SwiGLU: d(mlp_act)
    Tensor grad;      // (Nr,C) pp == 1: the residual gradient, passed from chunk to chunk
    BlockActs recompute;  // Recompute::full: the one block whose activations exist
  };
  struct LocalChunk {
    int model_chunk = 0;
    LayerRange layers;
    bool embedding = false, head = false;
  };
  // Which block's activations scratch_.recompute holds (Recompute::full).
  struct RecomputedBlock {
    int mb = -1, chunk = -1, layer = -1;
    bool operator==(const RecomputedBlock& o) const { return mb == o.mb && chunk == o.chunk && layer == o.layer; }
  };

  // decoder.cpp: the plan and the slots.
  void plan(int M, int B, int T, int S);
  void declare_block(BlockActs& a, const std::string& name);
  void declare_norm(NormActs& a, const std::string& name);
  ChunkActs& slot(int mb, int chunk) { return slots_[size_t(chunk)][size_t(slot_table_.acquire(mb, chunk))]; }
  HeadActs& head_of(int mb) {
    return head_slots_[size_t(slot_table_.last_held(mb, local_chunks() - 1, "head"))];
  }
  Tensor grad_of(int mb, int chunk, const char* what);
  void report_final(size_t first_entry) {
    if (grads_ready_) grads_ready_(first_entry);
  }
  // Entries [first, end) of layer (-1: before the blocks, n_layer: after them) in the local table.
  std::pair<size_t, size_t> entries_of(int layer) const { return layer_entries_[size_t(layer + 1)]; }
  void finish_entries(int layer);

  // decoder_blocks.cpp: the pieces.
  void embedding_forward(Microbatch& m, const Tensor& out);
  void embedding_backward(Microbatch& m, const Tensor& dres);
  // A norm of residual rows `in` whose output holds every row (gathered under sequence parallelism).
  void norm_forward(NormActs& a, const Tensor& in, const NormParams& w);
  // residual = x + y, and norm_forward of it, in one pass (the fused residual + norm ops).
  void residual_norm_forward(NormActs& a, const Tensor& residual, const Tensor& x, const Tensor& y,
                             const NormParams& w);
  // dres += d(norm input), from d(every row of its output) (a partial sum over tp).
  void norm_backward(const Tensor& dres, const NormParams& dw, const Tensor& dout_partial, const Tensor& in,
                     const NormParams& w, const NormActs& a);
  // Writes the attention half's activations and residual2 with the MLP's norm of it (a.norm2).
  void attention_forward(int layer, BlockActs& a, const Tensor& in);
  void attention_backward(int layer, BlockActs& a, const Tensor& in, const Tensor& dres);
  void mlp_forward(int layer, BlockActs& a, const Tensor& out);
  void mlp_backward(int layer, BlockActs& a, const Tensor& dres);
  // Writes a block's activations into `a`; with mlp_projection, also its output into `out`
  // (recomputation stops before the MLP's projection, which the backward never reads).
  void block_forward(int layer, BlockActs& a, const Tensor& in, const Tensor& out, bool mlp_projection);
  // dres holds d(block output) on entry and d(block input) on exit.
  void block_backward(int layer, BlockActs& a, const Tensor& in, const Tensor& dres);
  void head_forward(Microbatch& m, HeadActs& h, const Tensor& x);
  void head_backward(Microbatch& m, HeadActs& h, const Tensor& x, const Tensor& dres, float loss_scale);

  Context* ctx_;
  ModelConfig config_;
  ModelOptions options_;
  DType dtype_ = DType::f32;
  std::unique_ptr<Communicator> own_world_;  // one process: the grid of one rank it owns
  std::unique_ptr<ProcessGrid> own_grid_;
  const ProcessGrid* grid_ = nullptr;
  ModelLayout layout_;
  parallel::TensorParallel tp_;
  parallel::VocabShard vocab_;
  RopeParams rope_;  // rotary positions' frequencies (PositionKind::rope)

  ParamTable global_table_;
  LocalTable local_;
  Buffer param_storage_, grad_storage_;
  Tensor params_flat_, grads_flat_;
  std::unique_ptr<parallel::GradientFinishing> finishing_;
  DecoderParams p_;  // parameter views (local shapes; absent parameters empty)
  DecoderParams g_;  // where their gradients accumulate (f32)
  std::vector<std::pair<size_t, size_t>> layer_entries_;  // [layer + 1]: local entries [first, end)
  std::function<void(size_t)> grads_ready_;

  std::vector<LocalChunk> chunks_;
  int64_t C_ = 0, Ql_ = 0, QKVl_ = 0, Fl_ = 0, mlp_pre_width_ = 0;
  int NHl_ = 0, NKVl_ = 0;

  Arena arena_;
  SlotTable slot_table_;
  std::vector<Microbatch> mbs_;
  std::vector<std::vector<ChunkActs>> slots_;  // [chunk][slot]
  std::vector<HeadActs> head_slots_;           // [slot of the last local chunk]
  Scratch scratch_;
  int M_ = 0, B_ = 0, T_ = 0, S_ = 0;  // the plan: microbatches, batch, sequence, slots per chunk
  int64_t N_ = 0, Nr_ = 0;
  RecomputedBlock recomputed_;  // what scratch_.recompute holds
  std::vector<float> host_losses_;  // (N) the head's losses read back each forward, allocated once
};

}  // namespace tessera::model
