// gelu_forward / gelu_backward (tanh approximation) on the CPU against float64.
#include <cmath>
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"

using namespace tessera;

namespace {
double reference_gelu(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}
}  // namespace

TEST_CASE("gelu: forward matches float64, also in place", "[kernels][gelu]") {
  Context& ctx = test::cpu_context();
  const int64_t n = 1000;
  auto x = test::random_uniform(size_t(n), 61, -5.0f, 5.0f);
  std::vector<float> want(x.size());
  for (size_t i = 0; i < x.size(); ++i) want[i] = float(reference_gelu(double(x[i])));
  auto x_t = test::upload(ctx, x, {n});
  auto out = test::poisoned(ctx, {n});
  ops::gelu_forward(ctx, out.tensor, x_t.tensor);
  auto got = test::download(ctx, out.tensor);
  CHECK(test::max_relative_error(got, want, 1e-2) < 1e-4);
  ops::gelu_forward(ctx, x_t.tensor, x_t.tensor);
  CHECK(test::download(ctx, x_t.tensor) == got);
}

TEST_CASE("gelu: backward matches finite differences, also in place", "[kernels][gelu]") {
  Context& ctx = test::cpu_context();
  const int64_t n = 1000;
  auto x = test::random_uniform(size_t(n), 62, -5.0f, 5.0f);
  auto dout = test::random_uniform(size_t(n), 63);
  std::vector<float> want(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    std::vector<double> xi{double(x[i])};
    want[i] = float(double(dout[i]) * test::finite_difference([&] { return reference_gelu(xi[0]); }, xi, 0));
  }
  auto x_t = test::upload(ctx, x, {n});
  auto dout_t = test::upload(ctx, dout, {n});
  auto dinp = test::poisoned(ctx, {n});
  ops::gelu_backward(ctx, dinp.tensor, x_t.tensor, dout_t.tensor);
  auto got = test::download(ctx, dinp.tensor);
  CHECK(test::max_relative_error(got, want, 1e-2) < 1e-4);
  ops::gelu_backward(ctx, dout_t.tensor, x_t.tensor, dout_t.tensor);
  CHECK(test::download(ctx, dout_t.tensor) == got);
}
