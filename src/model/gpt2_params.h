// GPT-2's parameter table (Hugging Face names, tessera orientation) and typed views of a flat
// buffer laid out by it (parameters, or their gradients).
#pragma once

#include <vector>

#include "tessera/gpt2.h"
#include "tessera/param_table.h"
#include "tessera/tensor.h"

namespace tessera::model {

ParamTable gpt2_param_table(const GPT2Config& config);

// The view of parameter i inside a flat buffer laid out by table.
Tensor table_view(const ParamTable& table, size_t i, const Tensor& flat);

struct BlockParams {
  Tensor ln1w, ln1b;          // (C)
  Tensor qkvw, qkvb;          // (3C,C), (3C)
  Tensor attprojw, attprojb;  // (C,C), (C)
  Tensor ln2w, ln2b;          // (C)
  Tensor fcw, fcb;            // (4C,C), (4C)
  Tensor fcprojw, fcprojb;    // (C,4C), (C)
};

struct GPT2Params {
  Tensor wte;  // (Vp,C)
  Tensor wpe;  // (maxT,C)
  std::vector<BlockParams> blocks;
  Tensor lnfw, lnfb;  // (C)
};

// Views of every parameter the table holds; blocks has n_layer entries, and parameters the table
// lacks (another pipeline stage's) are empty views.
GPT2Params gpt2_param_views(const ParamTable& table, const GPT2Config& config, const Tensor& flat);

// Initial values of one parameter: numel floats from a random stream derived from (seed, name),
// so the values do not depend on the order parameters are visited or on where they live.
void initial_values(const ParamSpec& spec, int64_t numel, uint64_t seed, float* out);

}  // namespace tessera::model
