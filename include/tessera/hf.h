// Hugging Face interoperability: a directory with config.json and the weights (model.safetensors,
// or shards listed in model.safetensors.index.json), as transformers reads and writes it for each
// family (GPT2LMHeadModel, LlamaForCausalLM). Names, orientation, packed parts and padding come
// from the model's parameter table; the family only reads and writes config.json.
#pragma once

#include <string>

#include "tessera/model.h"

namespace tessera {

// Reads dir/config.json: the family from "model_type" (gpt2, llama), then its sizes and options.
// Errors name the file and the key; a model the family's pieces cannot express (another
// activation, attention biases in a LLaMA, ...) is a config_error saying which key.
ModelConfig read_hf_config(const std::string& dir);

// Creates dir and writes config.json and model.safetensors: float32 tensors under Hugging Face's
// names and orientation (GPT-2's Conv1D weights transposed, LLaMA's q|k|v and gate|up apart),
// padded vocabulary rows left out, no separate output layer when it is tied. Needs the whole model
// on this rank (holds_all_parameters()).
void export_hf(const Model& model, const std::string& dir);

// Reads the weights (F32, BF16 or F16; one file or shards; GPT-2 files with or without the
// "transformer." prefix, LLaMA's with or without "model."), checks every name and shape against the
// model (data_error naming the tensor and file) and loads this rank's part: its stages, its
// tensor-parallel shards, padded vocabulary rows zero. A config.json that disagrees with the
// model is a config_error.
void import_hf(Model& model, const std::string& dir);

}  // namespace tessera
