// A model family: its presets, the names its parameters have in Hugging Face's files, and how its
// config.json reads and writes. The decoder's pieces (norm, positions, MLP, biases, tying) are the
// config's; a family only names them. Adding a family is one file defining one of these, listed
// in family.cpp.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "io/json.h"
#include "tessera/model_config.h"

namespace tessera::model {

// Hugging Face's names of one family's parameters. Block names hold "{}" where the layer index goes;
// linears and norms are named without their ".weight" / ".bias".
struct FamilyNames {
  std::string token_embedding;     // full name
  std::string position_embedding;  // full name (learned positions only)
  std::string norm1, qkv, attn_out, norm2, mlp_in, mlp_out;  // in block l
  // Where Hugging Face keeps packed tensors apart: q, k, v and gate, up (empty: stored packed).
  std::vector<std::string> qkv_parts, mlp_in_parts;
  std::string final_norm, lm_head;
  bool transposed_linears = false;  // the blocks' linears stored (in, out): GPT-2's Conv1D
};

struct Family {
  std::string name;             // ModelConfig::family
  std::string display_name;     // in descriptions: "GPT-2", "LLaMA"
  std::string hf_model_type;    // config.json's "model_type"
  std::string hf_architecture;  // config.json's "architectures"[0]
  FamilyNames names;
  // Tensors Hugging Face files may hold that are not parameters (buffers older versions saved).
  std::vector<std::string> hf_ignored_suffixes;
  ModelConfig defaults;         // the family's choices, sizes unset
  int (*ffn_dim_for)(int n_embd);  // the family's MLP width for a custom model
  std::vector<std::pair<std::string, ModelConfig>> presets;
  // config.json (already parsed) -> the model; data_error / config_error naming `path` and the key
  // for a config this family cannot build.
  ModelConfig (*read_hf_config)(const json::Value& config, const std::string& path);
  // The model -> config.json; config_error when the config uses pieces the family's Hugging Face
  // format cannot express (a GPT-2 with RMSNorm).
  json::Value (*write_hf_config)(const ModelConfig& config);
};

const std::vector<const Family*>& families();
// config_error listing the families for an unknown name.
const Family& family(const std::string& name);
// The family whose config.json has this "model_type"; nullptr when none.
const Family* family_for_hf_model_type(const std::string& model_type);

// The families, one file each.
const Family& gpt2_family();
const Family& llama_family();

// Block name with the layer index filled in: block_name("model.layers.{}.mlp.up_proj", 3).
std::string block_name(const std::string& pattern, int layer);

}  // namespace tessera::model
