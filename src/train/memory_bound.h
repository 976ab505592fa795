// The least memory one rank needs to train a model, checked before the model is built: a model that
// cannot fit is refused at once, not after minutes of setting up (or never, for a million layers).
#pragma once

#include <cstdint>

#include "tessera/context.h"
#include "tessera/dtype.h"
#include "tessera/model_config.h"
#include "tessera/parallel.h"

namespace tessera::train {

struct MemoryBound {
  long double device_bytes = 0;  // this rank's share of parameters, gradients and AdamW state
  long double host_bytes = 0;    // the parameter tables (every rank holds the whole model's)
};

// A lower bound: activations and workspaces come on top. Sizes in long double, so no model
// overflows them.
MemoryBound least_training_memory(const ModelConfig& config, const ParallelLayout& layout, DType param_dtype);

// Config error when the bound exceeds what the context's device (or host) has available, naming
// both figures and the flags that shrink a rank's share. Unknown availability passes.
void check_fits_in_memory(const Context& ctx, const ModelConfig& config, const ParallelLayout& layout, DType param_dtype);

}  // namespace tessera::train
