// Vocabulary-parallel cross-entropy on the CPU: the per-rank steps between which the model
// all-reduces (max, then sums). One row per OpenMP iteration and one thread per row, so results do
// not depend on the thread count; the row loops are softmax_rows.h's vectorised ones. The backward
// reads each element just before writing it (the target's logit first), so dlogits may alias logits.
#include <cmath>

#include "kernels/cpu/cpu_math.h"
#include "kernels/cpu/softmax_rows.h"
#include "kernels/ops.h"

namespace tessera::cpu {

namespace {

// Whether global target column `target` falls in this rank's real columns; its local index if so.
inline bool local_target(int32_t target, int vocab_start, int valid, int64_t* local) {
  *local = int64_t(target) - vocab_start;
  return *local >= 0 && *local < valid;
}

}  // namespace

void crossentropy_vp_max(Context& ctx, Tensor row_max, Tensor logits, int valid) {
  const int64_t N = logits.size(0), Vl = logits.size(1);
  const float* logits_p = logits.ptr<float>();  // (N,Vl)
  float* row_max_p = row_max.ptr<float>();      // (N)

#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t n = 0; n < N; n++) {
    row_max_p[n] = softmax_row_max(logits_p + n * Vl, valid);
  }
}

void crossentropy_vp_sums(Context& ctx, Tensor sum_exp, Tensor target_logit, Tensor logits, Tensor row_max,
                          Tensor targets, int vocab_start, int valid) {
  const int64_t N = logits.size(0), Vl = logits.size(1);
  const float* logits_p = logits.ptr<float>();         // (N,Vl)
  const float* row_max_p = row_max.ptr<float>();       // (N)
  const int32_t* targets_p = targets.ptr<int32_t>();   // (N)
  float* sum_exp_p = sum_exp.ptr<float>();             // (N)
  float* target_logit_p = target_logit.ptr<float>();   // (N)

#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t n = 0; n < N; n++) {
    const float* x = logits_p + n * Vl;
    const float maxval = row_max_p[n];
    sum_exp_p[n] = float(softmax_row_sum_exp(x, valid, maxval));
    int64_t t;
    target_logit_p[n] = local_target(targets_p[n], vocab_start, valid, &t) ? x[t] : 0.0f;
  }
}

void crossentropy_vp_loss(Context& ctx, Tensor losses, Tensor sum_exp, Tensor target_logit, Tensor row_max) {
  const int64_t N = losses.size(0);
  const float* sum_exp_p = sum_exp.ptr<float>();            // (N)
  const float* target_logit_p = target_logit.ptr<float>();  // (N)
  const float* row_max_p = row_max.ptr<float>();            // (N)
  float* losses_p = losses.ptr<float>();                    // (N)

#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t n = 0; n < N; n++)
    losses_p[n] = float(std::log(double(sum_exp_p[n])) + double(row_max_p[n]) - double(target_logit_p[n]));
}

void crossentropy_vp_backward(Context& ctx, Tensor dlogits, Tensor logits, Tensor row_max, Tensor sum_exp,
                              Tensor targets, int vocab_start, int valid, float dloss) {
  const int64_t N = logits.size(0), Vl = logits.size(1);
  const float* logits_p = logits.ptr<float>();        // (N,Vl)
  const float* row_max_p = row_max.ptr<float>();      // (N)
  const float* sum_exp_p = sum_exp.ptr<float>();      // (N)
  const int32_t* targets_p = targets.ptr<int32_t>();  // (N)
  float* dlogits_p = dlogits.ptr<float>();            // (N,Vl)

#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t n = 0; n < N; n++) {
    const float* x = logits_p + n * Vl;
    float* dx = dlogits_p + n * Vl;
    // exp(x - max) / sum as one exp of x - logsumexp, the same form as the fused kernel, so one
    // rank reproduces crossentropy_forward_backward closely.
    const float lse = float(double(row_max_p[n]) + std::log(double(sum_exp_p[n])));
    int64_t target;
    const bool here = local_target(targets_p[n], vocab_start, valid, &target);
    const float target_logit = here ? x[target] : 0.0f;
    softmax_row_scaled(dx, x, valid, lse, dloss);
    if (here) dx[target] = (exp_approx(target_logit - lse) - 1.0f) * dloss;
    for (int64_t i = valid; i < Vl; i++) dx[i] = 0.0f;
  }
}

}  // namespace tessera::cpu
