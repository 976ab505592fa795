// AdamW over a flat buffer laid out by a parameter table: weight decay only where the table says,
// global-norm clipping, bias correction, state; and the learning-rate schedule.
#include <cmath>
#include <vector>

#include "support/test_support.h"
#include "tessera/buffer.h"
#include "tessera/error.h"
#include "tessera/optimizer.h"
#include "tessera/param_table.h"

using namespace tessera;

namespace {

// A weight (decayed) and a bias (not decayed), with padding between them in the flat buffers.
struct Fixture {
  ParamTable table;
  Buffer param_storage, grad_storage;
  Tensor params, grads;

  Fixture() {
    ParamSpec w;
    w.name = "layer.weight";
    w.shape = {3, 5};
    w.weight_decay = true;
    table.add(w);
    ParamSpec b;
    b.name = "layer.bias";
    b.shape = {5};
    b.weight_decay = false;
    table.add(b);
    Context& ctx = test::cpu_context();
    const int64_t n = table.flat_numel();
    param_storage = Buffer(ctx, size_t(n) * 4, Device::cpu);
    grad_storage = Buffer(ctx, size_t(n) * 4, Device::cpu);
    params = param_storage.view({n}, DType::f32);
    grads = grad_storage.view({n}, DType::f32);
    zero_tensor(ctx, params);
    zero_tensor(ctx, grads);
  }
  float* param(size_t i) const { return params.ptr<float>() + table.offset(i); }
  float* grad(size_t i) const { return grads.ptr<float>() + table.offset(i); }
  void fill(float* dst, size_t i, uint64_t seed, float stddev) const {
    auto v = test::random_normal(size_t(table.numel(i)), seed, stddev);
    for (size_t j = 0; j < v.size(); ++j) dst[j] = v[j];
  }
};

}  // namespace

TEST_CASE("adamw: weight decay applies only to parameters the table marks", "[optim]") {
  Fixture f;
  f.fill(f.param(0), 0, 1, 1.0f);
  f.fill(f.param(1), 1, 2, 1.0f);
  std::vector<float> w0(f.param(0), f.param(0) + 15), b0(f.param(1), f.param(1) + 5);
  AdamWConfig config;
  config.weight_decay = 0.5f;
  AdamW opt(test::cpu_context(), f.table, f.params, f.grads, config);
  // Zero gradients: the Adam term is 0 / (0 + eps) = 0, leaving only the decoupled decay.
  CHECK(opt.step(0.1f) == 0.0f);
  for (int j = 0; j < 15; ++j) CHECK(f.param(0)[j] == Approx(w0[size_t(j)] * (1.0f - 0.1f * 0.5f)).epsilon(1e-6));
  for (int j = 0; j < 5; ++j) CHECK(f.param(1)[j] == b0[size_t(j)]);
  // Padding between the parameters is never touched.
  for (int64_t j = 15; j < f.table.offset(1); ++j) CHECK(f.params.ptr<float>()[j] == 0.0f);
}

TEST_CASE("adamw: the first step moves each weight by lr against its gradient's sign", "[optim]") {
  Fixture f;
  f.fill(f.param(0), 0, 3, 1.0f);
  f.fill(f.grad(0), 0, 4, 0.1f);
  f.fill(f.grad(1), 1, 5, 0.1f);
  std::vector<float> w0(f.param(0), f.param(0) + 15);
  AdamWConfig config;
  config.weight_decay = 0.0f;
  config.grad_clip = 0.0f;
  AdamW opt(test::cpu_context(), f.table, f.params, f.grads, config);
  CHECK(opt.step_count() == 0);
  opt.step(0.01f);
  CHECK(opt.step_count() == 1);
  // Bias correction at step 1: mhat = g, vhat = g^2, so the update is lr * g / (|g| + eps).
  for (int j = 0; j < 15; ++j) {
    const float g = f.grad(0)[j];
    CHECK(f.param(0)[j] == Approx(w0[size_t(j)] - 0.01f * (g > 0 ? 1.0f : -1.0f)).epsilon(1e-5));
  }
  for (int j = 0; j < 5; ++j) CHECK(std::fabs(f.param(1)[j]) == Approx(0.01f).epsilon(1e-5));
  CHECK(opt.master().empty());
  CHECK(opt.state_bytes() == size_t(2 * f.table.flat_numel() * 4));
  opt.set_step_count(10);
  CHECK(opt.step_count() == 10);
  CHECK_THROWS_AS(opt.set_step_count(-1), Error);
}

TEST_CASE("adamw: the global gradient norm is clipped as configured", "[optim]") {
  Fixture f;
  f.fill(f.grad(0), 0, 6, 2.0f);
  f.fill(f.grad(1), 1, 7, 2.0f);
  double norm2 = 0;
  for (size_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < f.table.numel(i); ++j) norm2 += double(f.grad(i)[j]) * f.grad(i)[j];
  const double norm = std::sqrt(norm2);
  REQUIRE(norm > 2.0);
  Context& ctx = test::cpu_context();
  const float beta1 = AdamWConfig{}.beta1;
  // m after one step is (1 - beta1) * scale * g.
  auto check_first_moment = [&](const AdamW& opt, double scale) {
    const float* m = opt.m().ptr<float>();
    for (size_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < f.table.numel(i); ++j)
        CHECK(m[f.table.offset(i) + j] == Approx((1.0 - beta1) * scale * f.grad(i)[j]).epsilon(1e-5));
  };

  SECTION("norm above the threshold: scaled to grad_clip / norm") {
    AdamWConfig config;
    config.grad_clip = 1.0f;
    AdamW opt(ctx, f.table, f.params, f.grads, config);
    CHECK(opt.grad_norm_squared() == Approx(norm2).epsilon(1e-6));
    CHECK(opt.step(1e-3f) == Approx(norm).epsilon(1e-6));  // the norm before clipping
    check_first_moment(opt, 1.0 / norm);
  }
  SECTION("norm below the threshold: unchanged") {
    AdamWConfig config;
    config.grad_clip = float(norm * 2);
    AdamW opt(ctx, f.table, f.params, f.grads, config);
    opt.step(1e-3f);
    check_first_moment(opt, 1.0);
  }
  SECTION("clipping off") {
    AdamWConfig config;
    config.grad_clip = 0.0f;
    AdamW opt(ctx, f.table, f.params, f.grads, config);
    opt.step(1e-3f);
    check_first_moment(opt, 1.0);
  }
  SECTION("a norm computed elsewhere") {
    AdamWConfig config;
    config.grad_clip = 1.0f;
    AdamW opt(ctx, f.table, f.params, f.grads, config);
    CHECK(opt.step(1e-3f, 4.0) == 4.0f);
    check_first_moment(opt, 0.25);
  }
}

TEST_CASE("adamw: bf16 parameters get an fp32 master copy of their values", "[optim]") {
  Fixture f;
  Context& ctx = test::cpu_context();
  const int64_t n = f.table.flat_numel();
  Buffer storage(ctx, size_t(n) * 2, Device::cpu);
  Tensor params = storage.view({n}, DType::bf16);
  for (int64_t j = 0; j < n; ++j) params.ptr<bf16>()[j] = float_to_bf16(0.25f * float(j % 7) - 0.5f);
  AdamW opt(ctx, f.table, params, f.grads, AdamWConfig{});
  REQUIRE_FALSE(opt.master().empty());
  for (int64_t j = 0; j < n; ++j) CHECK(opt.master().ptr<float>()[j] == bf16_to_float(params.ptr<bf16>()[j]));
  CHECK(opt.state_bytes() == size_t(3 * n * 4));
  CHECK_THROWS_AS(AdamW(ctx, f.table, params.flat_range(0, n - 1), f.grads, AdamWConfig{}), Error);
}

TEST_CASE("lr schedule: linear warm-up, cosine decay, constant floor", "[optim]") {
  LRSchedule s;
  s.max_lr = 1e-3f;
  s.min_lr = 1e-4f;
  s.warmup_steps = 10;
  s.total_steps = 110;
  CHECK(s.at(0) == Approx(1e-4f));  // max_lr * 1/10
  CHECK(s.at(4) == Approx(5e-4f));
  CHECK(s.at(9) == Approx(1e-3f));   // peak at the end of warm-up
  CHECK(s.at(10) == Approx(1e-3f));  // decay starts from the peak
  CHECK(s.at(60) == Approx(0.5 * (1e-3 + 1e-4)));  // halfway: cos(pi/2) = 0
  CHECK(s.at(109) > 1e-4f);
  CHECK(s.at(109) < 1.01e-4f);
  CHECK(s.at(110) == 1e-4f);
  CHECK(s.at(1000) == 1e-4f);
  for (int step = 10; step < 110; ++step) CHECK(s.at(step + 1) <= s.at(step));

  LRSchedule no_warmup;
  no_warmup.max_lr = 2e-3f;
  no_warmup.min_lr = 0.0f;
  no_warmup.total_steps = 4;
  CHECK(no_warmup.at(0) == 2e-3f);
  CHECK(no_warmup.at(2) == Approx(1e-3f));
  CHECK(no_warmup.at(4) == 0.0f);
}
