// cuDNN's fused flash attention (frontend SDPA graphs) for bf16 attention on the GPU, grouped-query
// heads included (K and V with fewer heads than Q).
// Used by the entry points in attention.cu, which run the plain kernels unless these ran:
//   not_applicable: not bf16, head size not a multiple of 8 or above 128, no cuDNN handle,
//                   ContextOptions::use_cudnn_attention off, or a build without the frontend;
//   fell_back:      meant for cuDNN but it could not run: misaligned operands, no engine for this
//                   shape, or a graph that failed to build (logged once per shape);
// and count the outcome in the Context's fast-path counts.
// Both paths write the same stats (natural-log logsumexp of the scaled, masked scores), so a
// forward on one path and a backward on the other agree.
#pragma once

#include "kernels/ops.h"

namespace tessera::cuda::cudnn_attention {

enum class Outcome { ran, not_applicable, fell_back };

// Runs the forward through cuDNN (ran), or does nothing.
Outcome try_forward(Context& ctx, Tensor out, Tensor stats, Tensor qkv, int n_head, int n_kv_head);

// Runs the backward through cuDNN, deterministic algorithm (ran), or does nothing.
Outcome try_backward(Context& ctx, Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor stats, int n_head,
                  int n_kv_head);

}  // namespace tessera::cuda::cudnn_attention
