// Flash attention on the CPU. Per (batch, query head) in the forward and per (batch, key/value
// head) in the backward, the sequence is cut into blocks of kBlock queries and kBlock keys; each
// pair of blocks is a few small matrix products on tiles held in L1 (tile_gemm.h), and the
// softmax is taken online across key blocks (running max and sum per query row), so no T x T
// matrix is ever formed. Above the diagonal nothing is computed; the diagonal block is masked.
//
// Every output element is owned by one thread and accumulated in a fixed order, so results are
// bitwise reproducible and independent of the thread count. They differ from the plain reference
// (attention.cpp) within float rounding: the softmax is rescaled block by block.
#include "kernels/cpu/flash_attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/cpu_math.h"
#include "kernels/cpu/tile_gemm.h"

namespace tessera::cpu {

namespace {

constexpr int64_t kBlock = 32;  // queries and keys per tile: the diagonal wastes little at T = 64..1024
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// qkv (B,T,(NH+2*NKV)*HS): query head h at column h*HS of a token's row, key head g at k_col(g),
// value head g at v_col(g); query head h reads key/value head h / group().
struct Heads {
  int64_t B, T, NH, NKV, HS;
  int64_t row() const { return (NH + 2 * NKV) * HS; }
  int64_t C() const { return NH * HS; }  // out and dout channels
  int64_t group() const { return NH / NKV; }
  int64_t q_col(int64_t h) const { return h * HS; }
  int64_t k_col(int64_t g) const { return (NH + g) * HS; }
  int64_t v_col(int64_t g) const { return (NH + NKV + g) * HS; }
};

Heads heads_of(const Tensor& qkv, int n_head, int n_kv_head) {
  return {qkv.size(0), qkv.size(1), n_head, n_kv_head, qkv.size(2) / (int64_t(n_head) + 2 * n_kv_head)};
}

// dst (HS x kBlock) = the transpose of n rows of HS floats, `stride` apart.
void gather_transposed(float* dst, const float* src, int64_t stride, int64_t n, int64_t HS) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t d = 0; d < HS; ++d) dst[d * kBlock + j] = src[j * stride + d];
}

// Scores of one (query block, key block) tile, in place: s = q.k * scale for keys a row may see
// (all n_keys of them, or up to its own position on the diagonal block), -inf elsewhere, over the
// whole kBlock width, so that the loops below have a fixed trip count and vectorise.
inline void mask_scores(float* s_row, int64_t visible, float scale) {
  for (int64_t c = 0; c < kBlock; ++c) s_row[c] = c < visible ? s_row[c] * scale : kNegInf;
}

// The online softmax of one tile of scores s (rows x kBlock): per row, the running max m and sum
// l move to the new max, o (rows x HS) is rescaled to it, and s becomes the probabilities
// exp(s - m) (0 where masked) that multiply the value tile next.
TESSERA_CPU_CLONES void online_softmax(float* s, float* m, float* l, float* o, int64_t rows, int64_t n_keys,
                                       bool diagonal, float scale, int64_t HS) {
  for (int64_t r = 0; r < rows; ++r) {
    float* s_row = s + r * kBlock;
    mask_scores(s_row, diagonal ? r + 1 : n_keys, scale);
    float lane_max[8];
    for (int i = 0; i < 8; ++i) lane_max[i] = kNegInf;
    for (int64_t c = 0; c < kBlock; c += 8)
      for (int i = 0; i < 8; ++i) lane_max[i] = s_row[c + i] > lane_max[i] ? s_row[c + i] : lane_max[i];
    float block_max = lane_max[0];
    for (int i = 1; i < 8; ++i) block_max = lane_max[i] > block_max ? lane_max[i] : block_max;
    const float new_max = m[r] > block_max ? m[r] : block_max;  // finite: every row sees a key
    const float correction = exp_approx(m[r] - new_max);        // 0 on the first block (m = -inf)
    float lane_sum[8] = {};
    for (int64_t c = 0; c < kBlock; c += 8)
      for (int i = 0; i < 8; ++i) {
        const float p = exp_approx(s_row[c + i] - new_max);
        s_row[c + i] = p;
        lane_sum[i] += p;
      }
    float block_sum = 0.0f;
    for (int i = 0; i < 8; ++i) block_sum += lane_sum[i];
    l[r] = l[r] * correction + block_sum;
    m[r] = new_max;
    float* o_row = o + r * HS;
    for (int64_t d = 0; d < HS; ++d) o_row[d] *= correction;
  }
}

// Probabilities of one tile from the forward's logsumexp: p = exp(s*scale - lse), 0 where masked;
// then, with dp = dO.v, the score gradients ds = p (dp - D) * scale in place of dp.
TESSERA_CPU_CLONES void softmax_backward_tile(float* p, float* dp, const float* lse, const float* D, int64_t rows,
                                              int64_t n_keys, bool diagonal, float scale) {
  for (int64_t r = 0; r < rows; ++r) {
    float* p_row = p + r * kBlock;
    float* dp_row = dp + r * kBlock;
    const int64_t visible = diagonal ? r + 1 : n_keys;
    const float row_lse = lse[r], row_D = D[r];
    for (int64_t c = 0; c < kBlock; ++c) {
      const float e = exp_approx(p_row[c] * scale - row_lse);
      const float grad = e * (dp_row[c] - row_D) * scale;
      p_row[c] = c < visible ? e : 0.0f;
      dp_row[c] = c < visible ? grad : 0.0f;
    }
  }
}

// D[t] = dO_t . O_t for one head's T rows (the softmax backward's correction term).
TESSERA_CPU_CLONES void row_dots(float* D, const float* dout, const float* out, int64_t stride, int64_t T,
                                 int64_t HS) {
  for (int64_t t = 0; t < T; ++t) {
    float s = 0.0f;
    for (int64_t d = 0; d < HS; ++d) s += dout[t * stride + d] * out[t * stride + d];
    D[t] = s;
  }
}

// One (batch, query head): out rows and stats, query block by query block.
void forward_head(const Heads& H, const float* qkv, float* out, float* stats, int64_t b, int64_t h, float* scratch) {
  const int64_t T = H.T, HS = H.HS, R = H.row(), C = H.C(), g = h / H.group();
  const float scale = 1.0f / std::sqrt(float(HS));
  float* kt = scratch;               // (HS x kBlock) keys, transposed
  float* s = kt + HS * kBlock;       // (kBlock x kBlock) scores, then probabilities
  float* o = s + kBlock * kBlock;    // (kBlock x HS) unnormalised output
  float* m = o + kBlock * HS;        // (kBlock) running max
  float* l = m + kBlock;             // (kBlock) running sum
  const float* seq = qkv + b * T * R;
  for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
    const int64_t ni = std::min(kBlock, T - i0);
    const float* q = seq + i0 * R + H.q_col(h);
    std::fill(o, o + ni * HS, 0.0f);
    std::fill(m, m + ni, kNegInf);
    std::fill(l, l + ni, 0.0f);
    for (int64_t j0 = 0; j0 <= i0; j0 += kBlock) {
      const int64_t nj = std::min(kBlock, T - j0);
      gather_transposed(kt, seq + j0 * R + H.k_col(g), R, nj, HS);
      tile_gemm(s, kBlock, q, R, 1, kt, kBlock, ni, nj, HS, false);               // s = q k^T
      online_softmax(s, m, l, o, ni, nj, j0 == i0, scale, HS);
      tile_gemm(o, HS, s, kBlock, 1, seq + j0 * R + H.v_col(g), R, ni, HS, nj, true);  // o += p v
    }
    for (int64_t r = 0; r < ni; ++r) {
      const float inv = 1.0f / l[r];
      float* dst = out + (b * T + i0 + r) * C + h * HS;
      for (int64_t d = 0; d < HS; ++d) dst[d] = o[r * HS + d] * inv;
      stats[(b * H.NH + h) * T + i0 + r] = m[r] + std::log(l[r]);
    }
  }
}

// With P = softmax(S), S = scale Q K^T (causal), dS = P (dO V^T - D):
//   dV = P^T dO,  dK = scale dS^T Q,  dQ = scale dS K.
// One (batch, key/value head) owns its dk, dv and the dq of its group's query heads. Key block by
// key block: dk and dv of the block accumulate over the group's heads and the query blocks at or
// after it; dq accumulates in dqkv over key blocks.
void backward_group(const Heads& H, const float* qkv, const float* out, const float* dout, const float* stats,
                    float* dqkv, int64_t b, int64_t g, float* scratch) {
  const int64_t T = H.T, HS = H.HS, R = H.row(), C = H.C(), G = H.group();
  const float scale = 1.0f / std::sqrt(float(HS));
  float* kt = scratch;             // (HS x kBlock)
  float* vt = kt + HS * kBlock;    // (HS x kBlock)
  float* p = vt + HS * kBlock;     // (kBlock x kBlock)
  float* ds = p + kBlock * kBlock; // (kBlock x kBlock) dO v^T, then dS
  float* dk = ds + kBlock * kBlock;  // (kBlock x HS)
  float* dv = dk + kBlock * HS;      // (kBlock x HS)
  float* D = dv + kBlock * HS;       // (G x T)
  const float* seq = qkv + b * T * R;
  float* dseq = dqkv + b * T * R;
  for (int64_t h = g * G; h < (g + 1) * G; ++h)
    row_dots(D + (h - g * G) * T, dout + b * T * C + h * HS, out + b * T * C + h * HS, C, T, HS);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = g * G; h < (g + 1) * G; ++h) std::fill_n(dseq + t * R + H.q_col(h), HS, 0.0f);

  for (int64_t j0 = 0; j0 < T; j0 += kBlock) {
    const int64_t nj = std::min(kBlock, T - j0);
    const float* k = seq + j0 * R + H.k_col(g);
    gather_transposed(kt, k, R, nj, HS);
    gather_transposed(vt, seq + j0 * R + H.v_col(g), R, nj, HS);
    std::fill(dk, dk + nj * HS, 0.0f);
    std::fill(dv, dv + nj * HS, 0.0f);
    for (int64_t h = g * G; h < (g + 1) * G; ++h) {
      const float* lse = stats + (b * H.NH + h) * T;
      const float* Dh = D + (h - g * G) * T;
      for (int64_t i0 = j0; i0 < T; i0 += kBlock) {
        const int64_t ni = std::min(kBlock, T - i0);
        const float* q = seq + i0 * R + H.q_col(h);
        const float* dO = dout + (b * T + i0) * C + h * HS;
        tile_gemm(p, kBlock, q, R, 1, kt, kBlock, ni, nj, HS, false);     // s = q k^T
        tile_gemm(ds, kBlock, dO, C, 1, vt, kBlock, ni, nj, HS, false);   // dO v^T
        softmax_backward_tile(p, ds, lse + i0, Dh + i0, ni, nj, i0 == j0, scale);
        tile_gemm(dv, HS, p, 1, kBlock, dO, C, nj, HS, ni, true);         // dv += p^T dO
        tile_gemm(dk, HS, ds, 1, kBlock, q, R, nj, HS, ni, true);         // dk += ds^T q
        tile_gemm(dseq + i0 * R + H.q_col(h), R, ds, kBlock, 1, k, R, ni, HS, nj, true);  // dq += ds k
      }
    }
    for (int64_t r = 0; r < nj; ++r) {
      std::copy_n(dk + r * HS, HS, dseq + (j0 + r) * R + H.k_col(g));
      std::copy_n(dv + r * HS, HS, dseq + (j0 + r) * R + H.v_col(g));
    }
  }
}

}  // namespace

void flash_attention_forward(Context& ctx, Tensor out, Tensor stats, Tensor qkv, int n_head, int n_kv_head) {
  const Heads H = heads_of(qkv, n_head, n_kv_head);
  const int threads = ctx.cpu_threads();
  const int64_t per_thread = 2 * H.HS * kBlock + kBlock * kBlock + 2 * kBlock;
  float* scratch = static_cast<float*>(ctx.host_scratch(sizeof(float) * size_t(per_thread * threads)));
  const float* qkv_p = qkv.ptr<float>();
  float* out_p = out.ptr<float>();
  float* stats_p = stats.ptr<float>();
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (int64_t b = 0; b < H.B; ++b)
    for (int64_t h = 0; h < H.NH; ++h)
      forward_head(H, qkv_p, out_p, stats_p, b, h, scratch + omp_get_thread_num() * per_thread);
}

void flash_attention_backward(Context& ctx, Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor stats,
                              int n_head, int n_kv_head) {
  const Heads H = heads_of(qkv, n_head, n_kv_head);
  const int threads = ctx.cpu_threads();
  const int64_t per_thread = 4 * H.HS * kBlock + 2 * kBlock * kBlock + H.group() * H.T;
  float* scratch = static_cast<float*>(ctx.host_scratch(sizeof(float) * size_t(per_thread * threads)));
  const float* qkv_p = qkv.ptr<float>();
  const float* out_p = out.ptr<float>();
  const float* dout_p = dout.ptr<float>();
  const float* stats_p = stats.ptr<float>();
  float* dqkv_p = dqkv.ptr<float>();
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (int64_t b = 0; b < H.B; ++b)
    for (int64_t g = 0; g < H.NKV; ++g)
      backward_group(H, qkv_p, out_p, dout_p, stats_p, dqkv_p, b, g, scratch + omp_get_thread_num() * per_thread);
}

}  // namespace tessera::cpu
