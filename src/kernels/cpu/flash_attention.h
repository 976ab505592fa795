// The fast CPU attention: the flash-attention algorithm (blocked tiles, online softmax) on the
// CPU, with the contract of attention_forward / attention_backward in ops.h (grouped-query heads,
// natural-log logsumexp stats). ops:: runs it on the CPU backend; the plain cpu::attention_* stay
// the exact reference that it, the CUDA kernels and the op harness are checked against.
#pragma once

#include "tessera/context.h"
#include "tessera/tensor.h"

namespace tessera::cpu {

void flash_attention_forward(Context& ctx, Tensor out, Tensor stats, Tensor qkv, int n_head, int n_kv_head);
void flash_attention_backward(Context& ctx, Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor stats,
                              int n_head, int n_kv_head);

}  // namespace tessera::cpu
