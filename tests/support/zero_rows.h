// Every kernel with zero rows (B*T = 0 or N = 0), as a rank can get with an empty slice: nothing
// is launched (a grid of zero blocks is a CUDA error), nothing is written, and the accumulated
// gradients keep their values. Shared by the CPU test and the CUDA test.
#pragma once

#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"

namespace tessera::test {

inline void check_zero_rows(Context& ctx, DType dtype) {
  const int64_t T = 8, C = 32, OC = 64, V = 50, NH = 2, HS = C / NH;
  auto act = [&](std::initializer_list<int64_t> shape) { return upload(ctx, {}, shape, dtype); };
  auto f32 = [&](std::initializer_list<int64_t> shape) { return upload(ctx, {}, shape); };
  auto params = [&](const std::vector<float>& v, std::initializer_list<int64_t> shape, DType t) {
    return upload(ctx, v, shape, t);
  };
  // Accumulated outputs with known values, which must survive unchanged.
  const auto dwte0 = random_uniform(size_t(V * C), 31), dwpe0 = random_uniform(size_t(T * C), 32);
  const auto dw0 = random_uniform(size_t(OC * C), 33), db0 = random_uniform(size_t(OC), 34);
  const auto dln_w0 = random_uniform(size_t(C), 35), dln_b0 = random_uniform(size_t(C), 36);
  auto wte = params(random_uniform(size_t(V * C), 1), {V, C}, dtype);
  auto wpe = params(random_uniform(size_t(T * C), 2), {T, C}, dtype);
  auto w = params(random_uniform(size_t(OC * C), 3), {OC, C}, dtype);
  auto b = params(random_uniform(size_t(OC), 4), {OC}, dtype);
  auto ln_w = params(random_uniform(size_t(C), 5), {C}, dtype);
  auto ln_b = params(random_uniform(size_t(C), 6), {C}, dtype);
  auto dwte = upload(ctx, dwte0, {V, C}), dwpe = upload(ctx, dwpe0, {T, C});
  auto dw = upload(ctx, dw0, {OC, C}), db = upload(ctx, db0, {OC});
  auto dln_w = upload(ctx, dln_w0, {C}), dln_b = upload(ctx, dln_b0, {C});

  auto tokens = upload_ints(ctx, {}, {0, T});
  auto x = act({0, T, C});
  ops::embedding_forward(ctx, x.tensor, tokens.tensor, wte.tensor, wpe.tensor, 0);
  ops::embedding_backward(ctx, dwte.tensor, dwpe.tensor, x.tensor, tokens.tensor, 0);

  auto rows = act({0, C}), mean = f32({0}), rstd = f32({0}), drows = act({0, C});
  ops::layernorm_forward(ctx, rows.tensor, mean.tensor, rstd.tensor, rows.tensor, ln_w.tensor, ln_b.tensor);
  ops::layernorm_backward(ctx, drows.tensor, dln_w.tensor, dln_b.tensor, rows.tensor, rows.tensor, ln_w.tensor,
                          mean.tensor, rstd.tensor);

  auto out = act({0, OC}), pre = act({0, OC});
  ops::matmul_forward(ctx, out.tensor, Tensor(), rows.tensor, w.tensor, b.tensor, Epilogue::none);
  ops::matmul_forward(ctx, out.tensor, pre.tensor, rows.tensor, w.tensor, b.tensor, Epilogue::gelu);
  ops::matmul_backward(ctx, drows.tensor, dw.tensor, db.tensor, out.tensor, rows.tensor, w.tensor);
  ops::gelu_forward(ctx, out.tensor, pre.tensor);
  ops::gelu_backward(ctx, out.tensor, pre.tensor, out.tensor);
  ops::residual_forward(ctx, rows.tensor, rows.tensor, drows.tensor);

  auto qkv = act({0, T, 3 * C}), att = act({0, T, C}), stats = f32({0, NH, T}), dqkv = act({0, T, 3 * C});
  ops::attention_forward(ctx, att.tensor, stats.tensor, qkv.tensor, int(NH), int(NH));
  ops::attention_backward(ctx, dqkv.tensor, att.tensor, qkv.tensor, att.tensor, stats.tensor, int(NH), int(NH));

  auto logits = act({0, V}), losses = f32({0}), targets = upload_ints(ctx, {}, {0});
  ops::crossentropy_forward_backward(ctx, losses.tensor, logits.tensor, logits.tensor, targets.tensor, int(V), 1.0f);
  auto row_max = f32({0}), sum_exp = f32({0}), target_logit = f32({0});
  ops::crossentropy_vp_max(ctx, row_max.tensor, logits.tensor, int(V));
  ops::crossentropy_vp_sums(ctx, sum_exp.tensor, target_logit.tensor, logits.tensor, row_max.tensor, targets.tensor, 0,
                            int(V));
  ops::crossentropy_vp_loss(ctx, losses.tensor, sum_exp.tensor, target_logit.tensor, row_max.tensor);
  ops::crossentropy_vp_backward(ctx, logits.tensor, logits.tensor, row_max.tensor, sum_exp.tensor, targets.tensor, 0,
                                int(V), 1.0f);
  auto empty = f32({0});
  CHECK(ops::sum_of_squares(ctx, empty.tensor) == 0.0);
  ctx.synchronize();

  CHECK(bitwise_equal(download(ctx, dwte.tensor), dwte0));
  CHECK(bitwise_equal(download(ctx, dwpe.tensor), dwpe0));
  CHECK(bitwise_equal(download(ctx, dw.tensor), dw0));
  CHECK(bitwise_equal(download(ctx, db.tensor), db0));
  CHECK(bitwise_equal(download(ctx, dln_w.tensor), dln_w0));
  CHECK(bitwise_equal(download(ctx, dln_b.tensor), dln_b0));
}

}  // namespace tessera::test
