// The decoder's pieces, forward and backward: embedding, norm, attention block, MLP block, head.
// Each piece is the same for every family; the configuration picks the norm (LayerNorm, RMSNorm),
// the positions (learned, rotary), the MLP (GELU, SwiGLU), biases and the output layer (tied or
// not). Tensor parallelism enters only through the paired operations of tp_ (identities on one
// rank); N rows are all B*T positions, Nr the residual stream's rows on this rank.
#include <limits>
#include <vector>

#include "kernels/ops.h"
#include "model/decoder.h"

namespace tessera::model {

void Decoder::embedding_forward(Microbatch& m, const Tensor& out) {
  parallel::vocab_parallel_embedding_forward(*ctx_, tp_, vocab_, out, scratch_.proj, m.tokens, p_.token_embedding,
                                             p_.position_embedding);
}

void Decoder::embedding_backward(Microbatch& m, const Tensor& dres) {
  parallel::vocab_parallel_embedding_backward(*ctx_, tp_, vocab_, g_.token_embedding, g_.position_embedding, dres,
                                              scratch_.gathered, m.tokens);
}

void Decoder::norm_forward(NormActs& a, const Tensor& in, const NormParams& w) {
  // Under sequence parallelism the norm runs on this rank's rows and the column-parallel linear
  // after it gathers every row; otherwise it writes every row in place.
  const Tensor rows = tp_.sequence_parallel() ? scratch_.shard : a.out;
  switch (config_.norm) {
    case NormKind::layernorm: ops::layernorm_forward(*ctx_, rows, a.mean, a.rstd, in, w.weight, w.bias); break;
    case NormKind::rmsnorm: ops::rmsnorm_forward(*ctx_, rows, a.rstd, in, w.weight, config_.norm_eps); break;
  }
  tp_.column_input_forward(rows, a.out);
}

void Decoder::residual_norm_forward(NormActs& a, const Tensor& residual, const Tensor& x, const Tensor& y,
                                    const NormParams& w) {
  // Under sequence parallelism y is this rank's rows of the reduced projection, in the buffer the
  // norm's rows go to: the fused op reads each row before it writes it.
  const Tensor rows = tp_.sequence_parallel() ? scratch_.shard : a.out;
  switch (config_.norm) {
    case NormKind::layernorm:
      ops::residual_layernorm_forward(*ctx_, residual, rows, a.mean, a.rstd, x, y, w.weight, w.bias);
      break;
    case NormKind::rmsnorm:
      ops::residual_rmsnorm_forward(*ctx_, residual, rows, a.rstd, x, y, w.weight, config_.norm_eps);
      break;
  }
  tp_.column_input_forward(rows, a.out);
}

void Decoder::norm_backward(const Tensor& dres, const NormParams& dw, const Tensor& dout_partial, const Tensor& in,
                            const NormParams& w, const NormActs& a) {
  const Tensor dout = tp_.column_input_backward(dout_partial, scratch_.shard);
  switch (config_.norm) {
    case NormKind::layernorm:
      ops::layernorm_backward(*ctx_, dres, dw.weight, dw.bias, dout, in, w.weight, a.mean, a.rstd);
      break;
    case NormKind::rmsnorm: ops::rmsnorm_backward(*ctx_, dres, dw.weight, dout, in, w.weight, a.rstd); break;
  }
}

void Decoder::attention_forward(int layer, BlockActs& a, const Tensor& in) {
  Context& c = *ctx_;
  const BlockParams& w = p_.blocks[size_t(layer)];
  norm_forward(a.norm1, in, w.norm1);
  ops::matmul_forward(c, a.qkv, Tensor(), a.norm1.out, w.qkv.weight, w.qkv.bias, Epilogue::none);
  // Rotary positions rotate q and k in place: attention and its backward see the rotated heads.
  if (config_.position == PositionKind::rope)
    ops::rope_forward(c, a.qkv.reshape({B_, T_, QKVl_}), a.qkv.reshape({B_, T_, QKVl_}), NHl_, NKVl_, rope_, 0);
  ops::attention_forward(c, a.att.reshape({B_, T_, Ql_}), a.att_stats, a.qkv.reshape({B_, T_, QKVl_}), NHl_, NKVl_);
  // Row-parallel: partial sums of every row, reduced over tp into this rank's rows.
  ops::matmul_forward(c, scratch_.proj, Tensor(), a.att, w.attn_out.weight,
                      tp_.adds_replicated_bias() ? w.attn_out.bias : Tensor(), Epilogue::none);
  // residual2 = in + projection, and the MLP's norm of it, in one pass.
  residual_norm_forward(a.norm2, a.residual2, in, tp_.row_output_forward(scratch_.proj, scratch_.shard), w.norm2);
}

void Decoder::mlp_forward(int layer, BlockActs& a, const Tensor& out) {
  Context& c = *ctx_;
  const BlockParams& w = p_.blocks[size_t(layer)];
  // a.norm2 holds the norm of residual2 (attention_forward computed both).
  switch (config_.mlp) {
    case MlpKind::gelu:
      ops::matmul_forward(c, a.mlp_act, a.mlp_pre, a.norm2.out, w.mlp_in.weight, w.mlp_in.bias, Epilogue::gelu);
      break;
    case MlpKind::swiglu:  // one column-parallel matmul for gate | up
      ops::matmul_forward(c, a.mlp_pre, Tensor(), a.norm2.out, w.mlp_in.weight, w.mlp_in.bias, Epilogue::none);
      ops::swiglu_forward(c, a.mlp_act, a.mlp_pre);
      break;
  }
  // Backward never reads the MLP projection's output, so recomputation stops here.
  if (out.empty()) return;
  ops::matmul_forward(c, scratch_.proj, Tensor(), a.mlp_act, w.mlp_out.weight,
                      tp_.adds_replicated_bias() ? w.mlp_out.bias : Tensor(), Epilogue::none);
  ops::residual_forward(c, out, a.residual2, tp_.row_output_forward(scratch_.proj, scratch_.shard));
}

void Decoder::block_forward(int layer, BlockActs& a, const Tensor& in, const Tensor& out, bool mlp_projection) {
  attention_forward(layer, a, in);
  mlp_forward(layer, a, mlp_projection ? out : Tensor());
}

void Decoder::mlp_backward(int layer, BlockActs& a, const Tensor& dres) {
  Context& c = *ctx_;
  const BlockParams& w = p_.blocks[size_t(layer)];
  const BlockParams& d = g_.blocks[size_t(layer)];
  // out = residual2 + act(norm2(residual2) @ mlp_in^T) @ mlp_out^T: the residual add passes dres
  // through unchanged to residual2. Bias gradients come from every row of dres, so they are
  // complete (and equal) on every tp rank.
  const Tensor dres_all = tp_.row_output_backward(dres, scratch_.gathered);
  const Tensor dpre = scratch_.dwide.flat_range(0, N_ * mlp_pre_width_).reshape({N_, mlp_pre_width_});
  switch (config_.mlp) {
    case MlpKind::gelu:
      ops::matmul_backward(c, dpre, d.mlp_out.weight, d.mlp_out.bias, dres_all, a.mlp_act, w.mlp_out.weight);
      ops::gelu_backward(c, dpre, a.mlp_pre, dpre);
      break;
    case MlpKind::swiglu:
      ops::matmul_backward(c, scratch_.dact, d.mlp_out.weight, d.mlp_out.bias, dres_all, a.mlp_act, w.mlp_out.weight);
      ops::swiglu_backward(c, dpre, scratch_.dact, a.mlp_pre);
      break;
  }
  ops::matmul_backward(c, scratch_.dbtc, d.mlp_in.weight, d.mlp_in.bias, dpre, a.norm2.out, w.mlp_in.weight);
  norm_backward(dres, d.norm2, scratch_.dbtc, a.residual2, w.norm2, a.norm2);
}

void Decoder::attention_backward(int layer, BlockActs& a, const Tensor& in, const Tensor& dres) {
  Context& c = *ctx_;
  const BlockParams& w = p_.blocks[size_t(layer)];
  const BlockParams& d = g_.blocks[size_t(layer)];
  // residual2 = in + attention(norm1(in) @ qkv^T) @ attn_out^T.
  const Tensor dres_all = tp_.row_output_backward(dres, scratch_.gathered);
  const Tensor datt = scratch_.dbtc.flat_range(0, N_ * Ql_).reshape({N_, Ql_});
  ops::matmul_backward(c, datt, d.attn_out.weight, d.attn_out.bias, dres_all, a.att, w.attn_out.weight);
  const Tensor dqkv = scratch_.dwide.flat_range(0, N_ * QKVl_);
  ops::attention_backward(c, dqkv.reshape({B_, T_, QKVl_}), datt.reshape({B_, T_, Ql_}), a.qkv.reshape({B_, T_, QKVl_}),
                          a.att.reshape({B_, T_, Ql_}), a.att_stats, NHl_, NKVl_);
  if (config_.position == PositionKind::rope)  // d(q|k before the rotation): the rotation's transpose
    ops::rope_backward(c, dqkv.reshape({B_, T_, QKVl_}), dqkv.reshape({B_, T_, QKVl_}), NHl_, NKVl_, rope_, 0);
  ops::matmul_backward(c, scratch_.dbtc, d.qkv.weight, d.qkv.bias, dqkv.reshape({N_, QKVl_}), a.norm1.out, w.qkv.weight);
  norm_backward(dres, d.norm1, scratch_.dbtc, in, w.norm1, a.norm1);
}

void Decoder::block_backward(int layer, BlockActs& a, const Tensor& in, const Tensor& dres) {
  mlp_backward(layer, a, dres);
  attention_backward(layer, a, in, dres);
}

void Decoder::head_forward(Microbatch& m, HeadActs& h, const Tensor& x) {
  Context& c = *ctx_;
  norm_forward(h.norm, x, p_.final_norm);
  // The output layer: column-parallel over the vocabulary, (N, Vl).
  ops::matmul_forward(c, h.logits, Tensor(), h.norm.out, p_.output, Tensor(), Epilogue::none);
  m.logits_valid = true;
  m.backward_ready = false;
  m.loss = std::numeric_limits<float>::quiet_NaN();
  if (!m.has_targets) return;
  // Losses only: the gradient scale is known at backward, which computes dlogits then.
  parallel::vocab_parallel_cross_entropy_forward(c, tp_, vocab_, config_.vocab_size, h.losses, h.logits,
                                                 m.targets.reshape({N_}), h.ce_stats);
  host_losses_.resize(size_t(N_));  // no allocation after the first step
  copy_tensor(c, Tensor(host_losses_.data(), {N_}, DType::f32, Device::cpu), h.losses);
  double sum = 0.0;
  for (int64_t i = 0; i < N_; ++i) sum += host_losses_[size_t(i)];
  m.loss = float(sum / double(N_));
  m.backward_ready = true;
}

void Decoder::head_backward(Microbatch& m, HeadActs& h, const Tensor& x, const Tensor& dres, float loss_scale) {
  Context& c = *ctx_;
  m.backward_ready = false;
  m.logits_valid = false;  // overwritten by dlogits below
  parallel::vocab_parallel_cross_entropy_backward(c, tp_, vocab_, config_.vocab_size, h.logits, h.losses, h.logits,
                                                  m.targets.reshape({N_}), h.ce_stats, loss_scale / float(N_));
  // d(final norm output) is a partial sum over the vocabulary shards.
  ops::matmul_backward(c, scratch_.dbtc, g_.output, Tensor(), h.logits, h.norm.out, p_.output);
  zero_tensor(c, dres);
  norm_backward(dres, g_.final_norm, scratch_.dbtc, x, p_.final_norm, h.norm);
}

}  // namespace tessera::model
