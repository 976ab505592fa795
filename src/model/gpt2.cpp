// GPT-2 forward and backward by hand over the kernels, as llm.c's train_gpt2: encoder, n_layer
// blocks (ln1 -> qkv -> attention -> projection -> residual -> ln2 -> fc+gelu -> projection ->
// residual), final LayerNorm, logits against the tied wte, fused softmax cross-entropy.
#include "tessera/gpt2.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/ops.h"
#include "model/arena.h"
#include "model/gpt2_params.h"
#include "model/host_transfer.h"
#include "tessera/buffer.h"
#include "tessera/error.h"

namespace tessera {

namespace {

// What one block keeps from its forward for its backward. Rows are the B*T positions.
struct BlockActivations {
  Tensor ln1, ln1_mean, ln1_rstd;  // (N,C), (N) f32, (N) f32
  Tensor qkv;                      // (N,3C)
  Tensor atty;                     // (N,C) attention output, before the projection
  Tensor att_stats;                // (B,NH,T) f32 logsumexp
  Tensor residual2;                // (N,C) block input + attention branch
  Tensor ln2, ln2_mean, ln2_rstd;  // (N,C), (N) f32, (N) f32
  Tensor fch;                      // (N,4C) pre-gelu
  Tensor fch_gelu;                 // (N,4C)
};

struct Activations {
  Tensor tokens, targets;                 // (B,T) i32
  std::vector<Tensor> residual;           // n_layer+1 of (N,C): [0] embeddings, [l+1] block l's output
  std::vector<BlockActivations> blocks;   // n_layer, or one slot shared by all blocks (Recompute::full)
  Tensor proj;                            // (N,C) projection outputs, consumed at once by the residual add
  Tensor lnf, lnf_mean, lnf_rstd;         // (N,C), (N) f32, (N) f32
  Tensor logits;                          // (N,Vp); dlogits in place during backward
  Tensor losses;                          // (N) f32
  // Backward scratch.
  Tensor dresidual;                       // (N,C) gradient flowing down the residual stream
  Tensor dbtc;                            // (N,C) dlnf, dln2, datty, dln1 in turn
  Tensor dwide;                           // (N,4C) dfch; its first N*3C elements hold dqkv
};

}  // namespace

struct GPT2::Impl {
  Context* ctx = nullptr;
  GPT2Config config;
  ModelOptions options;
  DType dtype = DType::f32;
  ParamTable table;
  Buffer param_storage, grad_storage;
  Tensor params_flat, grads_flat;
  model::GPT2Params p;  // parameter views
  model::GPT2Params g;  // gradient views (f32)

  model::Arena arena;
  Activations acts;
  int B = 0, T = 0;            // the shape the arena is planned for
  bool logits_valid = false;   // the last forward's logits are intact
  bool backward_ready = false; // a forward with targets has not been consumed by backward yet

  BlockActivations& slot(int layer) {
    return options.recompute == Recompute::full ? acts.blocks[0] : acts.blocks[size_t(layer)];
  }
  void plan(int B, int T);
  // Writes a block's activations into `a`; with mlp_projection, also its output into `out`.
  void block_forward(int layer, BlockActivations& a, const Tensor& in, const Tensor& out, bool mlp_projection);
  // acts.dresidual holds d(block output) on entry and d(block input) on exit.
  void block_backward(int layer, BlockActivations& a, const Tensor& in);
};

void GPT2::Impl::plan(int B_, int T_) {
  B = B_;
  T = T_;
  const int64_t N = int64_t(B) * T, C = config.n_embd, L = config.n_layer;
  const size_t slots = options.recompute == Recompute::full ? 1 : size_t(L);
  // The declared Tensors must not move before allocate(): size the vectors first.
  acts = Activations{};
  acts.residual.resize(size_t(L + 1));
  acts.blocks.resize(slots);
  arena.clear();
  auto act = [&](Tensor* t, std::string name, std::vector<int64_t> shape) {
    arena.add(t, std::move(name), std::move(shape), dtype);
  };
  auto f32 = [&](Tensor* t, std::string name, std::vector<int64_t> shape) {
    arena.add(t, std::move(name), std::move(shape), DType::f32);
  };
  arena.add(&acts.tokens, "tokens", {B, T}, DType::i32);
  arena.add(&acts.targets, "targets", {B, T}, DType::i32);
  for (int64_t l = 0; l <= L; ++l) act(&acts.residual[size_t(l)], fmt::format("residual.{}", l), {N, C});
  for (size_t s = 0; s < slots; ++s) {
    BlockActivations& a = acts.blocks[s];
    const std::string k = fmt::format("block.{}.", s);
    act(&a.ln1, k + "ln1", {N, C});
    f32(&a.ln1_mean, k + "ln1_mean", {N});
    f32(&a.ln1_rstd, k + "ln1_rstd", {N});
    act(&a.qkv, k + "qkv", {N, 3 * C});
    act(&a.atty, k + "atty", {N, C});
    f32(&a.att_stats, k + "att_stats", {B, config.n_head, T});
    act(&a.residual2, k + "residual2", {N, C});
    act(&a.ln2, k + "ln2", {N, C});
    f32(&a.ln2_mean, k + "ln2_mean", {N});
    f32(&a.ln2_rstd, k + "ln2_rstd", {N});
    act(&a.fch, k + "fch", {N, 4 * C});
    act(&a.fch_gelu, k + "fch_gelu", {N, 4 * C});
  }
  act(&acts.proj, "proj", {N, C});
  act(&acts.lnf, "lnf", {N, C});
  f32(&acts.lnf_mean, "lnf_mean", {N});
  f32(&acts.lnf_rstd, "lnf_rstd", {N});
  act(&acts.logits, "logits", {N, config.padded_vocab_size});
  f32(&acts.losses, "losses", {N});
  act(&acts.dresidual, "dresidual", {N, C});
  act(&acts.dbtc, "dbtc", {N, C});
  act(&acts.dwide, "dwide", {N, 4 * C});
  arena.allocate(*ctx);
  logits_valid = false;
  backward_ready = false;
}

void GPT2::Impl::block_forward(int layer, BlockActivations& a, const Tensor& in, const Tensor& out,
                               bool mlp_projection) {
  Context& c = *ctx;
  const model::BlockParams& w = p.blocks[size_t(layer)];
  const int64_t C = config.n_embd;
  ops::layernorm_forward(c, a.ln1, a.ln1_mean, a.ln1_rstd, in, w.ln1w, w.ln1b);
  ops::matmul_forward(c, a.qkv, Tensor(), a.ln1, w.qkvw, w.qkvb, Epilogue::none);
  ops::attention_forward(c, a.atty.reshape({B, T, C}), a.att_stats, a.qkv.reshape({B, T, 3 * C}),
                         config.n_head);
  ops::matmul_forward(c, acts.proj, Tensor(), a.atty, w.attprojw, w.attprojb, Epilogue::none);
  ops::residual_forward(c, a.residual2, in, acts.proj);
  ops::layernorm_forward(c, a.ln2, a.ln2_mean, a.ln2_rstd, a.residual2, w.ln2w, w.ln2b);
  ops::matmul_forward(c, a.fch_gelu, a.fch, a.ln2, w.fcw, w.fcb, Epilogue::gelu);
  // Backward never reads the MLP projection's output, so recomputation stops here.
  if (!mlp_projection) return;
  ops::matmul_forward(c, acts.proj, Tensor(), a.fch_gelu, w.fcprojw, w.fcprojb, Epilogue::none);
  ops::residual_forward(c, out, a.residual2, acts.proj);
}

void GPT2::Impl::block_backward(int layer, BlockActivations& a, const Tensor& in) {
  Context& c = *ctx;
  const model::BlockParams& w = p.blocks[size_t(layer)];
  const model::BlockParams& d = g.blocks[size_t(layer)];
  const int64_t C = config.n_embd, N = int64_t(B) * T;
  const Tensor& dres = acts.dresidual;  // (N,C)
  const Tensor& dfch = acts.dwide;      // (N,4C)
  const Tensor& dbtc = acts.dbtc;       // (N,C)

  // MLP branch: out = residual2 + gelu(ln2(residual2) @ fcw^T + fcb) @ fcprojw^T + fcprojb.
  // The residual add passes dres through unchanged to residual2.
  ops::matmul_backward(c, dfch, d.fcprojw, d.fcprojb, dres, a.fch_gelu, w.fcprojw);
  ops::gelu_backward(c, dfch, a.fch, dfch);
  ops::matmul_backward(c, dbtc, d.fcw, d.fcb, dfch, a.ln2, w.fcw);
  ops::layernorm_backward(c, dres, d.ln2w, d.ln2b, dbtc, a.residual2, w.ln2w, a.ln2_mean, a.ln2_rstd);

  // Attention branch: residual2 = in + attention(ln1(in) @ qkvw^T + qkvb) @ attprojw^T + attprojb.
  ops::matmul_backward(c, dbtc, d.attprojw, d.attprojb, dres, a.atty, w.attprojw);
  Tensor dqkv = dfch.flat_range(0, N * 3 * C);
  ops::attention_backward(c, dqkv.reshape({B, T, 3 * C}), dbtc.reshape({B, T, C}), a.qkv.reshape({B, T, 3 * C}),
                          a.atty.reshape({B, T, C}), a.att_stats, config.n_head);
  ops::matmul_backward(c, dbtc, d.qkvw, d.qkvb, dqkv.reshape({N, 3 * C}), a.ln1, w.qkvw);
  ops::layernorm_backward(c, dres, d.ln1w, d.ln1b, dbtc, in, w.ln1w, a.ln1_mean, a.ln1_rstd);
}

GPT2::GPT2(Context& ctx, const GPT2Config& config, const ModelOptions& options) : impl_(std::make_unique<Impl>()) {
  config.validate();
  Impl& m = *impl_;
  m.ctx = &ctx;
  m.config = config;
  m.options = options;
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
  m.table = model::gpt2_param_table(config);
  const int64_t n = m.table.flat_numel();
  m.param_storage = Buffer(ctx, size_t(n) * dtype_size(m.dtype), ctx.device());
  m.grad_storage = Buffer(ctx, size_t(n) * sizeof(float), ctx.device());
  m.params_flat = m.param_storage.view({n}, m.dtype);
  m.grads_flat = m.grad_storage.view({n}, DType::f32);
  zero_tensor(ctx, m.params_flat);
  zero_tensor(ctx, m.grads_flat);
  m.p = model::gpt2_param_views(m.table, config, m.params_flat);
  m.g = model::gpt2_param_views(m.table, config, m.grads_flat);
}

GPT2::~GPT2() = default;

const GPT2Config& GPT2::config() const { return impl_->config; }
Context& GPT2::context() const { return *impl_->ctx; }
DType GPT2::dtype() const { return impl_->dtype; }
const ModelOptions& GPT2::options() const { return impl_->options; }
const ParamTable& GPT2::params() const { return impl_->table; }
Tensor GPT2::param_buffer() const { return impl_->params_flat; }
Tensor GPT2::grad_buffer() const { return impl_->grads_flat; }

Tensor GPT2::param(size_t i) const {
  TESSERA_CHECK(i < impl_->table.size(), "parameter index out of range");
  return model::table_view(impl_->table, i, impl_->params_flat);
}

Tensor GPT2::grad(size_t i) const {
  TESSERA_CHECK(i < impl_->table.size(), "parameter index out of range");
  return model::table_view(impl_->table, i, impl_->grads_flat);
}

void GPT2::init_weights(uint64_t seed) {
  Impl& m = *impl_;
  zero_tensor(*m.ctx, m.params_flat);  // padding and padded wte rows stay zero
  const int wte = m.table.index_of("transformer.wte.weight");
  std::vector<float> values;
  for (size_t i = 0; i < m.table.size(); ++i) {
    const int64_t numel = m.table.numel(i);
    // Only the real vocabulary rows of wte are drawn, so padding never shifts the stream.
    const int64_t drawn = int(i) == wte ? int64_t(m.config.vocab_size) * m.config.n_embd : numel;
    values.assign(size_t(numel), 0.0f);
    model::initial_values(m.table[i], drawn, seed, values.data());
    model::upload_floats(*m.ctx, param(i), values.data());
  }
  m.logits_valid = false;
  m.backward_ready = false;
}

float GPT2::forward(const int32_t* tokens, const int32_t* targets, int B, int T) {
  Impl& m = *impl_;
  Context& c = *m.ctx;
  const GPT2Config& cfg = m.config;
  if (B <= 0 || T <= 0)
    throw config_error(fmt::format("GPT2::forward: batch {} x sequence {} must be positive", B, T));
  if (T > cfg.max_seq_len)
    throw config_error(fmt::format("GPT2::forward: sequence length {} exceeds the model's context of {}", T,
                                   cfg.max_seq_len),
                       fmt::format("use a sequence length of at most {}", cfg.max_seq_len));
  TESSERA_CHECK(tokens != nullptr, "GPT2::forward needs tokens");
  auto check_ids = [&](const int32_t* ids, const char* what) {
    for (int64_t i = 0; i < int64_t(B) * T; ++i) {
      if (ids[i] < 0 || ids[i] >= cfg.vocab_size)
        throw data_error(fmt::format("{} {} at (b={}, t={}) is outside the vocabulary [0, {})", what, ids[i],
                                     i / T, i % T, cfg.vocab_size),
                         "GPT2::forward", "check that the data was tokenized for this model's vocabulary");
    }
  };
  check_ids(tokens, "token");
  if (targets) check_ids(targets, "target");

  if (B != m.B || T != m.T) m.plan(B, T);
  Activations& a = m.acts;
  const int64_t N = int64_t(B) * T, C = cfg.n_embd, L = cfg.n_layer;
  copy_tensor(c, a.tokens, Tensor(const_cast<int32_t*>(tokens), {B, T}, DType::i32, Device::cpu));
  if (targets) copy_tensor(c, a.targets, Tensor(const_cast<int32_t*>(targets), {B, T}, DType::i32, Device::cpu));

  ops::embedding_forward(c, a.residual[0].reshape({B, T, C}), a.tokens, m.p.wte, m.p.wpe, 0);
  for (int l = 0; l < L; ++l) m.block_forward(l, m.slot(l), a.residual[size_t(l)], a.residual[size_t(l) + 1], true);
  ops::layernorm_forward(c, a.lnf, a.lnf_mean, a.lnf_rstd, a.residual[size_t(L)], m.p.lnfw, m.p.lnfb);
  ops::matmul_forward(c, a.logits, Tensor(), a.lnf, m.p.wte, Tensor(), Epilogue::none);  // (N,Vp)
  m.logits_valid = true;
  m.backward_ready = false;
  if (!targets) return std::numeric_limits<float>::quiet_NaN();

  // Losses only: the gradient scale is known at backward(), which runs the fused kernel again.
  ops::crossentropy_forward_backward(c, a.losses, Tensor(), a.logits, a.targets, cfg.vocab_size, 0.0f);
  std::vector<float> losses = model::download_floats(c, a.losses);
  double sum = 0.0;
  for (int64_t i = 0; i < N; ++i) sum += losses[size_t(i)];
  m.backward_ready = true;
  return float(sum / double(N));
}

void GPT2::backward(float loss_scale) {
  Impl& m = *impl_;
  Context& c = *m.ctx;
  if (!m.backward_ready)
    throw config_error("GPT2::backward without a forward pass with targets since the last backward",
                       "call forward(tokens, targets, B, T) before each backward()");
  m.backward_ready = false;
  m.logits_valid = false;  // overwritten by dlogits below
  Activations& a = m.acts;
  const int B = m.B, T = m.T;
  const int64_t C = m.config.n_embd, L = m.config.n_layer;

  // Classifier: dlogits in place of the logits, then the tied lm head.
  const float dloss = loss_scale / float(int64_t(B) * T);
  ops::crossentropy_forward_backward(c, a.losses, a.logits, a.logits, a.targets, m.config.vocab_size, dloss);
  ops::matmul_backward(c, a.dbtc, m.g.wte, Tensor(), a.logits, a.lnf, m.p.wte);
  zero_tensor(c, a.dresidual);
  ops::layernorm_backward(c, a.dresidual, m.g.lnfw, m.g.lnfb, a.dbtc, a.residual[size_t(L)], m.p.lnfw, a.lnf_mean,
                          a.lnf_rstd);

  for (int64_t l = L - 1; l >= 0; --l) {
    BlockActivations& slot = m.slot(int(l));
    // With full recomputation the shared slot still holds the last block's forward.
    if (m.options.recompute == Recompute::full && l != L - 1)
      m.block_forward(int(l), slot, a.residual[size_t(l)], Tensor(), false);
    m.block_backward(int(l), slot, a.residual[size_t(l)]);
  }
  ops::embedding_backward(c, m.g.wte, m.g.wpe, a.dresidual.reshape({B, T, C}), a.tokens, 0);
}

void GPT2::zero_grad() { zero_tensor(*impl_->ctx, impl_->grads_flat); }

void GPT2::logits_row(int b, int t, float* out) const {
  const Impl& m = *impl_;
  if (!m.logits_valid)
    throw config_error("GPT2::logits_row: no logits available (no forward yet, or backward consumed them)",
                       "call forward() and read the logits before backward()");
  if (b < 0 || b >= m.B || t < 0 || t >= m.T)
    throw config_error(fmt::format("GPT2::logits_row: position (b={}, t={}) outside the last forward's {} x {}",
                                   b, t, m.B, m.T));
  Tensor row = m.acts.logits.rows(int64_t(b) * m.T + t, 1).flat_range(0, m.config.vocab_size);
  std::vector<float> host = model::download_floats(*m.ctx, row);
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
