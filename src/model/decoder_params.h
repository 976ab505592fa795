// The decoder's parameter table, built from the configuration's pieces with the family's
// Hugging Face names, and typed views of a flat buffer laid out by it (parameters, or where their
// gradients accumulate).
#pragma once

#include <functional>
#include <vector>

#include "tessera/model_config.h"
#include "tessera/param_table.h"
#include "tessera/tensor.h"

namespace tessera::model {

// Every parameter of the model, global shapes, in the order the flat buffers lay them out: the
// embeddings, the blocks in order, the final norm, the untied output layer. Linears are (out, in);
// packed parts: q|k|v (n_head, n_kv_head, n_kv_head heads) and, for SwiGLU, gate|up.
ParamTable decoder_param_table(const ModelConfig& config);

// The view of parameter i inside a flat buffer laid out by table.
Tensor table_view(const ParamTable& table, size_t i, const Tensor& flat);

struct NormParams {
  Tensor weight, bias;  // (C); bias empty without biases (and always for RMSNorm)
};
struct LinearParams {
  Tensor weight, bias;  // (out, in) local shard; bias (out) or empty
};
struct BlockParams {
  NormParams norm1;
  LinearParams qkv;       // column-parallel: this rank's q|k|v heads
  LinearParams attn_out;  // row-parallel
  NormParams norm2;
  LinearParams mlp_in;    // column-parallel: this rank's MLP columns (gate|up for SwiGLU)
  LinearParams mlp_out;   // row-parallel
};
struct DecoderParams {
  Tensor token_embedding;     // (Vp/tp, C) vocabulary shard
  Tensor position_embedding;  // (maxT, C), or empty (rotary positions)
  std::vector<BlockParams> blocks;  // n_layer entries
  NormParams final_norm;
  Tensor output;  // (Vp/tp, C): the token embedding when tied, else the output layer
};

// Views of every parameter a (local) table holds, entry i's view given by view(i); entries the
// table lacks (another pipeline stage's) stay empty.
DecoderParams decoder_param_views(const ModelConfig& config, const ParamTable& table,
                                  const std::function<Tensor(size_t)>& view);

// Initial values of one parameter: numel floats from a random stream derived from (seed, name),
// so the values do not depend on the order parameters are visited or on where they live.
void initial_values(const ParamSpec& spec, int64_t numel, uint64_t seed, float* out);

}  // namespace tessera::model
