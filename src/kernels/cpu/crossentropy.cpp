// Fused softmax + cross-entropy on the CPU. One row per OpenMP iteration: the row's max, then its
// sum of exponentials (softmax_rows.h, vectorised), then the gradient, which reads each element
// just before writing it (the target's logit is read first), so dlogits may alias logits.
#include <cmath>

#include "kernels/cpu/cpu_math.h"
#include "kernels/cpu/softmax_rows.h"
#include "kernels/ops.h"

namespace tessera::cpu {

void crossentropy_forward_backward(Context& ctx, Tensor losses, Tensor dlogits, Tensor logits, Tensor targets,
                                   int vocab_size, float dloss) {
  const int64_t N = logits.size(0), Vp = logits.size(1), V = vocab_size;
  const float* logits_p = logits.ptr<float>();  // (N,Vp)
  const int32_t* targets_p = targets.ptr<int32_t>();  // (N)
  float* losses_p = losses.ptr<float>();  // (N)
  float* dlogits_p = dlogits.empty() ? nullptr : dlogits.ptr<float>();  // (N,Vp)

#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t n = 0; n < N; n++) {
    const float* x = logits_p + n * Vp;
    const float maxval = softmax_row_max(x, V);
    const double sum = softmax_row_sum_exp(x, V, maxval);
    const int64_t target = targets_p[n];
    const float target_logit = x[target];
    const float lse = float(double(maxval) + std::log(sum));
    losses_p[n] = lse - target_logit;
    if (!dlogits_p) continue;
    float* dx = dlogits_p + n * Vp;
    softmax_row_scaled(dx, x, V, lse, dloss);
    dx[target] = (exp_approx(target_logit - lse) - 1.0f) * dloss;
    for (int64_t i = V; i < Vp; i++) dx[i] = 0.0f;
  }
}

}  // namespace tessera::cpu
