// The small models (GPT-2 and LLaMA) and the learning-rate schedule that the multi-rank equivalence and resume tests
// train, so that both compare runs of the same model.
#pragma once

#include "tessera/model.h"
#include "tessera/optimizer.h"

#include <string>
#include <vector>

namespace tessera::test {

constexpr int kSmallModelSeqLen = 16;

// The families the multi-rank tests train, each in every layout.
inline const std::vector<std::string>& small_families() {
  static const std::vector<std::string> families = {"gpt2", "llama"};
  return families;
}

// L layers, 4 heads, 32 channels, the 257-token byte vocabulary (padded to 384), 16 positions: a
// GPT-2, or a LLaMA with 2 key/value heads (two query heads each) and a SwiGLU of 64.
inline ModelConfig small_config(int layers = 4, const std::string& family = "gpt2") {
  if (family == "llama") {
    ModelConfig c = ModelConfig::llama(layers, 4, 2, 32, 64, 257, kSmallModelSeqLen);
    c.rope_theta = 10000.0f;
    return c;
  }
  return ModelConfig::gpt2(layers, 4, 32, 257, kSmallModelSeqLen);
}

// Warm-up over 3 steps to 3e-3, then down to 3e-4 at total_steps.
inline float small_model_learning_rate(int step, int total_steps) {
  LRSchedule s;
  s.max_lr = 3e-3f;
  s.min_lr = 3e-4f;
  s.warmup_steps = 3;
  s.total_steps = total_steps;
  return s.at(step);
}

}  // namespace tessera::test
