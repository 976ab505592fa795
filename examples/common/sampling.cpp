#include "common/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace tessera::program {

int sample_top_k(const float* logits, int vocab_size, int top_k, float temperature, std::mt19937_64& rng) {
  int k = (top_k <= 0 || top_k > vocab_size) ? vocab_size : top_k;
  std::vector<int> order(static_cast<size_t>(vocab_size));
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  float t = temperature > 0 ? temperature : 1.0f;
  std::vector<double> weights(static_cast<size_t>(k));
  double top = logits[order[0]];
  for (int i = 0; i < k; ++i) weights[size_t(i)] = std::exp((double(logits[order[size_t(i)]]) - top) / t);
  std::discrete_distribution<int> pick(weights.begin(), weights.end());
  return order[size_t(pick(rng))];
}

std::vector<int32_t> generate(Model& model, std::vector<int32_t> prompt, int count, int window, int top_k,
                              float temperature, uint64_t seed) {
  const int vocab = model.config().vocab_size;
  std::mt19937_64 rng(seed);
  std::vector<float> logits(static_cast<size_t>(vocab));
  std::vector<int32_t> context(size_t(window), 0);
  std::vector<int32_t> generated;
  for (int n = 0; n < count; ++n) {
    // The last min(window, len) tokens fill the window from the left; positions after them
    // are ignored thanks to the causal mask.
    size_t len = std::min(prompt.size(), size_t(window));
    std::copy(prompt.end() - std::ptrdiff_t(len), prompt.end(), context.begin());
    model.forward(context.data(), nullptr, 1, window);
    model.logits_row(0, int(len) - 1, logits.data());
    int next = sample_top_k(logits.data(), vocab, top_k, temperature, rng);
    prompt.push_back(next);
    generated.push_back(next);
  }
  return generated;
}

}  // namespace tessera::program
