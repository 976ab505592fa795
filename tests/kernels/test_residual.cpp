// residual_forward on the CPU.
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"

using namespace tessera;

TEST_CASE("residual: forward adds elementwise, also in place", "[kernels][residual]") {
  Context& ctx = test::cpu_context();
  const int64_t B = 2, T = 3, C = 37;
  auto a = test::random_uniform(size_t(B * T * C), 71);
  auto b = test::random_uniform(size_t(B * T * C), 72);
  std::vector<float> want(a.size());
  for (size_t i = 0; i < a.size(); ++i) want[i] = a[i] + b[i];
  auto a_t = test::upload(ctx, a, {B, T, C});
  auto b_t = test::upload(ctx, b, {B, T, C});
  auto out = test::poisoned(ctx, {B, T, C});
  ops::residual_forward(ctx, out.tensor, a_t.tensor, b_t.tensor);
  CHECK(test::download(ctx, out.tensor) == want);
  ops::residual_forward(ctx, a_t.tensor, a_t.tensor, b_t.tensor);
  CHECK(test::download(ctx, a_t.tensor) == want);
  ops::residual_forward(ctx, b_t.tensor, a_t.tensor, b_t.tensor);  // a already holds a+b
  for (size_t i = 0; i < want.size(); ++i) want[i] += b[i];
  CHECK(test::download(ctx, b_t.tensor) == want);
}
