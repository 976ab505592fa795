// cuDNN's fused flash attention (frontend SDPA graphs) for bf16 attention on the GPU, grouped-query
// heads included (K and V with fewer heads than Q).
// Used by the entry points in attention.cu, which fall back to the plain kernels whenever
// these return false: not bf16, head size not a multiple of 8 or above 128, no cuDNN handle,
// ContextOptions::use_cudnn_attention off, a build without the frontend, misaligned pointers,
// or cuDNN reporting that it cannot run this shape.
// Both paths write the same stats (natural-log logsumexp of the scaled, masked scores), so a
// forward on one path and a backward on the other agree.
#pragma once

#include "kernels/ops.h"

namespace tessera::cuda::cudnn_attention {

// Runs the forward through cuDNN and returns true, or returns false having done nothing.
bool try_forward(Context& ctx, Tensor out, Tensor stats, Tensor qkv, int n_head, int n_kv_head);

// Runs the backward through cuDNN (deterministic algorithm) and returns true, or returns false
// having done nothing.
bool try_backward(Context& ctx, Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor stats, int n_head,
                  int n_kv_head);

}  // namespace tessera::cuda::cudnn_attention
