// Causal self-attention with grouped-query heads on the CPU: the float32 reference the CUDA kernels
// are checked against. One (batch, query head) pair per OpenMP iteration in the forward, one (batch,
// key/value head) in the backward: every output element is owned by exactly one thread and computed
// in a fixed order, so results do not depend on the thread count.
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

// Where the heads of one token live in qkv (B,T,(NH+2*NKV)*HS): query head h at q + h*HS, and its
// key/value head g = h / (NH/NKV) at k + g*HS and v + g*HS, with k = NH*HS, v = (NH+NKV)*HS.
struct HeadLayout {
  int64_t B, T, NH, NKV, HS;
  int64_t row() const { return (NH + 2 * NKV) * HS; }  // qkv elements per token
  int64_t k() const { return NH * HS; }
  int64_t v() const { return (NH + NKV) * HS; }
  int64_t group() const { return NH / NKV; }          // query heads per key/value head
};

HeadLayout layout_of(const Tensor& qkv, int n_head, int n_kv_head) {
  const int64_t parts = int64_t(n_head) + 2 * int64_t(n_kv_head);
  return {qkv.size(0), qkv.size(1), n_head, n_kv_head, qkv.size(2) / parts};
}

}  // namespace

void attention_forward(Context& ctx, Tensor out, Tensor stats, Tensor qkv, int n_head, int n_kv_head) {
  const HeadLayout L = layout_of(qkv, n_head, n_kv_head);
  const int64_t T = L.T, NH = L.NH, HS = L.HS, row = L.row(), C = NH * HS;
  const float* qkv_p = qkv.ptr<float>();  // (B,T,(NH+2*NKV)*HS)
  float* out_p = out.ptr<float>();        // (B,T,NH*HS)
  float* stats_p = stats.ptr<float>();    // (B,NH,T)
  const float scale = 1.0f / std::sqrt(float(HS));

#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < L.B; b++) {
    for (int64_t h = 0; h < NH; h++) {
      const int64_t kh = L.k() + (h / L.group()) * HS, vh = L.v() + (h / L.group()) * HS;
      std::vector<float> scores(static_cast<size_t>(T));  // scaled scores, then probabilities, of one query row
      for (int64_t t = 0; t < T; t++) {
        const float* q = qkv_p + (b * T + t) * row + h * HS;
        float maxval = -INFINITY;
        for (int64_t j = 0; j <= t; j++) {
          const float* k = qkv_p + (b * T + j) * row + kh;
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
          const float* v = qkv_p + (b * T + j) * row + vh;
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
// P is recomputed from the forward's logsumexp stats. A key/value head's gradients sum over the
// query heads of its group, in head order.
void attention_backward(Context& ctx, Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor stats,
                        int n_head, int n_kv_head) {
  const HeadLayout L = layout_of(qkv, n_head, n_kv_head);
  const int64_t T = L.T, NH = L.NH, HS = L.HS, row = L.row(), C = NH * HS;
  const float* qkv_p = qkv.ptr<float>();      // (B,T,(NH+2*NKV)*HS)
  const float* out_p = out.ptr<float>();      // (B,T,NH*HS)
  const float* dout_p = dout.ptr<float>();    // (B,T,NH*HS)
  const float* stats_p = stats.ptr<float>();  // (B,NH,T)
  float* dqkv_p = dqkv.ptr<float>();          // (B,T,(NH+2*NKV)*HS)
  const float scale = 1.0f / std::sqrt(float(HS));

#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < L.B; b++) {
    for (int64_t g = 0; g < L.NKV; g++) {
      // This (b, g) owns key/value head g and the q columns of its group's query heads in batch b.
      const int64_t first = g * L.group(), kg = L.k() + g * HS, vg = L.v() + g * HS;
      for (int64_t t = 0; t < T; t++) {
        float* r = dqkv_p + (b * T + t) * row;
        for (int64_t i = 0; i < L.group() * HS; i++) r[first * HS + i] = 0.0f;
        for (int64_t i = 0; i < HS; i++) r[kg + i] = r[vg + i] = 0.0f;
      }
      for (int64_t h = first; h < first + L.group(); h++) {
        for (int64_t t = 0; t < T; t++) {
          const float* q = qkv_p + (b * T + t) * row + h * HS;
          const float* o = out_p + (b * T + t) * C + h * HS;
          const float* dO = dout_p + (b * T + t) * C + h * HS;
          float* dq = dqkv_p + (b * T + t) * row + h * HS;
          const float lse = stats_p[(b * NH + h) * T + t];
          const float D = dot(dO, o, HS);
          for (int64_t j = 0; j <= t; j++) {
            const float* k = qkv_p + (b * T + j) * row + kg;
            const float* v = qkv_p + (b * T + j) * row + vg;
            float* dk = dqkv_p + (b * T + j) * row + kg;
            float* dv = dqkv_p + (b * T + j) * row + vg;
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
}

}  // namespace tessera::cpu
