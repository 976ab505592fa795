// Rotary position embeddings on the GPU: one thread per (token, frequency) computes its angle once
// (float32, as the CPU reference and transformers) and rotates that pair in every q and k head; v is
// copied by the same threads when the output is not the input. The inverse frequencies come from
// rope_inverse_frequencies on the host, passed by value with the launch.
#include <string>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/ops.h"
#include "tessera/error.h"

namespace tessera::cuda {

namespace {

using namespace common;

constexpr int kBlock = 256;
constexpr int kMaxHalf = 256;  // head sizes up to 512

struct Frequencies {
  float inv_freq[kMaxHalf];
};

struct Layout {
  int64_t tokens;     // B*T
  int T, half;        // HS / 2
  int rotated_heads;  // NH + NKV: the q and k heads
  int v_width;        // NKV * HS
  int position_offset;
};

template <class T>
__global__ void rope_kernel(T* out, const T* in, Frequencies f, Layout l, float sign) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int HS = 2 * l.half;
  const int64_t R = int64_t(l.rotated_heads) * HS + l.v_width;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < l.tokens * l.half; idx += stride) {
    const int64_t token = idx / l.half;
    const int i = int(idx % l.half);
    const float angle = float(l.position_offset + int(token % l.T)) * f.inv_freq[i];
    float s, c;
    sincosf(angle, &s, &c);
    s *= sign;
    const T* x = in + token * R;
    T* y = out + token * R;
    for (int h = 0; h < l.rotated_heads; ++h) {
      const float lo = to_float(x[h * HS + i]), hi = to_float(x[h * HS + l.half + i]);
      y[h * HS + i] = from_float<T>(lo * c - hi * s);
      y[h * HS + l.half + i] = from_float<T>(hi * c + lo * s);
    }
    if (y != x)
      for (int j = i; j < l.v_width; j += l.half) y[l.rotated_heads * HS + j] = x[l.rotated_heads * HS + j];
  }
}

void rotate(Context& ctx, Tensor out, Tensor in, int n_head, int n_kv_head, const RopeParams& rope, int position_offset,
            float sign) {
  const int HS = int(in.size(2) / (n_head + 2 * n_kv_head));
  if (HS / 2 > kMaxHalf)
    throw config_error("rope: head size " + std::to_string(HS) + " exceeds the " + std::to_string(2 * kMaxHalf) +
                           " the CUDA rotary kernel supports",
                       "use a head size of at most 512");
  Frequencies f{};
  rope_inverse_frequencies(f.inv_freq, HS, rope);
  const Layout l{in.size(0) * in.size(1), int(in.size(1)), HS / 2, n_head + n_kv_head, n_kv_head * HS, position_offset};
  const unsigned grid = grid_for(l.tokens * l.half, kBlock);
  if (in.dtype == DType::bf16)
    rope_kernel<<<grid, kBlock, 0, stream_of(ctx)>>>(out.ptr<bf16_t>(), in.ptr<bf16_t>(), f, l, sign);
  else
    rope_kernel<<<grid, kBlock, 0, stream_of(ctx)>>>(out.ptr<float>(), in.ptr<float>(), f, l, sign);
  TESSERA_CUDA_CHECK_LAUNCH();
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

}  // namespace tessera::cuda
