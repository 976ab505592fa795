// The GPU fast paths run where they apply, and are counted: cuBLASLt's bias and GELU epilogues
// (bf16) and cuDNN's fused attention, forward and backward (bf16, head size 64), with no fallback.
// The GPU check runs this with TESSERA_REQUIRE_GPU=1, so a missing GPU fails it.
#include "kernels/ops.h"
#include "support/test_support.h"

using namespace tessera;

TEST_CASE("fast paths: cuBLASLt epilogues and cuDNN attention run for GPT-2 shapes in bf16", "[cuda][fast-paths]") {
  TESSERA_REQUIRE_GPU(gpu);
  Context& ctx = *gpu;
  const FastPathCounts before = ctx.fast_paths();
  const int64_t B = 2, T = 64, NH = 4, HS = 64, C = NH * HS, N = B * T;
  auto x = test::upload(ctx, test::random_uniform(size_t(N * C), 1), {N, C}, DType::bf16);
  auto w = test::upload(ctx, test::random_uniform(size_t(4 * C * C), 2, -0.05f, 0.05f), {4 * C, C}, DType::bf16);
  auto b = test::upload(ctx, test::random_uniform(size_t(4 * C), 3), {4 * C}, DType::bf16);
  auto out = test::poisoned(ctx, {N, 4 * C}, DType::bf16), pre = test::poisoned(ctx, {N, 4 * C}, DType::bf16);
  ops::matmul_forward(ctx, out.tensor, Tensor(), x.tensor, w.tensor, b.tensor, Epilogue::none);
  ops::matmul_forward(ctx, out.tensor, pre.tensor, x.tensor, w.tensor, b.tensor, Epilogue::gelu);

  auto qkv = test::upload(ctx, test::random_uniform(size_t(N * 3 * C), 4), {B, T, 3 * C}, DType::bf16);
  auto att = test::poisoned(ctx, {B, T, C}, DType::bf16), stats = test::poisoned(ctx, {B, NH, T});
  auto datt = test::upload(ctx, test::random_uniform(size_t(N * C), 5), {B, T, C}, DType::bf16);
  auto dqkv = test::poisoned(ctx, {B, T, 3 * C}, DType::bf16);
  ops::attention_forward(ctx, att.tensor, stats.tensor, qkv.tensor, int(NH), int(NH));
  ops::attention_backward(ctx, dqkv.tensor, datt.tensor, qkv.tensor, att.tensor, stats.tensor, int(NH), int(NH));
  ctx.synchronize();

  const FastPathCounts& now = ctx.fast_paths();
  INFO("fast paths: " << now.describe());
  CHECK(now.matmul_bias_epilogue.ran - before.matmul_bias_epilogue.ran == 1);
  CHECK(now.matmul_gelu_epilogue.ran - before.matmul_gelu_epilogue.ran == 1);
  CHECK(now.matmul_bias_epilogue.fell_back == before.matmul_bias_epilogue.fell_back);
  CHECK(now.matmul_gelu_epilogue.fell_back == before.matmul_gelu_epilogue.fell_back);
  if (built_with_cudnn_attention() && ctx.options().use_cudnn_attention) {
    CHECK(now.cudnn_attention_forward.ran - before.cudnn_attention_forward.ran == 1);
    CHECK(now.cudnn_attention_backward.ran - before.cudnn_attention_backward.ran == 1);
  }
  CHECK(now.cudnn_attention_forward.fell_back == before.cudnn_attention_forward.fell_back);
  CHECK(now.cudnn_attention_backward.fell_back == before.cudnn_attention_backward.fell_back);
}

TEST_CASE("fast paths: float32 takes the exact paths without counting a fallback", "[cuda][fast-paths]") {
  TESSERA_REQUIRE_GPU(gpu);
  Context& ctx = *gpu;
  const FastPathCounts before = ctx.fast_paths();
  const int64_t B = 2, T = 16, NH = 2, HS = 32, C = NH * HS, N = B * T;
  auto x = test::upload(ctx, test::random_uniform(size_t(N * C), 1), {N, C});
  auto w = test::upload(ctx, test::random_uniform(size_t(C * C), 2), {C, C});
  auto out = test::poisoned(ctx, {N, C}), pre = test::poisoned(ctx, {N, C});
  ops::matmul_forward(ctx, out.tensor, pre.tensor, x.tensor, w.tensor, Tensor(), Epilogue::gelu);
  auto qkv = test::upload(ctx, test::random_uniform(size_t(N * 3 * C), 4), {B, T, 3 * C});
  auto att = test::poisoned(ctx, {B, T, C}), stats = test::poisoned(ctx, {B, NH, T});
  ops::attention_forward(ctx, att.tensor, stats.tensor, qkv.tensor, int(NH), int(NH));
  ctx.synchronize();
  CHECK(ctx.fast_paths().describe() == before.describe());
}
