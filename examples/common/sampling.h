// Text generation from a trained model: top-k sampling, one token at a time.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "tessera/model.h"

namespace tessera::program {

// Samples an index from the top k of logits (all when k <= 0) at the given temperature.
int sample_top_k(const float* logits, int vocab_size, int top_k, float temperature, std::mt19937_64& rng);

// Continues `prompt` by `count` tokens. Every forward uses one fixed window of `window` tokens
// (the activation plan stays the same); past the window the context slides.
std::vector<int32_t> generate(Model& model, std::vector<int32_t> prompt, int count, int window, int top_k,
                              float temperature, uint64_t seed);

}  // namespace tessera::program
