// The fast CPU twins of the fused residual + norm ops (ops.h): one pass over each row, where the
// plain cpu:: references run the residual add over every row, then the norm. Same arithmetic in
// the same order, so the two agree bitwise; ops:: runs these on the CPU backend.
#pragma once

#include "tessera/context.h"
#include "tessera/tensor.h"

namespace tessera::cpu {

void residual_layernorm_forward_one_pass(Context& ctx, Tensor residual, Tensor out, Tensor mean, Tensor rstd, Tensor a,
                                         Tensor b, Tensor weight, Tensor bias);
void residual_rmsnorm_forward_one_pass(Context& ctx, Tensor residual, Tensor out, Tensor rstd, Tensor a, Tensor b,
                                       Tensor weight, float eps);

}  // namespace tessera::cpu
