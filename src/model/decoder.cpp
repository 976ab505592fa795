// The decoder's structure: its parameters and layout, the activation plan, the pipeline steps.
// The pieces' forward and backward passes are in decoder_blocks.cpp.
#include "model/decoder.h"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "tessera/error.h"

namespace tessera::model {

namespace {

DType choose_dtype(const Context& ctx, Precision precision) {
  switch (precision) {
    case Precision::automatic: return ctx.on_gpu() ? DType::bf16 : DType::f32;
    case Precision::f32: return DType::f32;
    case Precision::bf16:
      if (!ctx.on_gpu())
        throw config_error("bf16 precision needs a GPU context; the CPU backend computes in float32",
                           "use precision f32 (or automatic) on the CPU");
      return DType::bf16;
  }
  return DType::f32;
}

}  // namespace

Decoder::Decoder(Context& ctx, const ModelConfig& config, const ModelOptions& options)
    : ctx_(&ctx), config_(config), options_(options) {
  config.validate();
  if (options.grid) {
    grid_ = options.grid;
  } else {
    own_world_ = make_self_communicator(ctx);
    own_grid_ = std::make_unique<ProcessGrid>(*own_world_, ParallelLayout{});
    grid_ = own_grid_.get();
  }
  const ParallelLayout& l = grid_->layout();
  layout_.tp = l.tp;
  layout_.tp_rank = grid_->tp_rank();
  layout_.pp = l.pp;
  layout_.pp_rank = grid_->pp_rank();
  layout_.virtual_stages = l.virtual_stages;
  layout_.sequence_parallel = l.sequence_parallel && l.tp > 1;
  // Every check before any allocation.
  validate_layout(config, layout_);
  dtype_ = choose_dtype(ctx, options.precision);
  tp_ = parallel::TensorParallel(ctx, l.tp > 1 ? &grid_->tp() : nullptr, layout_.sequence_parallel);
  vocab_ = parallel::vocab_shard(config.padded_vocab_size, config.vocab_size, tp_);
  const int HS = config.head_size();
  C_ = config.n_embd;
  NHl_ = config.n_head / l.tp;
  NKVl_ = config.n_kv_head / l.tp;
  Ql_ = int64_t(NHl_) * HS;
  QKVl_ = int64_t(NHl_ + 2 * NKVl_) * HS;
  Fl_ = config.ffn_dim / l.tp;
  mlp_pre_width_ = config.mlp == MlpKind::swiglu ? 2 * Fl_ : Fl_;
  rope_.theta = config.rope_theta;
  rope_.factor = config.rope_scaling.factor;
  rope_.low_freq_factor = config.rope_scaling.low_freq_factor;
  rope_.high_freq_factor = config.rope_scaling.high_freq_factor;
  rope_.original_max_position_embeddings = config.rope_scaling.original_max_position;

  const int model_chunks = layout_.model_chunks();
  for (int c = 0; c < layout_.virtual_stages; ++c) {
    LocalChunk lc;
    lc.model_chunk = layout_.model_chunk(c);
    lc.layers = chunk_layers(config.n_layer, model_chunks, lc.model_chunk);
    lc.embedding = lc.model_chunk == 0;
    lc.head = lc.model_chunk == model_chunks - 1;
    chunks_.push_back(lc);
  }

  global_table_ = decoder_param_table(config);
  local_ = local_param_table(global_table_, config.n_layer, layout_);
  const ParamTable& table = local_.table;
  const int64_t n = table.flat_numel();
  param_storage_ = Buffer(ctx, size_t(n) * dtype_size(dtype_), ctx.device());
  grad_storage_ = Buffer(ctx, size_t(n) * sizeof(float), ctx.device());
  params_flat_ = param_storage_.view({n}, dtype_);
  grads_flat_ = grad_storage_.view({n}, DType::f32);
  zero_tensor(ctx, params_flat_);
  zero_tensor(ctx, grads_flat_);
  finishing_ = std::make_unique<parallel::GradientFinishing>(ctx, table, grads_flat_, tp_, grid_->embedding());
  p_ = decoder_param_views(config, table, [&](size_t i) { return table_view(table, i, params_flat_); });
  g_ = decoder_param_views(config, table, [&](size_t i) { return finishing_->accumulator(i); });

  layer_entries_.assign(size_t(config.n_layer + 2), {0, 0});
  for (size_t i = 0; i < table.size(); ++i) {
    auto& range = layer_entries_[size_t(table[i].layer + 1)];
    if (range.first == range.second) range.first = i;
    range.second = i + 1;
  }
}

Decoder::~Decoder() = default;

size_t Decoder::global_index(size_t local_entry) const {
  TESSERA_CHECK(local_entry < local_.global_index.size(), "parameter index out of range");
  return local_.global_index[local_entry];
}

bool Decoder::holds_all_parameters() const {
  return layout_.tp == 1 && local_.table.size() == global_table_.size();
}

bool Decoder::is_primary_copy(size_t local_entry) const {
  const ParamSpec& spec = local_.table[local_entry];
  if (spec.split_dim < 0 && layout_.tp_rank != 0) return false;
  if (spec.tied_to_head && layout_.pp > 1 && !chunks_.front().embedding) return false;
  return true;
}

Tensor Decoder::param(size_t i) const {
  TESSERA_CHECK(i < local_.table.size(), "parameter index out of range");
  return table_view(local_.table, i, params_flat_);
}

Tensor Decoder::grad(size_t i) const {
  TESSERA_CHECK(i < local_.table.size(), "parameter index out of range");
  return table_view(local_.table, i, grads_flat_);
}

void Decoder::init_weights(uint64_t seed) {
  zero_tensor(*ctx_, params_flat_);  // padding and padded vocabulary rows stay zero
  std::vector<float> global, shard;
  for (size_t i = 0; i < local_.table.size(); ++i) {
    const ParamSpec& spec = global_table_[local_.global_index[i]];
    int64_t numel = 1;
    for (int64_t d : spec.shape) numel *= d;
    // Only the real rows are drawn, so padding never shifts the stream.
    const int64_t drawn = spec.real_rows > 0 ? numel / spec.shape[0] * spec.real_rows : numel;
    global.assign(size_t(numel), 0.0f);
    initial_values(spec, drawn, seed, global.data());
    shard.assign(size_t(local_.table.numel(i)), 0.0f);
    extract_shard(spec, layout_.tp, layout_.tp_rank, global.data(), shard.data());
    upload_floats(*ctx_, param(i), shard.data());
  }
  for (Microbatch& mb : mbs_) {
    mb.logits_valid = false;
    mb.backward_ready = false;
  }
}

// ---- The activation plan ----

void Decoder::declare_norm(NormActs& a, const std::string& k) {
  arena_.add(&a.out, k + "out", {N_, C_}, dtype_);
  if (config_.norm == NormKind::layernorm) arena_.add(&a.mean, k + "mean", {Nr_}, DType::f32);
  arena_.add(&a.rstd, k + "rstd", {Nr_}, DType::f32);
}

void Decoder::declare_block(BlockActs& a, const std::string& k) {
  auto act = [&](Tensor* t, const char* name, std::vector<int64_t> shape) { arena_.add(t, k + name, std::move(shape), dtype_); };
  declare_norm(a.norm1, k + "norm1.");
  act(&a.qkv, "qkv", {N_, QKVl_});
  act(&a.att, "att", {N_, Ql_});
  arena_.add(&a.att_stats, k + "att_stats", {B_, NHl_, T_}, DType::f32);
  act(&a.residual2, "residual2", {Nr_, C_});
  declare_norm(a.norm2, k + "norm2.");
  act(&a.mlp_pre, "mlp_pre", {N_, mlp_pre_width_});
  act(&a.mlp_act, "mlp_act", {N_, Fl_});
}

void Decoder::plan(int M, int B, int T, int S) {
  M_ = M;
  B_ = B;
  T_ = T;
  S_ = S;
  N_ = int64_t(B) * T;
  Nr_ = tp_.local_rows(N_);
  const bool recompute = options_.recompute == Recompute::full;
  const bool chained = layout_.pp == 1;  // a chunk's input is the previous local chunk's output
  // The declared Tensors must not move before allocate(): size every vector first.
  mbs_ = std::vector<Microbatch>(size_t(M));
  slots_.assign(chunks_.size(), std::vector<ChunkActs>(size_t(S)));
  head_slots_.assign(has_head() ? size_t(S) : 0, HeadActs{});
  scratch_ = Scratch{};
  for (size_t c = 0; c < chunks_.size(); ++c) {
    const int blocks = chunks_[c].layers.end - chunks_[c].layers.begin;
    for (ChunkActs& a : slots_[c]) {
      a.residual.resize(size_t(blocks + 1));
      if (!recompute) a.blocks.resize(size_t(blocks));
    }
  }
  arena_.clear();
  auto act = [&](Tensor* t, std::string name, std::vector<int64_t> shape) { arena_.add(t, std::move(name), std::move(shape), dtype_); };
  auto f32 = [&](Tensor* t, std::string name, std::vector<int64_t> shape) {
    arena_.add(t, std::move(name), std::move(shape), DType::f32);
  };
  for (size_t mb = 0; mb < mbs_.size(); ++mb) {
    arena_.add(&mbs_[mb].tokens, fmt::format("mb{}.tokens", mb), {B, T}, DType::i32);
    arena_.add(&mbs_[mb].targets, fmt::format("mb{}.targets", mb), {B, T}, DType::i32);
  }
  for (size_t c = 0; c < chunks_.size(); ++c) {
    for (size_t k = 0; k < slots_[c].size(); ++k) {
      ChunkActs& a = slots_[c][k];
      const std::string kc = fmt::format("chunk{}.slot{}.", c, k);
      for (size_t r = 0; r < a.residual.size(); ++r) {
        if (r == 0 && c > 0 && chained) continue;  // the previous chunk's output, bound below
        act(&a.residual[r], fmt::format("{}residual.{}", kc, r), {Nr_, C_});
      }
      for (size_t b = 0; b < a.blocks.size(); ++b) declare_block(a.blocks[b], fmt::format("{}block.{}.", kc, b));
      if (!chained) act(&a.grad, kc + "grad", {Nr_, C_});
    }
  }
  for (size_t k = 0; k < head_slots_.size(); ++k) {
    HeadActs& h = head_slots_[k];
    const std::string kh = fmt::format("head.slot{}.", k);
    declare_norm(h.norm, kh + "norm.");
    act(&h.logits, kh + "logits", {N_, vocab_.rows});
    f32(&h.losses, kh + "losses", {N_});
    if (tp_.size() > 1) f32(&h.ce_stats, kh + "ce_stats", {3 * N_});
  }
  act(&scratch_.proj, "proj", {N_, C_});
  act(&scratch_.dbtc, "dbtc", {N_, C_});
  act(&scratch_.dwide, "dwide", {N_, std::max(mlp_pre_width_, QKVl_)});
  if (config_.mlp == MlpKind::swiglu) act(&scratch_.dact, "dact", {N_, Fl_});
  if (tp_.sequence_parallel()) {
    act(&scratch_.shard, "shard", {Nr_, C_});
    act(&scratch_.gathered, "gathered", {N_, C_});
  }
  if (chained) act(&scratch_.grad, "grad", {Nr_, C_});
  if (recompute) declare_block(scratch_.recompute, "recompute.");
  arena_.allocate(*ctx_);
  if (chained)
    for (size_t c = 1; c < chunks_.size(); ++c)
      for (size_t k = 0; k < slots_[c].size(); ++k) slots_[c][k].residual[0] = slots_[c - 1][k].residual.back();
  slot_table_.plan(M, int(chunks_.size()), S, chained);
  recomputed_ = RecomputedBlock{};
}

Tensor Decoder::grad_of(int mb, int chunk, const char* what) {
  if (layout_.pp == 1) return scratch_.grad;
  return slots_[size_t(chunk)][size_t(slot_table_.last_held(mb, chunk, what))].grad;
}

// ---- Pipeline steps ----

void Decoder::begin_step(int microbatches, int B, int T, int slots) {
  if (microbatches <= 0 || B <= 0 || T <= 0)
    throw config_error(fmt::format("model: {} microbatches of batch {} x sequence {} must all be positive",
                                   microbatches, B, T));
  if (T > config_.max_seq_len)
    throw config_error(fmt::format("model: sequence length {} exceeds the model's context of {}", T, config_.max_seq_len),
                       fmt::format("use a sequence length of at most {}", config_.max_seq_len));
  if (tp_.sequence_parallel() && (int64_t(B) * T) % layout_.tp != 0)
    throw config_error(fmt::format("sequence parallelism splits the batch's {} x {} = {} positions across --tp {} "
                                   "ranks, which does not divide them",
                                   B, T, int64_t(B) * T, layout_.tp),
                       "choose --batch-size and --seq-len whose product is a multiple of --tp, or drop --sp");
  if (slots < 0) throw config_error(fmt::format("model: {} activation slots", slots));
  const int S = slots == 0 ? microbatches : std::min(slots, microbatches);
  if (microbatches != M_ || B != B_ || T != T_ || S != S_) {
    plan(microbatches, B, T, S);
  } else {
    slot_table_.reset();
    recomputed_ = RecomputedBlock{};
  }
}

void Decoder::set_microbatch(int mb, const int32_t* tokens, const int32_t* targets) {
  slot_table_.check(mb, 0, "set_microbatch");
  TESSERA_CHECK(tokens != nullptr, "Model::set_microbatch needs tokens");
  auto check_ids = [&](const int32_t* ids, const char* what) {
    for (int64_t i = 0; i < N_; ++i) {
      if (ids[i] < 0 || ids[i] >= config_.vocab_size)
        throw data_error(fmt::format("{} {} at (b={}, t={}) is outside the vocabulary [0, {})", what, ids[i], i / T_,
                                     i % T_, config_.vocab_size),
                         "Model::forward", "check that the data was tokenized for this model's vocabulary");
    }
  };
  check_ids(tokens, "token");
  if (targets) check_ids(targets, "target");
  Microbatch& x = mbs_[size_t(mb)];
  copy_tensor(*ctx_, x.tokens, Tensor(const_cast<int32_t*>(tokens), {B_, T_}, DType::i32, Device::cpu));
  if (targets) copy_tensor(*ctx_, x.targets, Tensor(const_cast<int32_t*>(targets), {B_, T_}, DType::i32, Device::cpu));
  x.has_targets = targets != nullptr;
  x.logits_valid = false;
  x.backward_ready = false;
}

void Decoder::forward_chunk(int mb, int chunk) {
  slot_table_.check(mb, chunk, "forward_chunk");
  Microbatch& x = mbs_[size_t(mb)];
  ChunkActs& a = slot(mb, chunk);
  const LocalChunk& lc = chunks_[size_t(chunk)];
  const bool recompute = options_.recompute == Recompute::full;
  if (lc.embedding) embedding_forward(x, a.residual[0]);
  for (int l = lc.layers.begin; l < lc.layers.end; ++l) {
    const size_t k = size_t(l - lc.layers.begin);
    BlockActs& acts = recompute ? scratch_.recompute : a.blocks[k];
    block_forward(l, acts, a.residual[k], a.residual[k + 1], true);
  }
  if (recompute) recomputed_ = RecomputedBlock{mb, chunk, lc.layers.end - 1};
  if (lc.head) head_forward(x, head_of(mb), a.residual.back());
}

void Decoder::finish_entries(int layer) {
  const auto [first, end] = entries_of(layer);
  if (first == end) return;
  finishing_->finish_partial(first, end);
  // A tied entry waits for its copy on the other stage (finish_backward).
  size_t final_from = first;
  for (size_t i = first; i < end; ++i)
    if (finishing_->waits_for_tied_copy(i)) final_from = i + 1;
  if (final_from < end) report_final(final_from);
}

void Decoder::backward_chunk(int mb, int chunk, float loss_scale) {
  slot_table_.check(mb, chunk, "backward_chunk");
  Microbatch& x = mbs_[size_t(mb)];
  ChunkActs& a = slots_[size_t(chunk)][size_t(slot_table_.held(mb, chunk, "backward_chunk"))];
  const LocalChunk& lc = chunks_[size_t(chunk)];
  const bool recompute = options_.recompute == Recompute::full;
  const bool last_mb = mb == M_ - 1;
  Tensor dres = grad_of(mb, chunk, "backward_chunk");  // (Nr,C)
  if (lc.head) {
    if (!x.backward_ready)
      throw config_error("model backward without a forward pass with targets since the last backward",
                         "call forward(tokens, targets, B, T) before each backward()");
    head_backward(x, head_of(mb), a.residual.back(), dres, loss_scale);
    if (last_mb) finish_entries(config_.n_layer);
  }
  for (int l = lc.layers.end - 1; l >= lc.layers.begin; --l) {
    const size_t k = size_t(l - lc.layers.begin);
    BlockActs& acts = recompute ? scratch_.recompute : a.blocks[k];
    // Recomputed unless the scratch still holds this very block (the last forward's last block).
    const RecomputedBlock wanted{mb, chunk, l};
    if (recompute && !(recomputed_ == wanted)) {
      block_forward(l, acts, a.residual[k], Tensor(), false);
      recomputed_ = wanted;
    }
    block_backward(l, acts, a.residual[k], dres);
    if (last_mb) finish_entries(l);
  }
  if (lc.embedding) {
    embedding_backward(x, dres);
    if (last_mb) finish_entries(-1);
  }
  // The slot's gradient (d input) may still be sent: a slot taken next only receives an activation.
  slot_table_.release(mb, chunk);
}

Tensor Decoder::activation_to_send(int mb, int chunk) {
  slot_table_.check(mb, chunk, "activation_to_send");
  return slots_[size_t(chunk)][size_t(slot_table_.held(mb, chunk, "activation_to_send"))].residual.back();
}

Tensor Decoder::activation_to_receive(int mb, int chunk) {
  slot_table_.check(mb, chunk, "activation_to_receive");
  return slot(mb, chunk).residual.front();
}

Tensor Decoder::gradient_to_send(int mb, int chunk) {
  slot_table_.check(mb, chunk, "gradient_to_send");
  return grad_of(mb, chunk, "gradient_to_send");
}

Tensor Decoder::gradient_to_receive(int mb, int chunk) {
  slot_table_.check(mb, chunk, "gradient_to_receive");
  return grad_of(mb, chunk, "gradient_to_receive");
}

float Decoder::microbatch_loss(int mb) const {
  slot_table_.check(mb, 0, "microbatch_loss");
  if (!chunks_.back().head)
    throw config_error("Model::microbatch_loss on a rank without the last model chunk", "ask the last pipeline stage");
  return mbs_[size_t(mb)].loss;
}

void Decoder::finish_backward() {
  finishing_->finish_tied();
  report_final(0);
}

// ---- One process, one microbatch ----

float Decoder::forward(const int32_t* tokens, const int32_t* targets, int B, int T) {
  if (layout_.pp > 1)
    throw config_error("Model::forward runs every chunk on this rank, but this rank holds one pipeline stage",
                       "drive pipeline-parallel models through the Trainer (or run_pipeline)");
  if (B <= 0 || T <= 0) throw config_error(fmt::format("Model::forward: batch {} x sequence {} must be positive", B, T));
  begin_step(1, B, T, 0);
  set_microbatch(0, tokens, targets);
  for (int c = 0; c < local_chunks(); ++c) forward_chunk(0, c);
  return mbs_[0].loss;
}

void Decoder::backward(float loss_scale) {
  if (M_ == 0 || !mbs_[0].backward_ready)
    throw config_error("model backward without a forward pass with targets since the last backward",
                       "call forward(tokens, targets, B, T) before each backward()");
  if (M_ != 1) throw config_error("Model::backward after a pipeline step plan", "call forward() before backward()");
  for (int c = local_chunks() - 1; c >= 0; --c) backward_chunk(0, c, loss_scale);
}

void Decoder::zero_grad() {
  zero_tensor(*ctx_, grads_flat_);
  finishing_->zero();
}

void Decoder::logits_row(int b, int t, float* out) const {
  if (!chunks_.back().head)
    throw config_error("Model::logits_row on a rank without the last model chunk", "ask the last pipeline stage");
  if (M_ == 0 || !mbs_[0].logits_valid)
    throw config_error("Model::logits_row: no logits available (no forward yet, or backward consumed them)",
                       "call forward() and read the logits before backward()");
  if (b < 0 || b >= B_ || t < 0 || t >= T_)
    throw config_error(fmt::format("Model::logits_row: position (b={}, t={}) outside the last forward's {} x {}", b, t,
                                   B_, T_));
  const HeadActs& h = head_slots_[size_t(slot_table_.last_held(0, local_chunks() - 1, "logits_row"))];
  Tensor row = h.logits.rows(int64_t(b) * T_ + t, 1);  // (1,Vl)
  std::vector<float> host;
  if (tp_.size() == 1) {
    host = download_floats(*ctx_, row.flat_range(0, config_.vocab_size));
  } else {
    // Every vocabulary shard's part of the row, in rank order.
    Buffer all(*ctx_, size_t(vocab_.rows) * tp_.size() * dtype_size(dtype_), ctx_->device());
    Tensor gathered = all.view({int64_t(vocab_.rows) * tp_.size()}, dtype_);
    tp_.gather_columns(gathered, row.flat_range(0, vocab_.rows));
    host = download_floats(*ctx_, gathered.flat_range(0, config_.vocab_size));
  }
  std::copy(host.begin(), host.end(), out);
}

}  // namespace tessera::model

namespace tessera {

std::unique_ptr<Model> make_model(Context& ctx, const ModelConfig& config, const ModelOptions& options) {
  return std::make_unique<model::Decoder>(ctx, config, options);
}

}  // namespace tessera
