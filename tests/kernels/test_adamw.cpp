// adamw_update on the CPU: a bf16 parameter is exactly its rounded fp32 master, and an f32
// parameter with a separate master receives the master's value (the op against float64 is in the
// op registry, src/kernels/registry/adamw.cpp).
#include <cmath>
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"
#include "tessera/dtype.h"

using namespace tessera;

namespace {

struct State {
  std::vector<double> w, m, v;
};

void reference_step(State& s, const std::vector<float>& grad, const AdamWParams& hp) {
  for (size_t i = 0; i < s.w.size(); ++i) {
    double g = double(grad[i]) * hp.grad_scale;
    s.m[i] = hp.beta1 * s.m[i] + (1.0 - hp.beta1) * g;
    s.v[i] = hp.beta2 * s.v[i] + (1.0 - hp.beta2) * g * g;
    double mhat = s.m[i] / (1.0 - std::pow(double(hp.beta1), hp.step));
    double vhat = s.v[i] / (1.0 - std::pow(double(hp.beta2), hp.step));
    s.w[i] -= hp.lr * (mhat / (std::sqrt(vhat) + hp.eps) + hp.weight_decay * s.w[i]);
  }
}

std::vector<float> to_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

AdamWParams test_params() {
  AdamWParams hp;
  hp.lr = 1e-2f;
  hp.beta1 = 0.9f;
  hp.beta2 = 0.95f;
  hp.eps = 1e-8f;
  hp.weight_decay = 0.1f;
  hp.grad_scale = 0.5f;
  return hp;
}

}  // namespace

TEST_CASE("adamw: bf16 param is the rounded fp32 master, which matches float64", "[kernels][adamw]") {
  Context& ctx = test::cpu_context();
  const int64_t n = 517;
  auto w0 = test::random_uniform(size_t(n), 91);
  State ref{std::vector<double>(w0.begin(), w0.end()), std::vector<double>(size_t(n), 0.0),
            std::vector<double>(size_t(n), 0.0)};
  auto master = test::upload(ctx, w0, {n});
  auto param = test::poisoned(ctx, {n}, DType::bf16);
  auto m = test::upload(ctx, std::vector<float>(size_t(n), 0.0f), {n});
  auto v = test::upload(ctx, std::vector<float>(size_t(n), 0.0f), {n});
  AdamWParams hp = test_params();
  for (int step = 1; step <= 2; ++step) {
    auto grad = test::random_normal(size_t(n), 92 + uint64_t(step));
    auto grad_t = test::upload(ctx, grad, {n});
    hp.step = step;
    // dispatch keeps bf16 off the CPU; the kernel itself supports it.
    cpu::adamw_update(ctx, param.tensor, master.tensor, m.tensor, v.tensor, grad_t.tensor, hp);
    reference_step(ref, grad, hp);
  }
  auto w = test::download(ctx, master.tensor);
  CHECK(test::max_relative_error(w, to_float(ref.w)) < 1e-5);
  const bf16* p = param.tensor.ptr<bf16>();
  for (size_t i = 0; i < w.size(); ++i) REQUIRE(p[i].bits == float_to_bf16(w[i]).bits);
}

TEST_CASE("adamw: f32 param with a separate master receives the master's value", "[kernels][adamw]") {
  Context& ctx = test::cpu_context();
  const int64_t n = 64;
  auto w0 = test::random_uniform(size_t(n), 101);
  auto grad = test::random_normal(size_t(n), 102);
  State ref{std::vector<double>(w0.begin(), w0.end()), std::vector<double>(size_t(n), 0.0),
            std::vector<double>(size_t(n), 0.0)};
  auto master = test::upload(ctx, w0, {n});
  auto param = test::poisoned(ctx, {n});
  auto m = test::upload(ctx, std::vector<float>(size_t(n), 0.0f), {n});
  auto v = test::upload(ctx, std::vector<float>(size_t(n), 0.0f), {n});
  auto grad_t = test::upload(ctx, grad, {n});
  AdamWParams hp = test_params();
  ops::adamw_update(ctx, param.tensor, master.tensor, m.tensor, v.tensor, grad_t.tensor, hp);
  reference_step(ref, grad, hp);
  CHECK(test::max_relative_error(test::download(ctx, master.tensor), to_float(ref.w)) < 1e-5);
  CHECK(test::download(ctx, param.tensor) == test::download(ctx, master.tensor));
}
