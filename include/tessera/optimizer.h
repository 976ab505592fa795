// AdamW over the flat parameter buffer (one update per parameter of the table, so weight decay
// follows ParamSpec::weight_decay), global-norm gradient clipping, and the learning-rate schedule.
#pragma once

#include <cstdint>

#include "tessera/buffer.h"
#include "tessera/context.h"
#include "tessera/param_table.h"
#include "tessera/tensor.h"

namespace tessera {

struct AdamWConfig {
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  float weight_decay = 0.1f;  // only on parameters whose ParamSpec::weight_decay is true
  float grad_clip = 1.0f;     // clip the global gradient norm to this; <= 0: no clipping
};

class AdamW {
 public:
  // params: the flat parameter buffer (f32 or bf16), grads: the flat f32 gradient buffer, both laid
  // out by `table`. Allocates fp32 m and v (zero) and, for bf16 params, an fp32 master copy
  // initialised from params. The tensors must outlive the optimizer.
  AdamW(Context& ctx, const ParamTable& table, Tensor params, Tensor grads, const AdamWConfig& config);
  AdamW(const AdamW&) = delete;
  AdamW& operator=(const AdamW&) = delete;

  // Over the whole flat gradient buffer (padding is zero), via ops::sum_of_squares.
  double grad_norm_squared() const;
  // norm = sqrt(grad_norm_squared()); the gradient is scaled by grad_clip/norm when clipping is on
  // and norm > grad_clip; then every parameter is updated. Returns the norm before clipping.
  float step(float lr);
  // The same with a global norm computed elsewhere (e.g. across ranks).
  float step(float lr, double global_grad_norm);

  int64_t step_count() const { return step_count_; }  // the next update uses step_count() + 1
  void set_step_count(int64_t n);

  const AdamWConfig& config() const { return config_; }
  Tensor master() const;  // empty when params are f32
  Tensor m() const;
  Tensor v() const;
  size_t state_bytes() const;  // m, v and master

 private:
  Context* ctx_;
  const ParamTable* table_;
  Tensor params_, grads_;
  AdamWConfig config_;
  Buffer m_buf_, v_buf_, master_buf_;
  int64_t step_count_ = 0;
};

// Linear warm-up to max_lr over warmup_steps (step s gets max_lr * (s+1) / warmup_steps, as
// llm.c), then cosine decay from max_lr to min_lr, reaching min_lr at total_steps; constant after.
struct LRSchedule {
  float max_lr = 6e-4f, min_lr = 6e-5f;
  int warmup_steps = 0;
  int total_steps = 1;
  float at(int step) const;  // step is 0-based
};

}  // namespace tessera
