// Rotary position embeddings (Hugging Face's rotate-half convention), float32 on the CPU, on the q
// and k heads of a packed qkv; v is copied. The backward is the same rotation by -angle. The cos
// and sin of each (position, frequency) are computed once per call into the Context's scratch
// (every batch row and head shares them, and nothing is allocated); the rotation of a row is then
// a plain loop over the frequencies, cloned per instruction set.
#include <cmath>
#include <cstring>

#include "kernels/cpu/cpu_math.h"
#include "kernels/ops.h"

namespace tessera::cpu {

namespace {

// y = the rotation of `heads` heads of x (HS = 2 half each) by the angles whose cos and sign * sin
// are c and s (half each).
TESSERA_CPU_CLONES void rotate_heads(float* y, const float* x, const float* c, const float* s, int64_t heads,
                                     int64_t half) {
  for (int64_t h = 0; h < heads; ++h) {
    const float* lo_in = x + h * 2 * half;
    const float* hi_in = lo_in + half;
    float* lo_out = y + h * 2 * half;
    float* hi_out = lo_out + half;
    for (int64_t i = 0; i < half; ++i) {
      const float lo = lo_in[i], hi = hi_in[i];
      lo_out[i] = lo * c[i] - hi * s[i];
      hi_out[i] = hi * c[i] + lo * s[i];
    }
  }
}

// out = rotation of in by sign * angle on the q and k heads, v copied (nothing to do in place).
void rotate(Context& ctx, Tensor out, Tensor in, int n_head, int n_kv_head, const RopeParams& rope, int position_offset,
            float sign) {
  const int64_t B = in.size(0), T = in.size(1), R = in.size(2);
  const int64_t HS = R / (n_head + 2 * n_kv_head), half = HS / 2, rotated = int64_t(n_head + n_kv_head);
  // Scratch: inv_freq (half), then cos and sign * sin (T x half each).
  float* inv_freq = static_cast<float*>(ctx.host_scratch(sizeof(float) * size_t(half * (1 + 2 * T))));
  float* cos_table = inv_freq + half;
  float* sin_table = cos_table + T * half;
  rope_inverse_frequencies(inv_freq, int(HS), rope);
  const float* x = in.ptr<float>();  // (B,T,R)
  float* y = out.ptr<float>();       // (B,T,R)
#pragma omp parallel num_threads(ctx.cpu_threads())
  {
#pragma omp for schedule(static)
    for (int64_t t = 0; t < T; ++t) {
      const float position = float(position_offset + t);
      for (int64_t i = 0; i < half; ++i) {
        const float angle = position * inv_freq[i];
        cos_table[t * half + i] = std::cos(angle);
        sin_table[t * half + i] = sign * std::sin(angle);
      }
    }
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < T; ++t) {
        const float* x_t = x + (b * T + t) * R;
        float* y_t = y + (b * T + t) * R;
        rotate_heads(y_t, x_t, cos_table + t * half, sin_table + t * half, rotated, half);
        if (y != x) std::memcpy(y_t + rotated * HS, x_t + rotated * HS, size_t(n_kv_head * HS) * sizeof(float));
      }
    }
  }
}

}  // namespace

void rope_forward(Context& ctx, Tensor out, Tensor qkv, int n_head, int n_kv_head, const RopeParams& rope,
                  int position_offset) {
  rotate(ctx, out, qkv, n_head, n_kv_head, rope, position_offset, 1.0f);
}

void rope_backward(Context& ctx, Tensor dqkv, Tensor dout, int n_head, int n_kv_head, const RopeParams& rope,
                   int position_offset) {
  rotate(ctx, dqkv, dout, n_head, n_kv_head, rope, position_offset, -1.0f);
}

}  // namespace tessera::cpu
