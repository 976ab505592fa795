// AdamW over the flat parameter buffer, one kernel call per parameter of the table.
#include <fmt/format.h>

#include <cmath>

#include "kernels/ops.h"
#include "optim/adamw_step.h"
#include "tessera/error.h"
#include "tessera/optimizer.h"

namespace tessera {

namespace detail {

void check_adamw_setup(const char* who, const ParamTable& table, const Tensor& params, const Tensor& grads,
                       const AdamWConfig& config) {
  const int64_t n = table.flat_numel();
  if (params.numel() != n || grads.numel() != n)
    throw config_error(fmt::format("{}: parameter buffer {} and gradient buffer {} must both hold the "
                                   "table's {} elements",
                                   who, params.shape_str(), grads.shape_str(), n));
  if (grads.dtype != DType::f32)
    throw config_error(fmt::format("{}: gradients must be float32, got {}", who, grads.shape_str()));
  if (params.dtype != DType::f32 && params.dtype != DType::bf16)
    throw config_error(fmt::format("{}: parameters must be f32 or bf16, got {}", who, params.shape_str()));
  if (!(config.beta1 >= 0 && config.beta1 < 1) || !(config.beta2 >= 0 && config.beta2 < 1) || !(config.eps > 0))
    throw config_error(fmt::format("{}: need 0 <= beta1, beta2 < 1 and eps > 0 (got {}, {}, {})", who, config.beta1,
                                   config.beta2, config.eps));
}

AdamWParams adamw_step_params(const AdamWConfig& config, float lr, int64_t step_count, double global_grad_norm) {
  const double norm = global_grad_norm;
  const bool clip = config.grad_clip > 0 && norm > double(config.grad_clip);
  AdamWParams hp;
  hp.lr = lr;
  hp.beta1 = config.beta1;
  hp.beta2 = config.beta2;
  hp.eps = config.eps;
  hp.step = int(step_count + 1);
  hp.grad_scale = clip ? float(double(config.grad_clip) / norm) : 1.0f;
  hp.weight_decay = 0.0f;
  return hp;
}

}  // namespace detail

AdamW::AdamW(Context& ctx, const ParamTable& table, Tensor params, Tensor grads, const AdamWConfig& config)
    : ctx_(&ctx), table_(&table), params_(params), grads_(grads), config_(config) {
  detail::check_adamw_setup("AdamW", table, params, grads, config);
  const int64_t n = table.flat_numel();
  m_buf_ = Buffer(ctx, size_t(n) * sizeof(float), params.device);
  v_buf_ = Buffer(ctx, size_t(n) * sizeof(float), params.device);
  zero_tensor(ctx, m());
  zero_tensor(ctx, v());
  if (params.dtype == DType::bf16) {
    master_buf_ = Buffer(ctx, size_t(n) * sizeof(float), params.device);
    ops::convert(ctx, master(), params);
  }
}

Tensor AdamW::master() const {
  if (!master_buf_.data()) return Tensor();
  return master_buf_.view({table_->flat_numel()}, DType::f32);
}
Tensor AdamW::m() const { return m_buf_.view({table_->flat_numel()}, DType::f32); }
Tensor AdamW::v() const { return v_buf_.view({table_->flat_numel()}, DType::f32); }

size_t AdamW::state_bytes() const { return m_buf_.bytes() + v_buf_.bytes() + master_buf_.bytes(); }

void AdamW::set_step_count(int64_t n) {
  if (n < 0) throw config_error("AdamW: step count must not be negative");
  step_count_ = n;
}

double AdamW::grad_norm_squared() const { return ops::sum_of_squares(*ctx_, grads_); }

float AdamW::step(float lr) { return step(lr, std::sqrt(grad_norm_squared())); }

float AdamW::step(float lr, double global_grad_norm) {
  AdamWParams hp = detail::adamw_step_params(config_, lr, step_count_, global_grad_norm);
  Tensor master_flat = master();
  for (size_t i = 0; i < table_->size(); ++i) {
    const int64_t offset = table_->offset(i), count = table_->numel(i);
    hp.weight_decay = detail::adamw_weight_decay(config_, (*table_)[i]);
    ops::adamw_update(*ctx_, params_.flat_range(offset, count),
                      master_flat.empty() ? Tensor() : master_flat.flat_range(offset, count),
                      m().flat_range(offset, count), v().flat_range(offset, count),
                      grads_.flat_range(offset, count), hp);
  }
  ++step_count_;
  return float(global_grad_norm);
}

}  // namespace tessera
