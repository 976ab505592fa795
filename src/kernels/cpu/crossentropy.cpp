// Fused softmax + cross-entropy on the CPU. One row per OpenMP iteration; each row is read once
// into an online (max, sum) reduction before any element of it is written, so dlogits may alias
// logits.
#include <cmath>

#include "kernels/ops.h"

namespace tessera::cpu {

void crossentropy_forward_backward(Context& ctx, Tensor losses, Tensor dlogits, Tensor logits, Tensor targets,
                                   int vocab_size, float dloss) {
  const int64_t N = logits.size(0), Vp = logits.size(1), V = vocab_size;
  const float* logits_p = logits.ptr<float>();  // (N,Vp)
  const int32_t* targets_p = targets.ptr<int32_t>();  // (N)
  float* losses_p = losses.ptr<float>();  // (N)
  float* dlogits_p = dlogits.empty() ? nullptr : dlogits.ptr<float>();  // (N,Vp)

#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    const float* x = logits_p + n * Vp;
    // Online softmax: rescale the running sum whenever the running max grows. The sum runs over
    // up to ~50k terms in sequence, so it is kept in double (float would lose ~1e-5 relative).
    float maxval = -INFINITY;
    double sum = 0.0;
    for (int64_t i = 0; i < V; i++) {
      if (x[i] > maxval) {
        sum = sum * std::exp(double(maxval) - double(x[i])) + 1.0;
        maxval = x[i];
      } else {
        sum += double(std::exp(x[i] - maxval));
      }
    }
    const int64_t target = targets_p[n];
    const float lse = float(double(maxval) + std::log(sum));
    losses_p[n] = lse - x[target];
    if (!dlogits_p) continue;
    float* dx = dlogits_p + n * Vp;
    for (int64_t i = 0; i < V; i++) {
      const float p = std::exp(x[i] - lse);
      dx[i] = (p - (i == target ? 1.0f : 0.0f)) * dloss;
    }
    for (int64_t i = V; i < Vp; i++) dx[i] = 0.0f;
  }
}

}  // namespace tessera::cpu
