// The pieces of one AdamW update that AdamW (src/optim/adamw.cpp) and DistributedAdamW
// (src/parallel/distributed_optimizer.cpp) share, so that both check the same things and build
// bitwise the same hyperparameters from the same global norm.
#pragma once

#include <cstdint>

#include "kernels/ops.h"
#include "tessera/optimizer.h"
#include "tessera/param_table.h"
#include "tessera/tensor.h"

namespace tessera::detail {

// Throws config_error unless params (f32 or bf16) and grads (f32) both hold the table's flat
// buffer and the config's betas and eps are valid. `who` names the optimizer in the message.
void check_adamw_setup(const char* who, const ParamTable& table, const Tensor& params, const Tensor& grads,
                       const AdamWConfig& config);

// Hyperparameters of update number step_count + 1: the gradient is scaled by grad_clip / norm
// when clipping is on and the global norm exceeds it. weight_decay is left 0: set it per
// parameter with adamw_weight_decay.
AdamWParams adamw_step_params(const AdamWConfig& config, float lr, int64_t step_count, double global_grad_norm);

// Decoupled weight decay of one parameter: the config's, where the table marks it decayed.
inline float adamw_weight_decay(const AdamWConfig& config, const ParamSpec& spec) {
  return spec.weight_decay ? config.weight_decay : 0.0f;
}

}  // namespace tessera::detail
