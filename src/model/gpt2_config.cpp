// GPT-2 sizes: presets, validation, parameter counts.
#include <fmt/format.h>

#include "tessera/error.h"
#include "tessera/gpt2.h"

namespace tessera {

namespace {
constexpr int kVocabMultiple = 128;  // wte rows padded so the lm-head matmul has friendly shapes
}  // namespace

GPT2Config GPT2Config::preset(const std::string& name) {
  if (name == "tiny") return custom(4, 4, 128, 257, 256);
  if (name == "gpt2") return custom(12, 12, 768, 50257, 1024);
  if (name == "gpt2-medium") return custom(24, 16, 1024, 50257, 1024);
  if (name == "gpt2-large") return custom(36, 20, 1280, 50257, 1024);
  if (name == "gpt2-xl") return custom(48, 25, 1600, 50257, 1024);
  throw config_error("unknown GPT-2 model '" + name + "'",
                     "valid names: tiny, gpt2, gpt2-medium, gpt2-large, gpt2-xl");
}

GPT2Config GPT2Config::custom(int n_layer, int n_head, int n_embd, int vocab_size, int max_seq_len) {
  GPT2Config c;
  c.n_layer = n_layer;
  c.n_head = n_head;
  c.n_embd = n_embd;
  c.vocab_size = vocab_size;
  c.padded_vocab_size = pad_vocab(vocab_size);
  c.max_seq_len = max_seq_len;
  return c;
}

int GPT2Config::pad_vocab(int vocab_size) {
  if (vocab_size <= 0) return vocab_size;
  return (vocab_size + kVocabMultiple - 1) / kVocabMultiple * kVocabMultiple;
}

void GPT2Config::validate() const {
  auto positive = [](const char* what, int v) {
    if (v <= 0)
      throw config_error(fmt::format("GPT-2 config: {} must be positive, got {}", what, v),
                         "use GPT2Config::preset or GPT2Config::custom with positive sizes");
  };
  positive("n_layer", n_layer);
  positive("n_head", n_head);
  positive("n_embd", n_embd);
  positive("vocab_size", vocab_size);
  positive("max_seq_len", max_seq_len);
  if (n_embd % n_head != 0)
    throw config_error(fmt::format("GPT-2 config: n_embd {} is not divisible by n_head {}", n_embd, n_head),
                       "choose n_embd as a multiple of n_head");
  if (padded_vocab_size < vocab_size)
    throw config_error(fmt::format("GPT-2 config: padded_vocab_size {} is smaller than vocab_size {}",
                                   padded_vocab_size, vocab_size),
                       "set padded_vocab_size = GPT2Config::pad_vocab(vocab_size)");
}

int64_t GPT2Config::parameter_count() const {
  // In long double: sizes that no machine could hold must not overflow (they saturate).
  const long double C = n_embd, L = n_layer;
  const long double per_block = 2 * C                  // ln_1
                                + 3 * C * C + 3 * C    // attn.c_attn
                                + C * C + C            // attn.c_proj
                                + 2 * C                // ln_2
                                + 4 * C * C + 4 * C    // mlp.c_fc
                                + 4 * C * C + C;       // mlp.c_proj
  const long double n = (long double)vocab_size * C + (long double)max_seq_len * C + L * per_block + 2 * C;
  return n >= (long double)INT64_MAX ? INT64_MAX : int64_t(n);
}

std::string GPT2Config::describe() const {
  const double n = double(parameter_count());
  std::string count = n >= 1e9 ? fmt::format("{:.2f}B", n / 1e9)
                      : n >= 1e6 ? fmt::format("{:.1f}M", n / 1e6)
                                 : fmt::format("{:.1f}K", n / 1e3);
  return fmt::format("GPT-2 L={} H={} C={} V={} (padded {}) T<={}, {} parameters", n_layer, n_head, n_embd,
                     vocab_size, padded_vocab_size, max_seq_len, count);
}

}  // namespace tessera
