// Writes rotary-embedding cases for check_rope.py: each case's sizes and RopeParams, tessera's
// inverse frequencies, a random qkv, and the CPU reference's rope_forward of it (float32, printed
// exactly). transformers' LlamaRotaryEmbedding and apply_rotary_pos_emb must reproduce them.
//   usage: tessera_rope_fixture FILE
#include <cstdio>
#include <vector>

#include "kernels/ops.h"
#include "kernels/registry.h"
#include "tessera/buffer.h"

using namespace tessera;

namespace {

struct Case {
  int B, T, NH, NKV, HS, offset;
  RopeParams rope;
};

void print(FILE* f, const char* name, const std::vector<float>& v) {
  std::fprintf(f, "%s", name);
  for (float x : v) std::fprintf(f, " %.9g", x);
  std::fprintf(f, "\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: tessera_rope_fixture FILE\n");
    return 2;
  }
  ContextOptions o;
  o.device = DevicePreference::cpu;
  o.announce = false;
  Context ctx(o);
  // Llama 3.1 (theta 500000, factor 8), Llama 3.2 (factor 32, head size 128), and GPT-NeoX-style
  // defaults (theta 10000, no scaling) with grouped, multi-query and multi-head layouts.
  const Case cases[] = {{2, 37, 4, 2, 64, 0, {500000.0, 8.0, 1.0, 4.0, 8192}},
                        {1, 8, 2, 1, 128, 21, {500000.0, 32.0, 1.0, 4.0, 8192}},
                        {1, 16, 3, 3, 16, 5, {10000.0, 0.0, 1.0, 4.0, 8192}}};
  FILE* f = std::fopen(argv[1], "w");
  if (!f) {
    std::perror(argv[1]);
    return 2;
  }
  uint64_t seed = 1;
  for (const Case& c : cases) {
    const int64_t row = int64_t(c.NH + 2 * c.NKV) * c.HS, n = int64_t(c.B) * c.T * row;
    std::vector<float> qkv = kernels::normal(n, seed++), out(static_cast<size_t>(n));
    ops::rope_forward(ctx, Tensor(out.data(), {c.B, c.T, row}, DType::f32, Device::cpu),
                      Tensor(qkv.data(), {c.B, c.T, row}, DType::f32, Device::cpu), c.NH, c.NKV, c.rope, c.offset);
    std::fprintf(f, "case %d %d %d %d %d %d %.17g %.17g %.17g %.17g %d\n", c.B, c.T, c.NH, c.NKV, c.HS, c.offset,
                 c.rope.theta, c.rope.factor, c.rope.low_freq_factor, c.rope.high_freq_factor,
                 c.rope.original_max_position_embeddings);
    print(f, "inv_freq", rope_inverse_frequencies(c.HS, c.rope));
    print(f, "qkv", qkv);
    print(f, "out", out);
  }
  return std::fclose(f) == 0 ? 0 : 2;
}
