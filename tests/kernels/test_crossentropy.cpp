// CPU fused cross-entropy: losses against float64, dlogits against float64 finite differences of
// sum(losses) * dloss, padded columns exactly zero, and in-place use over the logits.
#include <cmath>
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"

using namespace tessera;

namespace {

// Float64 -log softmax(row)[target] over the first V columns of each row of logits (N,Vp).
std::vector<double> reference_losses(const std::vector<double>& logits, const std::vector<int32_t>& targets,
                                     int64_t N, int64_t Vp, int64_t V) {
  std::vector<double> losses(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; n++) {
    const double* x = logits.data() + n * Vp;
    double maxval = -INFINITY, sum = 0.0;
    for (int64_t i = 0; i < V; i++) maxval = std::max(maxval, x[i]);
    for (int64_t i = 0; i < V; i++) sum += std::exp(x[i] - maxval);
    losses[size_t(n)] = maxval + std::log(sum) - x[targets[size_t(n)]];
  }
  return losses;
}

}  // namespace

TEST_CASE("crossentropy_forward_backward: losses and dlogits match float64, padding is zero",
          "[kernels][crossentropy]") {
  Context& ctx = test::cpu_context();
  const int64_t N = 4, Vp = 40, V = 37;
  const float dloss = 0.25f;
  auto host_logits = test::random_normal(size_t(N * Vp), 51, 2.0f);
  auto host_targets = test::random_ints(size_t(N), 52, 0, int32_t(V));
  host_targets[0] = int32_t(V - 1);  // the last real column
  auto logits = test::upload(ctx, host_logits, {N, Vp});
  auto targets = test::upload_ints(ctx, host_targets, {N});
  auto losses = test::poisoned(ctx, {N});
  auto dlogits = test::poisoned(ctx, {N, Vp});
  ops::crossentropy_forward_backward(ctx, losses.tensor, dlogits.tensor, logits.tensor, targets.tensor, int(V), dloss);

  std::vector<double> x(host_logits.begin(), host_logits.end());
  auto ref = reference_losses(x, host_targets, N, Vp, V);
  CHECK(test::max_relative_error(test::download(ctx, losses.tensor), {ref.begin(), ref.end()}, 1e-3) < 1e-5);

  auto got = test::download(ctx, dlogits.tensor);
  auto scaled_total = [&] {
    double total = 0.0;
    for (double l : reference_losses(x, host_targets, N, Vp, V)) total += l * dloss;
    return total;
  };
  std::vector<float> expected(x.size());
  for (int64_t n = 0; n < N; n++)
    for (int64_t i = 0; i < V; i++) {
      size_t k = size_t(n * Vp + i);
      expected[k] = float(test::finite_difference(scaled_total, x, k));
    }
  // Padded columns: exactly zero (expected is 0 there too, and the comparison is exact below).
  for (int64_t n = 0; n < N; n++)
    for (int64_t i = V; i < Vp; i++) CHECK(got[size_t(n * Vp + i)] == 0.0f);
  CHECK(test::max_relative_error(got, expected, 1e-3) < 1e-4);
}

TEST_CASE("crossentropy_forward_backward: in place over the logits equals out of place",
          "[kernels][crossentropy]") {
  Context& ctx = test::cpu_context();
  const int64_t N = 3, Vp = 50304, V = 50257;
  auto host_logits = test::random_normal(size_t(N * Vp), 61, 3.0f);
  auto host_targets = test::random_ints(size_t(N), 62, 0, int32_t(V));
  auto targets = test::upload_ints(ctx, host_targets, {N});

  auto logits = test::upload(ctx, host_logits, {N, Vp});
  auto losses = test::poisoned(ctx, {N});
  auto dlogits = test::poisoned(ctx, {N, Vp});
  ops::crossentropy_forward_backward(ctx, losses.tensor, dlogits.tensor, logits.tensor, targets.tensor, int(V), 1.0f / N);

  auto inplace = test::upload(ctx, host_logits, {N, Vp});
  auto losses2 = test::poisoned(ctx, {N});
  ops::crossentropy_forward_backward(ctx, losses2.tensor, inplace.tensor, inplace.tensor, targets.tensor, int(V), 1.0f / N);

  CHECK(test::max_abs_error(test::download(ctx, losses2.tensor), test::download(ctx, losses.tensor)) == 0.0);
  CHECK(test::max_abs_error(test::download(ctx, inplace.tensor), test::download(ctx, dlogits.tensor)) == 0.0);

  // Each row of dlogits sums to zero (softmax sums to one, minus the one-hot), padding included.
  auto d = test::download(ctx, dlogits.tensor);
  std::vector<double> x(host_logits.begin(), host_logits.end());
  auto ref = reference_losses(x, host_targets, N, Vp, V);
  auto got_losses = test::download(ctx, losses.tensor);
  for (int64_t n = 0; n < N; n++) {
    double row_sum = 0.0;
    for (int64_t i = 0; i < Vp; i++) row_sum += d[size_t(n * Vp + i)];
    CHECK(std::fabs(row_sum) < 1e-6);
    CHECK(got_losses[size_t(n)] == Approx(ref[size_t(n)]).epsilon(1e-5));
    for (int64_t i = V; i < Vp; i++) REQUIRE(d[size_t(n * Vp + i)] == 0.0f);
  }
}

TEST_CASE("crossentropy_forward_backward: without dlogits only the losses are written", "[kernels][crossentropy]") {
  Context& ctx = test::cpu_context();
  const int64_t N = 5, V = 29;
  auto host_logits = test::random_normal(size_t(N * V), 71, 1.5f);
  auto host_targets = test::random_ints(size_t(N), 72, 0, int32_t(V));
  auto logits = test::upload(ctx, host_logits, {N, V});
  auto targets = test::upload_ints(ctx, host_targets, {N});
  auto losses = test::poisoned(ctx, {N});
  ops::crossentropy_forward_backward(ctx, losses.tensor, Tensor(), logits.tensor, targets.tensor, int(V), 1.0f);
  std::vector<double> x(host_logits.begin(), host_logits.end());
  auto ref = reference_losses(x, host_targets, N, V, V);
  CHECK(test::max_relative_error(test::download(ctx, losses.tensor), {ref.begin(), ref.end()}, 1e-3) < 1e-5);
  CHECK(test::max_abs_error(test::download(ctx, logits.tensor), host_logits) == 0.0);  // untouched
}
