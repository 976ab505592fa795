// Rotary position embeddings (Hugging Face's rotate-half convention), float32 on the CPU, on the q
// and k heads of a packed qkv; v is copied. The backward is the same rotation by -angle.
#include <cmath>
#include <cstring>

#include "kernels/ops.h"

namespace tessera::cpu {

namespace {

// out = rotation of in by sign * angle on the q and k heads, v copied (nothing to do in place).
void rotate(Context& ctx, Tensor out, Tensor in, int n_head, int n_kv_head, const RopeParams& rope, int position_offset,
            float sign) {
  const int64_t B = in.size(0), T = in.size(1), R = in.size(2);
  const int64_t HS = R / (n_head + 2 * n_kv_head), half = HS / 2, rotated = int64_t(n_head + n_kv_head);
  float* inv_freq = static_cast<float*>(ctx.host_scratch(sizeof(float) * size_t(half)));
  rope_inverse_frequencies(inv_freq, int(HS), rope);
  const float* x = in.ptr<float>();  // (B,T,R)
  float* y = out.ptr<float>();       // (B,T,R)
#pragma omp parallel for collapse(2) schedule(static) num_threads(ctx.cpu_threads())
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      const float position = float(position_offset + t);
      const float* x_t = x + (b * T + t) * R;
      float* y_t = y + (b * T + t) * R;
      for (int64_t i = 0; i < half; ++i) {
        const float angle = position * inv_freq[i];
        const float c = std::cos(angle), s = sign * std::sin(angle);
        for (int64_t h = 0; h < rotated; ++h) {
          const float lo = x_t[h * HS + i], hi = x_t[h * HS + half + i];
          y_t[h * HS + i] = lo * c - hi * s;
          y_t[h * HS + half + i] = hi * c + lo * s;
        }
      }
      if (y != x) std::memcpy(y_t + rotated * HS, x_t + rotated * HS, size_t(n_kv_head * HS) * sizeof(float));
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
