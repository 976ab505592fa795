// GPT-2 forward and backward by hand over the kernels, as llm.c's train_gpt2: encoder, n_layer
// blocks (ln1 -> qkv -> attention -> projection -> residual -> ln2 -> fc+gelu -> projection ->
// residual), final LayerNorm, logits against the tied wte, fused softmax cross-entropy.
//
// The same code runs one rank's part of a parallel layout (Megatron-Core's scheme):
//  - tensor parallelism: c_attn and c_fc are column-parallel (a rank computes its heads and its MLP
//    columns), the two c_proj are row-parallel (partial sums reduced over tp; their replicated bias
//    is added on tp rank 0 only, so the reduction counts it once); the embedding and the lm head are
//    vocabulary-parallel, and the cross-entropy is computed from row statistics reduced over tp, never
//    from gathered logits;
//  - sequence parallelism: the residual stream, LayerNorms and residual adds work on row shards of
//    the (B*T, C) activations; all-gather before the column-parallel matmuls, reduce-scatter after the
//    row-parallel ones (and the mirror image in backward); LayerNorm gradients are then partial:
//    they accumulate apart and are summed over tp during the step's last backward;
//  - pipeline parallelism: the rank runs its model chunks one microbatch at a time, as a schedule
//    drives it; activations and gradients cross stages through the p2p buffers.
#include "tessera/gpt2.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/ops.h"
#include "model/arena.h"
#include "model/gpt2_layout.h"
#include "model/gpt2_params.h"
#include "model/host_transfer.h"
#include "tessera/buffer.h"
#include "tessera/error.h"
#include "tessera/parallel.h"

namespace tessera {

namespace {

constexpr const char* kWteName = "transformer.wte.weight";

// What one block keeps from its forward for its backward. N rows are all B*T positions; Nr rows
// are the residual stream's (N/tp row shard under sequence parallelism, else N). Cl = C/tp.
struct BlockActivations {
  Tensor ln1, ln1_mean, ln1_rstd;  // (N,C) all rows, (Nr) f32, (Nr) f32
  Tensor qkv;                      // (N,3Cl) this rank's heads' q|k|v
  Tensor atty;                     // (N,Cl) attention output, before the projection
  Tensor att_stats;                // (B,NH/tp,T) f32 logsumexp
  Tensor residual2;                // (Nr,C) block input + attention branch
  Tensor ln2, ln2_mean, ln2_rstd;  // (N,C) all rows, (Nr) f32, (Nr) f32
  Tensor fch;                      // (N,4Cl) pre-gelu
  Tensor fch_gelu;                 // (N,4Cl)
};

// One microbatch in flight on one local chunk: an activation slot, taken when its input arrives or
// its forward starts and given back after its backward.
struct ChunkActivations {
  std::vector<Tensor> residual;          // blocks+1 of (Nr,C): [0] the chunk's input, [k+1] its k-th block's output
  std::vector<BlockActivations> blocks;  // one per block (none with Recompute::full)
  Tensor grad;                           // (Nr,C) pp > 1: d(output) as received, d(input) after backward
};

// The last model chunk's part of one microbatch (one per slot of the last local chunk).
struct HeadActivations {
  Tensor lnf, lnf_mean, lnf_rstd;  // (N,C) all rows, (Nr) f32, (Nr) f32
  Tensor logits;                   // (N,Vp/tp); dlogits in place during backward
  Tensor losses;                   // (N) f32
  Tensor ce_stats;                 // (3N) f32, tp > 1: row max | sum of exp | target logit
};

struct Microbatch {
  Tensor tokens, targets;  // (B,T) i32
  std::vector<int> slot;       // per local chunk: the activation slot it holds, -1 when none
  std::vector<int> last_slot;  // per local chunk: the slot it held last (its gradient is sent after backward)
  bool has_targets = false;
  bool logits_valid = false;    // the head's logits are intact
  bool backward_ready = false;  // a forward with targets not consumed by a backward yet
  float loss = std::numeric_limits<float>::quiet_NaN();
};

// Shared by every microbatch: used and finished within one forward or backward of one chunk.
struct Scratch {
  Tensor proj;        // (N,C) row-parallel partial sums; the embedding before its reduction
  Tensor shard;       // (Nr,C) sequence parallelism: a LayerNorm's rows before the all-gather, reduced shards
  Tensor gathered;    // (N,C) sequence parallelism: every row of a residual gradient
  Tensor dbtc;        // (N,C) dlnf, dln2, datty, dln1 in turn
  Tensor dwide;       // (N,4Cl) dfch; its first N*3Cl elements hold dqkv
  Tensor reduce_f32;  // (N,C) f32: bf16 reductions on the MPI backend
  Tensor grad;        // (Nr,C) pp == 1: the residual gradient, passed from chunk to chunk
  BlockActivations recompute;  // Recompute::full: the one block whose activations exist
};

struct LocalChunk {
  int model_chunk = 0;
  model::LayerRange layers;
  bool embedding = false, head = false;
};

// Which block's activations scratch.recompute holds (Recompute::full).
struct RecomputedBlock {
  int mb = -1, chunk = -1, layer = -1;
  bool operator==(const RecomputedBlock& o) const { return mb == o.mb && chunk == o.chunk && layer == o.layer; }
};

}  // namespace

struct GPT2::Impl {
  Context* ctx = nullptr;
  GPT2Config config;
  ModelOptions options;
  DType dtype = DType::f32;
  const ProcessGrid* grid = nullptr;
  model::ModelLayout layout;
  Communicator* tp = nullptr;  // null when tp == 1
  bool sp = false;

  ParamTable global_table;
  model::LocalTable local;
  Buffer param_storage, grad_storage;
  Tensor params_flat, grads_flat;
  model::GPT2Params p;  // parameter views (local shapes; absent parameters empty)
  model::GPT2Params g;  // gradient views (f32)
  // Sequence parallelism: this rank's partial LayerNorm gradients, summed over tp into the gradients
  // layer by layer during the step's last microbatch backward.
  Buffer sp_storage;
  Tensor sp_flat;
  std::vector<int64_t> sp_layer_offset;  // per layer: ln_1 w|b, ln_2 w|b (4C); -1 when absent
  int64_t sp_lnf_offset = -1;            // ln_f w|b (2C)

  std::vector<LocalChunk> chunks;
  int C = 0, Cl = 0, NHl = 0, Vl = 0, vocab_start = 0, vocab_valid = 0;
  std::vector<size_t> layer_first_entry;  // per layer: its first local entry (ln_1.weight)
  size_t wpe_entry = 0, lnf_entry = 0;
  std::function<void(size_t)> grads_ready;

  model::Arena arena;
  std::vector<Microbatch> mbs;
  std::vector<std::vector<ChunkActivations>> slots;  // [chunk][slot]
  std::vector<HeadActivations> head_slots;           // [slot of the last local chunk]
  std::vector<std::vector<int>> free_slots;          // [chunk]
  Scratch scratch;
  int M = 0, B = 0, T = 0, S = 0;  // the plan: microbatches, batch, sequence, slots per chunk
  int64_t N = 0, Nr = 0;
  RecomputedBlock recomputed;  // what scratch.recompute holds

  void check_chunk(int mb, int chunk, const char* what) const;
  // The slot (mb, chunk) holds, taking a free one when it holds none. With pp == 1 a chunk's input
  // is the previous chunk's output: chunk c takes the slot index chunk c-1 holds.
  ChunkActivations& acquire(int mb, int chunk);
  // The slot (mb, chunk) holds (or, with last, held last); config_error when none.
  ChunkActivations& held(int mb, int chunk, const char* what, bool last = false);
  void release(int mb, int chunk);
  HeadActivations& head_of(int mb) { return head_slots[size_t(mbs[size_t(mb)].last_slot.back())]; }
  Tensor grad_of(int mb, int chunk, const char* what) {
    return layout.pp == 1 ? scratch.grad : held(mb, chunk, what, true).grad;
  }
  void reset_slots();

  void plan(int M, int B, int T, int S);
  void declare_block(BlockActivations& a, const std::string& name);

  // Tensor-parallel communication (no-ops without tp).
  void all_reduce_tp(const Tensor& t, ReduceOp op = ReduceOp::sum);
  void reduce_scatter_tp(const Tensor& out, const Tensor& in);
  // Partial sums (N,C) over tp, reduced: the row shard (in scratch.shard) under sequence
  // parallelism, else in place.
  Tensor reduce_partial(const Tensor& partial);
  // Every row of a residual-stream tensor: gathered into scratch.gathered under sequence
  // parallelism, else the tensor itself.
  Tensor all_rows(const Tensor& rows);
  // LayerNorm of residual rows `in` into `out` holding every row.
  void layernorm_all_rows(const Tensor& out, const Tensor& mean, const Tensor& rstd, const Tensor& in,
                          const Tensor& w, const Tensor& b);
  // Where a LayerNorm's weight gradient goes: partial buffers under sequence parallelism.
  Tensor sp_partial(int64_t offset, int k) const { return sp_flat.flat_range(offset + int64_t(k) * C, C); }

  void embedding_forward(Microbatch& m, const Tensor& out);
  void embedding_backward(Microbatch& m, const Tensor& dres);
  // Writes a block's activations into `a`; with mlp_projection, also its output into `out`.
  void block_forward(int layer, BlockActivations& a, const Tensor& in, const Tensor& out, bool mlp_projection);
  // dres holds d(block output) on entry and d(block input) on exit.
  void block_backward(int layer, BlockActivations& a, const Tensor& in, const Tensor& dres);
  void head_forward(Microbatch& m, HeadActivations& h, const Tensor& x);
  void head_backward(Microbatch& m, HeadActivations& h, const Tensor& x, const Tensor& dres, float loss_scale);
  // Sequence parallelism: sums a range of partial LayerNorm gradients over tp into the gradients.
  void finish_sp_grads(int64_t offset, std::vector<Tensor> targets);
  void report_final(size_t first_entry) {
    if (grads_ready) grads_ready(first_entry);
  }
};

void GPT2::Impl::check_chunk(int mb, int chunk, const char* what) const {
  if (M == 0)
    throw config_error(fmt::format("GPT2::{} before begin_step", what), "call begin_step(microbatches, B, T) first");
  if (mb < 0 || mb >= M || chunk < 0 || chunk >= int(chunks.size()))
    throw config_error(fmt::format("GPT2::{}: microbatch {} / chunk {} outside the plan's {} microbatches x {} chunks",
                                   what, mb, chunk, M, chunks.size()));
}

void GPT2::Impl::declare_block(BlockActivations& a, const std::string& k) {
  auto act = [&](Tensor* t, const char* name, std::vector<int64_t> shape) { arena.add(t, k + name, std::move(shape), dtype); };
  auto f32 = [&](Tensor* t, const char* name, std::vector<int64_t> shape) {
    arena.add(t, k + name, std::move(shape), DType::f32);
  };
  act(&a.ln1, "ln1", {N, C});
  f32(&a.ln1_mean, "ln1_mean", {Nr});
  f32(&a.ln1_rstd, "ln1_rstd", {Nr});
  act(&a.qkv, "qkv", {N, 3 * Cl});
  act(&a.atty, "atty", {N, Cl});
  f32(&a.att_stats, "att_stats", {B, NHl, T});
  act(&a.residual2, "residual2", {Nr, C});
  act(&a.ln2, "ln2", {N, C});
  f32(&a.ln2_mean, "ln2_mean", {Nr});
  f32(&a.ln2_rstd, "ln2_rstd", {Nr});
  act(&a.fch, "fch", {N, 4 * Cl});
  act(&a.fch_gelu, "fch_gelu", {N, 4 * Cl});
}

void GPT2::Impl::plan(int M_, int B_, int T_, int S_) {
  M = M_;
  B = B_;
  T = T_;
  S = S_;
  N = int64_t(B) * T;
  Nr = sp ? N / layout.tp : N;
  const bool recompute = options.recompute == Recompute::full;
  const bool head = chunks.back().head;
  // The declared Tensors must not move before allocate(): size every vector first.
  mbs = std::vector<Microbatch>(size_t(M));
  slots.assign(chunks.size(), std::vector<ChunkActivations>(size_t(S)));
  head_slots.assign(head ? size_t(S) : 0, HeadActivations{});
  scratch = Scratch{};
  for (size_t c = 0; c < chunks.size(); ++c) {
    const int blocks = chunks[c].layers.end - chunks[c].layers.begin;
    for (ChunkActivations& a : slots[c]) {
      a.residual.resize(size_t(blocks + 1));
      if (!recompute) a.blocks.resize(size_t(blocks));
    }
  }
  arena.clear();
  auto act = [&](Tensor* t, std::string name, std::vector<int64_t> shape) {
    arena.add(t, std::move(name), std::move(shape), dtype);
  };
  auto f32 = [&](Tensor* t, std::string name, std::vector<int64_t> shape) {
    arena.add(t, std::move(name), std::move(shape), DType::f32);
  };
  for (size_t mb = 0; mb < mbs.size(); ++mb) {
    arena.add(&mbs[mb].tokens, fmt::format("mb{}.tokens", mb), {B, T}, DType::i32);
    arena.add(&mbs[mb].targets, fmt::format("mb{}.targets", mb), {B, T}, DType::i32);
  }
  for (size_t c = 0; c < chunks.size(); ++c) {
    for (size_t k = 0; k < slots[c].size(); ++k) {
      ChunkActivations& a = slots[c][k];
      const std::string kc = fmt::format("chunk{}.slot{}.", c, k);
      for (size_t r = 0; r < a.residual.size(); ++r) {
        if (r == 0 && c > 0 && layout.pp == 1) continue;  // the previous chunk's output, bound below
        act(&a.residual[r], fmt::format("{}residual.{}", kc, r), {Nr, C});
      }
      for (size_t b = 0; b < a.blocks.size(); ++b) declare_block(a.blocks[b], fmt::format("{}block.{}.", kc, b));
      if (layout.pp > 1) act(&a.grad, kc + "grad", {Nr, C});
    }
  }
  for (size_t k = 0; k < head_slots.size(); ++k) {
    HeadActivations& h = head_slots[k];
    const std::string kh = fmt::format("head.slot{}.", k);
    act(&h.lnf, kh + "lnf", {N, C});
    f32(&h.lnf_mean, kh + "lnf_mean", {Nr});
    f32(&h.lnf_rstd, kh + "lnf_rstd", {Nr});
    act(&h.logits, kh + "logits", {N, Vl});
    f32(&h.losses, kh + "losses", {N});
    if (tp) f32(&h.ce_stats, kh + "ce_stats", {3 * N});
  }
  act(&scratch.proj, "proj", {N, C});
  act(&scratch.dbtc, "dbtc", {N, C});
  act(&scratch.dwide, "dwide", {N, 4 * Cl});
  if (sp) {
    act(&scratch.shard, "shard", {Nr, C});
    act(&scratch.gathered, "gathered", {N, C});
  }
  if (tp && dtype != DType::f32) f32(&scratch.reduce_f32, "reduce_f32", {N, C});
  if (layout.pp == 1) act(&scratch.grad, "grad", {Nr, C});
  if (recompute) declare_block(scratch.recompute, "recompute.");
  arena.allocate(*ctx);
  if (layout.pp == 1)
    for (size_t c = 1; c < chunks.size(); ++c)
      for (size_t k = 0; k < slots[c].size(); ++k) slots[c][k].residual[0] = slots[c - 1][k].residual.back();
  reset_slots();
}

void GPT2::Impl::reset_slots() {
  free_slots.assign(chunks.size(), {});
  for (auto& list : free_slots)
    for (int k = S - 1; k >= 0; --k) list.push_back(k);  // slot 0 is taken first
  for (Microbatch& m : mbs) {
    m.slot.assign(chunks.size(), -1);
    m.last_slot.assign(chunks.size(), -1);
  }
  recomputed = RecomputedBlock{};
}

ChunkActivations& GPT2::Impl::acquire(int mb, int chunk) {
  Microbatch& m = mbs[size_t(mb)];
  int& k = m.slot[size_t(chunk)];
  if (k >= 0) return slots[size_t(chunk)][size_t(k)];
  if (layout.pp == 1 && chunk > 0) {
    k = m.slot[size_t(chunk) - 1];
    if (k < 0)
      throw config_error(fmt::format("GPT2: forward of microbatch {} on chunk {} before its forward on chunk {}", mb,
                                     chunk, chunk - 1),
                         "run a microbatch's chunks in order");
  } else {
    std::vector<int>& list = free_slots[size_t(chunk)];
    if (list.empty())
      throw config_error(fmt::format("GPT2: more than {} microbatches in flight on chunk {} (microbatch {} arrives)",
                                     S, chunk, mb),
                         "plan more activation slots in begin_step (as many as the schedule keeps in flight)");
    k = list.back();
    list.pop_back();
  }
  m.last_slot[size_t(chunk)] = k;
  return slots[size_t(chunk)][size_t(k)];
}

ChunkActivations& GPT2::Impl::held(int mb, int chunk, const char* what, bool last) {
  const Microbatch& m = mbs[size_t(mb)];
  const int k = last ? m.last_slot[size_t(chunk)] : m.slot[size_t(chunk)];
  if (k < 0)
    throw config_error(fmt::format("GPT2::{}: microbatch {} has no activations on chunk {}", what, mb, chunk),
                       "run (or receive the input of) its forward first");
  return slots[size_t(chunk)][size_t(k)];
}

void GPT2::Impl::release(int mb, int chunk) {
  Microbatch& m = mbs[size_t(mb)];
  int& k = m.slot[size_t(chunk)];
  if (k < 0) return;
  if (!(layout.pp == 1 && chunk > 0)) free_slots[size_t(chunk)].push_back(k);
  k = -1;
}

void GPT2::Impl::all_reduce_tp(const Tensor& t, ReduceOp op) {
  if (!tp) return;
  if (t.dtype == DType::f32 || std::strcmp(tp->backend(), "mpi") != 0) {
    tp->all_reduce(t, op).wait();
    return;
  }
  // The MPI backend reduces float32 only.
  Tensor f = scratch.reduce_f32.flat_range(0, t.numel());
  ops::convert(*ctx, f, t.flat_range(0, t.numel()));
  tp->all_reduce(f, op).wait();
  ops::convert(*ctx, t.flat_range(0, t.numel()), f);
}

void GPT2::Impl::reduce_scatter_tp(const Tensor& out, const Tensor& in) {
  if (in.dtype == DType::f32 || std::strcmp(tp->backend(), "mpi") != 0) {
    tp->reduce_scatter(out, in, ReduceOp::sum).wait();
    return;
  }
  const int64_t n = out.numel();
  Tensor f = scratch.reduce_f32.flat_range(0, in.numel());
  ops::convert(*ctx, f, in.flat_range(0, in.numel()));
  Tensor mine = f.flat_range(int64_t(layout.tp_rank) * n, n);
  tp->reduce_scatter(mine, f, ReduceOp::sum).wait();  // in place, as the distributed optimizer does
  ops::convert(*ctx, out.flat_range(0, n), mine);
}

Tensor GPT2::Impl::reduce_partial(const Tensor& partial) {
  if (!tp) return partial;
  if (sp) {
    reduce_scatter_tp(scratch.shard, partial);
    return scratch.shard;
  }
  all_reduce_tp(partial);
  return partial;
}

Tensor GPT2::Impl::all_rows(const Tensor& rows) {
  if (!sp) return rows;
  tp->all_gather(scratch.gathered, rows).wait();
  return scratch.gathered;
}

void GPT2::Impl::layernorm_all_rows(const Tensor& out, const Tensor& mean, const Tensor& rstd, const Tensor& in,
                                    const Tensor& w, const Tensor& b) {
  if (!sp) {
    ops::layernorm_forward(*ctx, out, mean, rstd, in, w, b);
    return;
  }
  ops::layernorm_forward(*ctx, scratch.shard, mean, rstd, in, w, b);
  tp->all_gather(out, scratch.shard).wait();
}

void GPT2::Impl::embedding_forward(Microbatch& m, const Tensor& out) {
  // wpe once: on tp rank 0, before the reduction over the vocabulary shards.
  const Tensor wpe = layout.tp_rank == 0 ? p.wpe : Tensor();
  if (!tp) {
    ops::embedding_forward(*ctx, out.reshape({B, T, C}), m.tokens, p.wte, wpe, 0);
  } else if (sp) {
    ops::embedding_forward(*ctx, scratch.proj.reshape({B, T, C}), m.tokens, p.wte, wpe, vocab_start);
    reduce_scatter_tp(out, scratch.proj);
  } else {
    ops::embedding_forward(*ctx, out.reshape({B, T, C}), m.tokens, p.wte, wpe, vocab_start);
    all_reduce_tp(out);
  }
}

void GPT2::Impl::embedding_backward(Microbatch& m, const Tensor& dres) {
  // Every rank sees every row's gradient, so wpe's (replicated) gradient is complete everywhere.
  Tensor d = all_rows(dres);
  ops::embedding_backward(*ctx, g.wte, g.wpe, d.reshape({B, T, C}), m.tokens, vocab_start);
}

void GPT2::Impl::block_forward(int layer, BlockActivations& a, const Tensor& in, const Tensor& out,
                               bool mlp_projection) {
  Context& c = *ctx;
  const model::BlockParams& w = p.blocks[size_t(layer)];
  // Row-parallel biases are replicated: added by tp rank 0 only, so the reduction counts them once.
  const bool bias_here = layout.tp_rank == 0;
  layernorm_all_rows(a.ln1, a.ln1_mean, a.ln1_rstd, in, w.ln1w, w.ln1b);
  ops::matmul_forward(c, a.qkv, Tensor(), a.ln1, w.qkvw, w.qkvb, Epilogue::none);
  ops::attention_forward(c, a.atty.reshape({B, T, Cl}), a.att_stats, a.qkv.reshape({B, T, 3 * Cl}), NHl, NHl);
  ops::matmul_forward(c, scratch.proj, Tensor(), a.atty, w.attprojw, bias_here ? w.attprojb : Tensor(),
                      Epilogue::none);
  ops::residual_forward(c, a.residual2, in, reduce_partial(scratch.proj));
  layernorm_all_rows(a.ln2, a.ln2_mean, a.ln2_rstd, a.residual2, w.ln2w, w.ln2b);
  ops::matmul_forward(c, a.fch_gelu, a.fch, a.ln2, w.fcw, w.fcb, Epilogue::gelu);
  // Backward never reads the MLP projection's output, so recomputation stops here.
  if (!mlp_projection) return;
  ops::matmul_forward(c, scratch.proj, Tensor(), a.fch_gelu, w.fcprojw, bias_here ? w.fcprojb : Tensor(),
                      Epilogue::none);
  ops::residual_forward(c, out, a.residual2, reduce_partial(scratch.proj));
}

void GPT2::Impl::block_backward(int layer, BlockActivations& a, const Tensor& in, const Tensor& dres) {
  Context& c = *ctx;
  const model::BlockParams& w = p.blocks[size_t(layer)];
  const model::BlockParams& d = g.blocks[size_t(layer)];
  const Tensor& dfch = scratch.dwide;  // (N,4Cl)
  const Tensor& dbtc = scratch.dbtc;   // (N,C)
  const int64_t off = sp ? sp_layer_offset[size_t(layer)] : -1;
  const Tensor dln1w = sp ? sp_partial(off, 0) : d.ln1w, dln1b = sp ? sp_partial(off, 1) : d.ln1b;
  const Tensor dln2w = sp ? sp_partial(off, 2) : d.ln2w, dln2b = sp ? sp_partial(off, 3) : d.ln2b;

  // MLP branch: out = residual2 + gelu(ln2(residual2) @ fcw^T + fcb) @ fcprojw^T + fcprojb.
  // The residual add passes dres through unchanged to residual2. Bias gradients come from every
  // row of dres, so they are complete (and equal) on every tp rank.
  Tensor dres_all = all_rows(dres);
  ops::matmul_backward(c, dfch, d.fcprojw, d.fcprojb, dres_all, a.fch_gelu, w.fcprojw);
  ops::gelu_backward(c, dfch, a.fch, dfch);
  ops::matmul_backward(c, dbtc, d.fcw, d.fcb, dfch, a.ln2, w.fcw);
  ops::layernorm_backward(c, dres, dln2w, dln2b, reduce_partial(dbtc), a.residual2, w.ln2w, a.ln2_mean, a.ln2_rstd);

  // Attention branch: residual2 = in + attention(ln1(in) @ qkvw^T + qkvb) @ attprojw^T + attprojb.
  dres_all = all_rows(dres);
  const int64_t n = N;
  Tensor datty = dbtc.flat_range(0, n * Cl).reshape({n, Cl});
  ops::matmul_backward(c, datty, d.attprojw, d.attprojb, dres_all, a.atty, w.attprojw);
  Tensor dqkv = dfch.flat_range(0, n * 3 * Cl);
  ops::attention_backward(c, dqkv.reshape({B, T, 3 * Cl}), datty.reshape({B, T, Cl}), a.qkv.reshape({B, T, 3 * Cl}),
                          a.atty.reshape({B, T, Cl}), a.att_stats, NHl, NHl);
  ops::matmul_backward(c, dbtc, d.qkvw, d.qkvb, dqkv.reshape({n, 3 * Cl}), a.ln1, w.qkvw);
  ops::layernorm_backward(c, dres, dln1w, dln1b, reduce_partial(dbtc), in, w.ln1w, a.ln1_mean, a.ln1_rstd);
}

void GPT2::Impl::head_forward(Microbatch& m, HeadActivations& h, const Tensor& x) {
  Context& c = *ctx;
  layernorm_all_rows(h.lnf, h.lnf_mean, h.lnf_rstd, x, p.lnfw, p.lnfb);
  ops::matmul_forward(c, h.logits, Tensor(), h.lnf, p.wte, Tensor(), Epilogue::none);  // (N,Vl)
  m.logits_valid = true;
  m.backward_ready = false;
  m.loss = std::numeric_limits<float>::quiet_NaN();
  if (!m.has_targets) return;

  // Losses only: the gradient scale is known at backward, which computes dlogits then.
  if (!tp) {
    ops::crossentropy_forward_backward(c, h.losses, Tensor(), h.logits, m.targets, config.vocab_size, 0.0f);
  } else {
    Tensor row_max = h.ce_stats.flat_range(0, N), sums = h.ce_stats.flat_range(N, 2 * N);
    Tensor sum_exp = h.ce_stats.flat_range(N, N), target_logit = h.ce_stats.flat_range(2 * N, N);
    Tensor targets = m.targets.reshape({N});
    ops::crossentropy_vp_max(c, row_max, h.logits, vocab_valid);
    all_reduce_tp(row_max, ReduceOp::max);
    ops::crossentropy_vp_sums(c, sum_exp, target_logit, h.logits, row_max, targets, vocab_start, vocab_valid);
    all_reduce_tp(sums);  // sum_exp and target_logit in one reduction
    ops::crossentropy_vp_loss(c, h.losses, sum_exp, target_logit, row_max);
  }
  std::vector<float> losses = model::download_floats(c, h.losses);
  double sum = 0.0;
  for (int64_t i = 0; i < N; ++i) sum += losses[size_t(i)];
  m.loss = float(sum / double(N));
  m.backward_ready = true;
}

void GPT2::Impl::head_backward(Microbatch& m, HeadActivations& h, const Tensor& x, const Tensor& dres,
                               float loss_scale) {
  Context& c = *ctx;
  m.backward_ready = false;
  m.logits_valid = false;  // overwritten by dlogits below
  const float dloss = loss_scale / float(N);
  if (!tp) {
    ops::crossentropy_forward_backward(c, h.losses, h.logits, h.logits, m.targets, config.vocab_size, dloss);
  } else {
    ops::crossentropy_vp_backward(c, h.logits, h.logits, h.ce_stats.flat_range(0, N), h.ce_stats.flat_range(N, N),
                                  m.targets.reshape({N}), vocab_start, vocab_valid, dloss);
  }
  // The tied lm head; dlnf is a partial sum over the vocabulary shards.
  ops::matmul_backward(c, scratch.dbtc, g.wte, Tensor(), h.logits, h.lnf, p.wte);
  zero_tensor(c, dres);
  const Tensor dlnfw = sp ? sp_partial(sp_lnf_offset, 0) : g.lnfw, dlnfb = sp ? sp_partial(sp_lnf_offset, 1) : g.lnfb;
  ops::layernorm_backward(c, dres, dlnfw, dlnfb, reduce_partial(scratch.dbtc), x, p.lnfw, h.lnf_mean, h.lnf_rstd);
}

void GPT2::Impl::finish_sp_grads(int64_t offset, std::vector<Tensor> targets) {
  Tensor partial = sp_flat.flat_range(offset, int64_t(targets.size()) * C);
  tp->all_reduce(partial, ReduceOp::sum).wait();
  for (size_t k = 0; k < targets.size(); ++k) {
    Tensor part = sp_partial(offset, int(k));
    ops::residual_forward(*ctx, targets[k], targets[k], part);
  }
  zero_tensor(*ctx, partial);
}

GPT2::GPT2(Context& ctx, const GPT2Config& config, const ModelOptions& options) : impl_(std::make_unique<Impl>()) {
  config.validate();
  Impl& m = *impl_;
  m.ctx = &ctx;
  m.config = config;
  m.options = options;
  m.grid = options.grid;
  if (m.grid) {
    const ParallelLayout& l = m.grid->layout();
    m.layout.tp = l.tp;
    m.layout.tp_rank = m.grid->tp_rank();
    m.layout.pp = l.pp;
    m.layout.pp_rank = m.grid->pp_rank();
    m.layout.virtual_stages = l.virtual_stages;
    m.layout.sequence_parallel = l.sequence_parallel && l.tp > 1;
  }
  // Every check before any allocation.
  model::validate_layout(config, m.layout);
  switch (options.precision) {
    case Precision::automatic: m.dtype = ctx.on_gpu() ? DType::bf16 : DType::f32; break;
    case Precision::f32: m.dtype = DType::f32; break;
    case Precision::bf16:
      if (!ctx.on_gpu())
        throw config_error("bf16 precision needs a GPU context; the CPU backend computes in float32",
                           "use precision f32 (or automatic) on the CPU");
      m.dtype = DType::bf16;
      break;
  }
  if (m.layout.tp > 1) m.tp = &m.grid->tp();
  m.sp = m.layout.sequence_parallel;
  m.C = config.n_embd;
  m.Cl = config.n_embd / m.layout.tp;
  m.NHl = config.n_head / m.layout.tp;
  m.Vl = config.padded_vocab_size / m.layout.tp;
  m.vocab_start = m.layout.tp_rank * m.Vl;
  m.vocab_valid = std::clamp(config.vocab_size - m.vocab_start, 0, m.Vl);

  const int model_chunks = m.layout.model_chunks();
  for (int c = 0; c < m.layout.virtual_stages; ++c) {
    LocalChunk lc;
    lc.model_chunk = m.layout.model_chunk(c);
    lc.layers = model::chunk_layers(config.n_layer, model_chunks, lc.model_chunk);
    lc.embedding = lc.model_chunk == 0;
    lc.head = lc.model_chunk == model_chunks - 1;
    m.chunks.push_back(lc);
  }

  m.global_table = model::gpt2_param_table(config);
  m.local = model::local_param_table(m.global_table, config, m.layout);
  const ParamTable& table = m.local.table;
  const int64_t n = table.flat_numel();
  m.param_storage = Buffer(ctx, size_t(n) * dtype_size(m.dtype), ctx.device());
  m.grad_storage = Buffer(ctx, size_t(n) * sizeof(float), ctx.device());
  m.params_flat = m.param_storage.view({n}, m.dtype);
  m.grads_flat = m.grad_storage.view({n}, DType::f32);
  zero_tensor(ctx, m.params_flat);
  zero_tensor(ctx, m.grads_flat);
  m.p = model::gpt2_param_views(table, config, m.params_flat);
  m.g = model::gpt2_param_views(table, config, m.grads_flat);

  m.layer_first_entry.assign(size_t(config.n_layer), 0);
  for (int l = 0; l < config.n_layer; ++l) {
    const int i = table.find(fmt::format("transformer.h.{}.ln_1.weight", l));
    if (i >= 0) m.layer_first_entry[size_t(l)] = size_t(i);
  }
  if (table.find("transformer.wpe.weight") >= 0) m.wpe_entry = size_t(table.index_of("transformer.wpe.weight"));
  if (table.find("transformer.ln_f.weight") >= 0) m.lnf_entry = size_t(table.index_of("transformer.ln_f.weight"));

  if (m.sp) {
    int64_t total = 0;
    m.sp_layer_offset.assign(size_t(config.n_layer), -1);
    for (const LocalChunk& lc : m.chunks) {
      for (int l = lc.layers.begin; l < lc.layers.end; ++l) {
        m.sp_layer_offset[size_t(l)] = total;
        total += 4 * int64_t(m.C);
      }
      if (lc.head) {
        m.sp_lnf_offset = total;
        total += 2 * int64_t(m.C);
      }
    }
    m.sp_storage = Buffer(ctx, size_t(total) * sizeof(float), ctx.device());
    m.sp_flat = m.sp_storage.view({total}, DType::f32);
    zero_tensor(ctx, m.sp_flat);
  }
}

GPT2::~GPT2() = default;

const GPT2Config& GPT2::config() const { return impl_->config; }
Context& GPT2::context() const { return *impl_->ctx; }
DType GPT2::dtype() const { return impl_->dtype; }
const ModelOptions& GPT2::options() const { return impl_->options; }
const ParamTable& GPT2::params() const { return impl_->local.table; }
const ParamTable& GPT2::global_params() const { return impl_->global_table; }
Tensor GPT2::param_buffer() const { return impl_->params_flat; }
Tensor GPT2::grad_buffer() const { return impl_->grads_flat; }

size_t GPT2::global_index(size_t local_entry) const {
  TESSERA_CHECK(local_entry < impl_->local.global_index.size(), "parameter index out of range");
  return impl_->local.global_index[local_entry];
}

bool GPT2::holds_all_parameters() const {
  return impl_->layout.tp == 1 && impl_->local.table.size() == impl_->global_table.size();
}

bool GPT2::is_primary_copy(size_t local_entry) const {
  const Impl& m = *impl_;
  const ParamSpec& spec = m.local.table[local_entry];
  if (spec.split_dim < 0 && m.layout.tp_rank != 0) return false;
  if (spec.name == kWteName && m.layout.pp > 1 && !m.chunks.front().embedding) return false;
  return true;
}

Tensor GPT2::param(size_t i) const {
  TESSERA_CHECK(i < impl_->local.table.size(), "parameter index out of range");
  return model::table_view(impl_->local.table, i, impl_->params_flat);
}

Tensor GPT2::grad(size_t i) const {
  TESSERA_CHECK(i < impl_->local.table.size(), "parameter index out of range");
  return model::table_view(impl_->local.table, i, impl_->grads_flat);
}

void GPT2::init_weights(uint64_t seed) {
  Impl& m = *impl_;
  zero_tensor(*m.ctx, m.params_flat);  // padding and padded wte rows stay zero
  std::vector<float> global, shard;
  for (size_t i = 0; i < m.local.table.size(); ++i) {
    const ParamSpec& spec = m.global_table[m.local.global_index[i]];
    int64_t numel = 1;
    for (int64_t d : spec.shape) numel *= d;
    // Only the real vocabulary rows of wte are drawn, so padding never shifts the stream.
    const int64_t drawn = spec.name == kWteName ? int64_t(m.config.vocab_size) * m.config.n_embd : numel;
    global.assign(size_t(numel), 0.0f);
    model::initial_values(spec, drawn, seed, global.data());
    shard.assign(size_t(m.local.table.numel(i)), 0.0f);
    model::extract_shard(spec, m.layout.tp, m.layout.tp_rank, global.data(), shard.data());
    model::upload_floats(*m.ctx, param(i), shard.data());
  }
  for (Microbatch& mb : m.mbs) {
    mb.logits_valid = false;
    mb.backward_ready = false;
  }
}

// ---- Pipeline steps ----

int GPT2::local_chunks() const { return int(impl_->chunks.size()); }
bool GPT2::has_embedding() const { return impl_->chunks.front().embedding; }
bool GPT2::has_head() const { return impl_->chunks.back().head; }

void GPT2::begin_step(int microbatches, int B, int T, int slots) {
  Impl& m = *impl_;
  const GPT2Config& cfg = m.config;
  if (microbatches <= 0 || B <= 0 || T <= 0)
    throw config_error(fmt::format("GPT2: {} microbatches of batch {} x sequence {} must all be positive",
                                   microbatches, B, T));
  if (T > cfg.max_seq_len)
    throw config_error(fmt::format("GPT2: sequence length {} exceeds the model's context of {}", T, cfg.max_seq_len),
                       fmt::format("use a sequence length of at most {}", cfg.max_seq_len));
  if (m.sp && (int64_t(B) * T) % m.layout.tp != 0)
    throw config_error(fmt::format("sequence parallelism splits the batch's {} x {} = {} positions across --tp {} "
                                   "ranks, which does not divide them",
                                   B, T, int64_t(B) * T, m.layout.tp),
                       "choose --batch-size and --seq-len whose product is a multiple of --tp, or drop --sp");
  if (slots < 0) throw config_error(fmt::format("GPT2: {} activation slots", slots));
  const int S = slots == 0 ? microbatches : std::min(slots, microbatches);
  if (microbatches != m.M || B != m.B || T != m.T || S != m.S)
    m.plan(microbatches, B, T, S);
  else
    m.reset_slots();
}

void GPT2::set_microbatch(int mb, const int32_t* tokens, const int32_t* targets) {
  Impl& m = *impl_;
  m.check_chunk(mb, 0, "set_microbatch");
  const GPT2Config& cfg = m.config;
  TESSERA_CHECK(tokens != nullptr, "GPT2::set_microbatch needs tokens");
  const int B = m.B, T = m.T;
  auto check_ids = [&](const int32_t* ids, const char* what) {
    for (int64_t i = 0; i < int64_t(B) * T; ++i) {
      if (ids[i] < 0 || ids[i] >= cfg.vocab_size)
        throw data_error(fmt::format("{} {} at (b={}, t={}) is outside the vocabulary [0, {})", what, ids[i], i / T,
                                     i % T, cfg.vocab_size),
                         "GPT2::forward", "check that the data was tokenized for this model's vocabulary");
    }
  };
  check_ids(tokens, "token");
  if (targets) check_ids(targets, "target");
  Microbatch& x = m.mbs[size_t(mb)];
  copy_tensor(*m.ctx, x.tokens, Tensor(const_cast<int32_t*>(tokens), {B, T}, DType::i32, Device::cpu));
  if (targets) copy_tensor(*m.ctx, x.targets, Tensor(const_cast<int32_t*>(targets), {B, T}, DType::i32, Device::cpu));
  x.has_targets = targets != nullptr;
  x.logits_valid = false;
  x.backward_ready = false;
}

void GPT2::forward_chunk(int mb, int chunk) {
  Impl& m = *impl_;
  m.check_chunk(mb, chunk, "forward_chunk");
  Microbatch& x = m.mbs[size_t(mb)];
  ChunkActivations& a = m.acquire(mb, chunk);
  const LocalChunk& lc = m.chunks[size_t(chunk)];
  const bool recompute = m.options.recompute == Recompute::full;
  if (lc.embedding) m.embedding_forward(x, a.residual[0]);
  for (int l = lc.layers.begin; l < lc.layers.end; ++l) {
    const size_t k = size_t(l - lc.layers.begin);
    BlockActivations& acts = recompute ? m.scratch.recompute : a.blocks[k];
    m.block_forward(l, acts, a.residual[k], a.residual[k + 1], true);
  }
  if (recompute) m.recomputed = RecomputedBlock{mb, chunk, lc.layers.end - 1};
  if (lc.head) m.head_forward(x, m.head_of(mb), a.residual.back());
}

void GPT2::backward_chunk(int mb, int chunk, float loss_scale) {
  Impl& m = *impl_;
  m.check_chunk(mb, chunk, "backward_chunk");
  Microbatch& x = m.mbs[size_t(mb)];
  ChunkActivations& a = m.held(mb, chunk, "backward_chunk");
  const LocalChunk& lc = m.chunks[size_t(chunk)];
  const bool recompute = m.options.recompute == Recompute::full;
  const bool last_mb = mb == m.M - 1;
  Tensor dres = m.grad_of(mb, chunk, "backward_chunk");  // (Nr,C)
  if (lc.head) {
    if (!x.backward_ready)
      throw config_error("GPT2::backward without a forward pass with targets since the last backward",
                         "call forward(tokens, targets, B, T) before each backward()");
    m.head_backward(x, m.head_of(mb), a.residual.back(), dres, loss_scale);
    if (last_mb) {
      if (m.sp) m.finish_sp_grads(m.sp_lnf_offset, {m.g.lnfw, m.g.lnfb});
      m.report_final(m.lnf_entry);
    }
  }
  for (int l = lc.layers.end - 1; l >= lc.layers.begin; --l) {
    const size_t k = size_t(l - lc.layers.begin);
    BlockActivations& acts = recompute ? m.scratch.recompute : a.blocks[k];
    // Recomputed unless the scratch still holds this very block (the last forward's last block).
    const RecomputedBlock wanted{mb, chunk, l};
    if (recompute && !(m.recomputed == wanted)) {
      m.block_forward(l, acts, a.residual[k], Tensor(), false);
      m.recomputed = wanted;
    }
    m.block_backward(l, acts, a.residual[k], dres);
    if (last_mb) {
      if (m.sp) {
        const model::BlockParams& d = m.g.blocks[size_t(l)];
        m.finish_sp_grads(m.sp_layer_offset[size_t(l)], {d.ln1w, d.ln1b, d.ln2w, d.ln2b});
      }
      m.report_final(m.layer_first_entry[size_t(l)]);
    }
  }
  if (lc.embedding) {
    m.embedding_backward(x, dres);
    // With pp > 1 the tied wte (entry 0) is final only after finish_backward's sum over stages.
    if (last_mb) m.report_final(m.layout.pp > 1 ? m.wpe_entry : 0);
  }
  // The slot's gradient (d input) may still be sent: a slot taken next only receives an activation.
  m.release(mb, chunk);
}

Tensor GPT2::activation_to_send(int mb, int chunk) {
  impl_->check_chunk(mb, chunk, "activation_to_send");
  return impl_->held(mb, chunk, "activation_to_send").residual.back();
}

Tensor GPT2::activation_to_receive(int mb, int chunk) {
  impl_->check_chunk(mb, chunk, "activation_to_receive");
  return impl_->acquire(mb, chunk).residual.front();
}

Tensor GPT2::gradient_to_send(int mb, int chunk) {
  impl_->check_chunk(mb, chunk, "gradient_to_send");
  return impl_->grad_of(mb, chunk, "gradient_to_send");
}

Tensor GPT2::gradient_to_receive(int mb, int chunk) {
  impl_->check_chunk(mb, chunk, "gradient_to_receive");
  return impl_->grad_of(mb, chunk, "gradient_to_receive");
}

float GPT2::microbatch_loss(int mb) const {
  const Impl& m = *impl_;
  m.check_chunk(mb, 0, "microbatch_loss");
  if (!m.chunks.back().head)
    throw config_error("GPT2::microbatch_loss on a rank without the last model chunk", "ask the last pipeline stage");
  return m.mbs[size_t(mb)].loss;
}

void GPT2::set_grads_ready_hook(std::function<void(size_t)> hook) { impl_->grads_ready = std::move(hook); }

void GPT2::finish_backward() {
  Impl& m = *impl_;
  if (m.layout.pp > 1 && !m.g.wte.empty()) {
    Communicator* embedding = m.grid->embedding();
    TESSERA_CHECK(embedding != nullptr, "a stage holding wte has no embedding group");
    embedding->all_reduce(m.g.wte, ReduceOp::sum).wait();
  }
  m.report_final(0);
}

// ---- One process, one microbatch ----

float GPT2::forward(const int32_t* tokens, const int32_t* targets, int B, int T) {
  Impl& m = *impl_;
  if (m.layout.pp > 1)
    throw config_error("GPT2::forward runs every chunk on this rank, but this rank holds one pipeline stage",
                       "drive pipeline-parallel models through the Trainer (or run_pipeline)");
  if (B <= 0 || T <= 0)
    throw config_error(fmt::format("GPT2::forward: batch {} x sequence {} must be positive", B, T));
  begin_step(1, B, T);
  set_microbatch(0, tokens, targets);
  for (int c = 0; c < local_chunks(); ++c) forward_chunk(0, c);
  return m.mbs[0].loss;
}

void GPT2::backward(float loss_scale) {
  Impl& m = *impl_;
  if (m.M == 0 || !m.mbs[0].backward_ready)
    throw config_error("GPT2::backward without a forward pass with targets since the last backward",
                       "call forward(tokens, targets, B, T) before each backward()");
  if (m.M != 1)
    throw config_error("GPT2::backward after a pipeline step plan", "call forward() before backward()");
  for (int c = local_chunks() - 1; c >= 0; --c) backward_chunk(0, c, loss_scale);
}

void GPT2::zero_grad() {
  zero_tensor(*impl_->ctx, impl_->grads_flat);
  if (impl_->sp) zero_tensor(*impl_->ctx, impl_->sp_flat);
}

void GPT2::logits_row(int b, int t, float* out) const {
  const Impl& m = *impl_;
  if (!m.chunks.back().head)
    throw config_error("GPT2::logits_row on a rank without the last model chunk", "ask the last pipeline stage");
  if (m.M == 0 || !m.mbs[0].logits_valid)
    throw config_error("GPT2::logits_row: no logits available (no forward yet, or backward consumed them)",
                       "call forward() and read the logits before backward()");
  if (b < 0 || b >= m.B || t < 0 || t >= m.T)
    throw config_error(fmt::format("GPT2::logits_row: position (b={}, t={}) outside the last forward's {} x {}",
                                   b, t, m.B, m.T));
  Tensor row = impl_->head_of(0).logits.rows(int64_t(b) * m.T + t, 1);  // (1,Vl)
  std::vector<float> host;
  if (!m.tp) {
    host = model::download_floats(*m.ctx, row.flat_range(0, m.config.vocab_size));
  } else {
    // Every vocabulary shard's part of the row, in rank order.
    Buffer all(*m.ctx, size_t(m.Vl) * m.layout.tp * dtype_size(m.dtype), m.ctx->device());
    Tensor gathered = all.view({int64_t(m.Vl) * m.layout.tp}, m.dtype);
    m.tp->all_gather(gathered, row.flat_range(0, m.Vl)).wait();
    host = model::download_floats(*m.ctx, gathered.flat_range(0, m.config.vocab_size));
  }
  std::copy(host.begin(), host.end(), out);
}

size_t GPT2::activation_bytes() const { return impl_->arena.capacity_bytes(); }

double GPT2::flops_per_token_palm(int T) const {
  const GPT2Config& c = impl_->config;
  const double N = double(c.parameter_count()) - double(c.max_seq_len) * c.n_embd;
  return 6.0 * N + 12.0 * c.n_layer * double(c.n_embd) * T;
}

double GPT2::flops_per_token_llmc(int T) const {
  const GPT2Config& c = impl_->config;
  return 6.0 * double(c.parameter_count()) + 6.0 * c.n_layer * double(c.n_embd) * T;
}

}  // namespace tessera
