// Moving parameter values between the host (always float32) and a tensor of any float dtype on
// the context's device: initialisation, Hugging Face import/export, logits for sampling.
#pragma once

#include <vector>

#include "tessera/context.h"
#include "tessera/tensor.h"

namespace tessera::model {

// t (f32 or bf16, any device) as host floats.
std::vector<float> download_floats(const Context& ctx, const Tensor& t);
// t.numel() floats from src into t (f32 or bf16, any device); bf16 rounds to nearest even.
void upload_floats(const Context& ctx, const Tensor& t, const float* src);

}  // namespace tessera::model
