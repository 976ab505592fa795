// Hugging Face GPT-2 interoperability: a directory with config.json and model.safetensors, as
// transformers' GPT2LMHeadModel reads and writes it.
#pragma once

#include <string>

#include "tessera/gpt2.h"

namespace tessera {

// Reads dir/config.json (n_layer, n_head, n_embd, vocab_size, n_positions). Errors name the file
// and the key.
GPT2Config read_gpt2_hf_config(const std::string& dir);

// Creates dir and writes config.json and model.safetensors: float32 tensors under Hugging Face's
// names and orientation (Conv1D weights are (in, out): ours are transposed), wte trimmed to
// vocab_size rows, no lm_head (tied to wte).
void export_gpt2_hf(const GPT2& model, const std::string& dir);

// Reads dir/model.safetensors (F32, BF16 or F16 tensors, with or without the "transformer."
// prefix), checks every name and shape against the model (data_error naming the tensor),
// transposes Conv1D weights and zero-fills the padded wte rows.
void import_gpt2_hf(GPT2& model, const std::string& dir);

}  // namespace tessera
