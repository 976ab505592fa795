// Causal multi-head self-attention on the CPU: the float32 reference the CUDA kernels are checked
// against. One (batch, head) pair per OpenMP iteration: every output element is owned by exactly
// one thread and computed in a fixed order, so results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/ops.h"

namespace tessera::cpu {

namespace {

float dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

}  // namespace

void attention_forward(Context& ctx, Tensor out, Tensor stats, Tensor qkv, int n_head) {
  const int64_t B = qkv.size(0), T = qkv.size(1), C = qkv.size(2) / 3, NH = n_head, HS = C / NH;
  const float* qkv_p = qkv.ptr<float>();  // (B,T,3C)
  float* out_p = out.ptr<float>();        // (B,T,C)
  float* stats_p = stats.ptr<float>();    // (B,NH,T)
  const float scale = 1.0f / std::sqrt(float(HS));
  const int64_t C3 = 3 * C;

#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; b++) {
    for (int64_t h = 0; h < NH; h++) {
      std::vector<float> scores(static_cast<size_t>(T));  // scaled scores, then probabilities, of one query row
      for (int64_t t = 0; t < T; t++) {
        const float* q = qkv_p + (b * T + t) * C3 + h * HS;
        float maxval = -INFINITY;
        for (int64_t j = 0; j <= t; j++) {
          const float* k = qkv_p + (b * T + j) * C3 + C + h * HS;
          scores[j] = dot(q, k, HS) * scale;
          maxval = std::max(maxval, scores[j]);
        }
        float sum = 0.0f;
        for (int64_t j = 0; j <= t; j++) {
          scores[j] = std::exp(scores[j] - maxval);
          sum += scores[j];
        }
        const float inv_sum = 1.0f / sum;
        float* o = out_p + (b * T + t) * C + h * HS;
        for (int64_t i = 0; i < HS; i++) o[i] = 0.0f;
        for (int64_t j = 0; j <= t; j++) {
          const float p = scores[j] * inv_sum;
          const float* v = qkv_p + (b * T + j) * C3 + 2 * C + h * HS;
          for (int64_t i = 0; i < HS; i++) o[i] += p * v[i];
        }
        stats_p[(b * NH + h) * T + t] = maxval + std::log(sum);
      }
    }
  }
}

// With P = softmax(S), S = scale * Q K^T (causal), O = P V and D_t = dO_t . O_t:
//   dV_j = sum_t P_tj dO_t,  dS_tj = P_tj (dO_t . V_j - D_t),
//   dQ_t = scale sum_j dS_tj K_j,  dK_j = scale sum_t dS_tj Q_t.
// P is recomputed from the forward's logsumexp stats.
void attention_backward(Context& ctx, Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor stats,
                        int n_head) {
  const int64_t B = qkv.size(0), T = qkv.size(1), C = qkv.size(2) / 3, NH = n_head, HS = C / NH;
  const float* qkv_p = qkv.ptr<float>();    // (B,T,3C)
  const float* out_p = out.ptr<float>();    // (B,T,C)
  const float* dout_p = dout.ptr<float>();  // (B,T,C)
  const float* stats_p = stats.ptr<float>();  // (B,NH,T)
  float* dqkv_p = dqkv.ptr<float>();        // (B,T,3C)
  const float scale = 1.0f / std::sqrt(float(HS));
  const int64_t C3 = 3 * C;

#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; b++) {
    for (int64_t h = 0; h < NH; h++) {
      // This (b, h) owns the q, k and v columns of head h in batch b of dqkv.
      for (int64_t t = 0; t < T; t++) {
        float* row = dqkv_p + (b * T + t) * C3 + h * HS;
        for (int64_t i = 0; i < HS; i++) row[i] = row[C + i] = row[2 * C + i] = 0.0f;
      }
      for (int64_t t = 0; t < T; t++) {
        const float* q = qkv_p + (b * T + t) * C3 + h * HS;
        const float* o = out_p + (b * T + t) * C + h * HS;
        const float* dO = dout_p + (b * T + t) * C + h * HS;
        float* dq = dqkv_p + (b * T + t) * C3 + h * HS;
        const float lse = stats_p[(b * NH + h) * T + t];
        const float D = dot(dO, o, HS);
        for (int64_t j = 0; j <= t; j++) {
          const float* k = qkv_p + (b * T + j) * C3 + C + h * HS;
          const float* v = qkv_p + (b * T + j) * C3 + 2 * C + h * HS;
          float* dk = dqkv_p + (b * T + j) * C3 + C + h * HS;
          float* dv = dqkv_p + (b * T + j) * C3 + 2 * C + h * HS;
          const float p = std::exp(dot(q, k, HS) * scale - lse);
          const float ds = p * (dot(dO, v, HS) - D) * scale;
          for (int64_t i = 0; i < HS; i++) {
            dv[i] += p * dO[i];
            dq[i] += ds * k[i];
            dk[i] += ds * q[i];
          }
        }
      }
    }
  }
}

}  // namespace tessera::cpu
