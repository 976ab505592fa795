// CUDA fused cross-entropy against the CPU reference: float32 and bf16, vocabulary 50257
// unpadded (scalar path) and padded to 50304 (16-byte vector path), poisoned outputs, padded
// columns exactly zero, in place over the logits, determinism.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"
#include "tessera/dtype.h"

using namespace tessera;
using test::bitwise_equal;
using test::round_to_bf16;

namespace {

struct CrossEntropyResult {
  std::vector<float> losses, dlogits;
};

CrossEntropyResult run_crossentropy(Context& ctx, const std::vector<float>& logits_host,
                                    const std::vector<int32_t>& targets_host, int64_t Vp, int64_t V, float dloss,
                                    DType dtype, bool in_place) {
  const int64_t N = int64_t(targets_host.size());
  auto logits = test::upload(ctx, logits_host, {N, Vp}, dtype);
  auto targets = test::upload_ints(ctx, targets_host, {N});
  auto losses = test::poisoned(ctx, {N});
  auto separate = test::poisoned(ctx, {N, Vp}, dtype);
  Tensor dlogits = in_place ? logits.tensor : separate.tensor;
  ops::crossentropy_forward_backward(ctx, losses.tensor, dlogits, logits.tensor, targets.tensor, int(V), dloss);
  return {test::download(ctx, losses.tensor), test::download(ctx, dlogits)};
}

double largest(const std::vector<float>& v) {
  double m = 0.0;
  for (float x : v) m = std::max(m, double(std::fabs(x)));
  return m;
}

}  // namespace

TEST_CASE("crossentropy: CUDA matches the CPU reference for 50257 and padded 50304 columns",
          "[cuda][crossentropy]") {
  TESSERA_REQUIRE_GPU(gpu);
  const int64_t N = 5, V = 50257;
  const float dloss = 1.0f / 64;
  auto targets = test::random_ints(size_t(N), 201, 0, int32_t(V));
  targets[1] = int32_t(V - 1);
  for (int64_t Vp : {V, int64_t(50304)}) {
    for (DType dtype : {DType::f32, DType::bf16}) {
      for (bool in_place : {false, true}) {
        CAPTURE(Vp, dtype_name(dtype), in_place);
        auto logits = test::random_normal(size_t(N * Vp), 202, 3.0f);
        if (dtype == DType::bf16) logits = round_to_bf16(logits);
        auto ref = run_crossentropy(test::cpu_context(), logits, targets, Vp, V, dloss, DType::f32, false);
        auto got = run_crossentropy(*gpu, logits, targets, Vp, V, dloss, dtype, in_place);
        const double tolerance = dtype == DType::f32 ? 1e-5 : 1e-2;
        CHECK(test::max_relative_error(got.losses, ref.losses, 1.0) < (dtype == DType::f32 ? 1e-5 : 1e-4));
        // Elements far below the largest gradient are judged against 1e-3 of it.
        CHECK(test::max_relative_error(got.dlogits, ref.dlogits, 1e-3 * largest(ref.dlogits)) < tolerance);
        bool padding_zero = true;
        for (int64_t n = 0; n < N; n++)
          for (int64_t i = V; i < Vp; i++) padding_zero = padding_zero && got.dlogits[size_t(n * Vp + i)] == 0.0f;
        CHECK(padding_zero);
      }
    }
  }
}

TEST_CASE("crossentropy: CUDA losses without dlogits, and bitwise reproducible", "[cuda][crossentropy]") {
  TESSERA_REQUIRE_GPU(gpu);
  const int64_t N = 7, V = 1000, Vp = 1024;
  auto logits_host = test::random_normal(size_t(N * Vp), 211, 2.0f);
  auto targets_host = test::random_ints(size_t(N), 212, 0, int32_t(V));
  auto ref = run_crossentropy(test::cpu_context(), logits_host, targets_host, Vp, V, 0.5f, DType::f32, false);

  auto logits = test::upload(*gpu, logits_host, {N, Vp});
  auto targets = test::upload_ints(*gpu, targets_host, {N});
  auto losses = test::poisoned(*gpu, {N});
  ops::crossentropy_forward_backward(*gpu, losses.tensor, Tensor(), logits.tensor, targets.tensor, int(V), 0.5f);
  CHECK(test::max_relative_error(test::download(*gpu, losses.tensor), ref.losses, 1.0) < 1e-5);
  CHECK(test::max_abs_error(test::download(*gpu, logits.tensor), logits_host) == 0.0);  // untouched

  for (DType dtype : {DType::f32, DType::bf16}) {
    CAPTURE(dtype_name(dtype));
    auto first = run_crossentropy(*gpu, logits_host, targets_host, Vp, V, 0.5f, dtype, false);
    auto second = run_crossentropy(*gpu, logits_host, targets_host, Vp, V, 0.5f, dtype, false);
    CHECK(test::max_abs_error(first.losses, second.losses) == 0.0);
    CHECK(test::max_abs_error(first.dlogits, second.dlogits) == 0.0);
  }
}
