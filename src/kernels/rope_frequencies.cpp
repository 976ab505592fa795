// Rotary embeddings' inverse frequencies, shared by the CPU and CUDA kernels (and the registry's
// float64 maths): computed once in float64 and rounded, so every backend rotates by the same angles.
#include <cmath>

#include "kernels/ops.h"

namespace tessera {

void rope_inverse_frequencies(float* inv_freq, int head_size, const RopeParams& rope) {
  const double old_context = rope.original_max_position_embeddings;
  const double low_freq_wavelen = old_context / rope.low_freq_factor;
  const double high_freq_wavelen = old_context / rope.high_freq_factor;
  for (int i = 0; i < head_size / 2; ++i) {
    double f = 1.0 / std::pow(rope.theta, double(2 * i) / double(head_size));
    if (rope.factor != 0.0) {  // Llama 3.1 (transformers' _compute_llama3_parameters)
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen > low_freq_wavelen) {
        f /= rope.factor;
      } else if (wavelen >= high_freq_wavelen) {
        const double smooth =
            (old_context / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor);
        f = (1.0 - smooth) * f / rope.factor + smooth * f;
      }
    }
    inv_freq[i] = float(f);
  }
}

std::vector<float> rope_inverse_frequencies(int head_size, const RopeParams& rope) {
  std::vector<float> inv_freq(static_cast<size_t>(head_size / 2));
  rope_inverse_frequencies(inv_freq.data(), head_size, rope);
  return inv_freq;
}

}  // namespace tessera
