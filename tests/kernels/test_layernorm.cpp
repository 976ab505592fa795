// layernorm_forward / layernorm_backward on the CPU against a float64 reference.
#include <cmath>
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"

using namespace tessera;

namespace {

constexpr int64_t N = 6, C = 5;  // B=2, T=3 flattened

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }
std::vector<float> to_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

struct Reference {
  std::vector<double> out, mean, rstd;
};

Reference reference_forward(const std::vector<double>& x, const std::vector<double>& w, const std::vector<double>& b) {
  Reference r{std::vector<double>(size_t(N * C)), std::vector<double>(size_t(N)), std::vector<double>(size_t(N))};
  for (int64_t n = 0; n < N; ++n) {
    double m = 0.0, var = 0.0;
    for (int64_t c = 0; c < C; ++c) m += x[size_t(n * C + c)];
    m /= double(C);
    for (int64_t c = 0; c < C; ++c) var += (x[size_t(n * C + c)] - m) * (x[size_t(n * C + c)] - m);
    var /= double(C);
    double s = 1.0 / std::sqrt(var + 1e-5);
    for (int64_t c = 0; c < C; ++c)
      r.out[size_t(n * C + c)] = (x[size_t(n * C + c)] - m) * s * w[size_t(c)] + b[size_t(c)];
    r.mean[size_t(n)] = m;
    r.rstd[size_t(n)] = s;
  }
  return r;
}

}  // namespace

TEST_CASE("layernorm: forward matches the float64 reference", "[kernels][layernorm]") {
  Context& ctx = test::cpu_context();
  auto x = test::random_normal(size_t(N * C), 31, 2.0f);
  auto w = test::random_uniform(size_t(C), 32, 0.5f, 1.5f);
  auto b = test::random_uniform(size_t(C), 33);
  auto x_t = test::upload(ctx, x, {N, C});
  auto w_t = test::upload(ctx, w, {C});
  auto b_t = test::upload(ctx, b, {C});
  auto out = test::poisoned(ctx, {N, C});
  auto mean = test::poisoned(ctx, {N});
  auto rstd = test::poisoned(ctx, {N});
  ops::layernorm_forward(ctx, out.tensor, mean.tensor, rstd.tensor, x_t.tensor, w_t.tensor, b_t.tensor);
  auto ref = reference_forward(to_double(x), to_double(w), to_double(b));
  CHECK(test::max_relative_error(test::download(ctx, out.tensor), to_float(ref.out), 1e-2) < 1e-5);
  CHECK(test::max_relative_error(test::download(ctx, mean.tensor), to_float(ref.mean), 1e-2) < 1e-5);
  CHECK(test::max_relative_error(test::download(ctx, rstd.tensor), to_float(ref.rstd)) < 1e-5);
}

TEST_CASE("layernorm: backward adds finite-difference gradients onto existing ones", "[kernels][layernorm]") {
  Context& ctx = test::cpu_context();
  auto xf = test::random_normal(size_t(N * C), 34, 2.0f);
  auto wf = test::random_uniform(size_t(C), 35, 0.5f, 1.5f);
  auto bf = test::random_uniform(size_t(C), 36);
  auto dout = test::random_uniform(size_t(N * C), 37);
  auto dx0 = test::random_uniform(size_t(N * C), 38);
  auto dw0 = test::random_uniform(size_t(C), 39);
  auto db0 = test::random_uniform(size_t(C), 40);

  auto x_t = test::upload(ctx, xf, {N, C});
  auto w_t = test::upload(ctx, wf, {C});
  auto b_t = test::upload(ctx, bf, {C});
  auto out = test::poisoned(ctx, {N, C});
  auto mean = test::poisoned(ctx, {N});
  auto rstd = test::poisoned(ctx, {N});
  ops::layernorm_forward(ctx, out.tensor, mean.tensor, rstd.tensor, x_t.tensor, w_t.tensor, b_t.tensor);
  auto dout_t = test::upload(ctx, dout, {N, C});
  auto dx_t = test::upload(ctx, dx0, {N, C});
  auto dw_t = test::upload(ctx, dw0, {C});
  auto db_t = test::upload(ctx, db0, {C});
  ops::layernorm_backward(ctx, dx_t.tensor, dw_t.tensor, db_t.tensor, dout_t.tensor, x_t.tensor, w_t.tensor,
                          mean.tensor, rstd.tensor);

  auto x = to_double(xf), w = to_double(wf), b = to_double(bf);
  auto loss = [&] {
    auto out = reference_forward(x, w, b).out;
    double s = 0.0;
    for (size_t i = 0; i < out.size(); ++i) s += out[i] * double(dout[i]);
    return s;
  };
  auto expected = [&](const std::vector<float>& initial, std::vector<double>& param) {
    std::vector<float> want(initial.size());
    for (size_t i = 0; i < want.size(); ++i) want[i] = float(double(initial[i]) + test::finite_difference(loss, param, i));
    return want;
  };
  CHECK(test::max_relative_error(test::download(ctx, dx_t.tensor), expected(dx0, x), 1e-2) < 1e-4);
  CHECK(test::max_relative_error(test::download(ctx, dw_t.tensor), expected(dw0, w), 1e-2) < 1e-4);
  CHECK(test::max_relative_error(test::download(ctx, db_t.tensor), expected(db0, b), 1e-2) < 1e-4);
}

TEST_CASE("layernorm: backward is bitwise identical for 1 and 2 threads", "[kernels][layernorm]") {
  const int64_t n = 70, c = 200;
  auto x = test::random_normal(size_t(n * c), 41);
  auto w = test::random_uniform(size_t(c), 42);
  auto b = test::random_uniform(size_t(c), 43);
  auto dout = test::random_normal(size_t(n * c), 44);
  auto run = [&](Context& ctx) {
    auto x_t = test::upload(ctx, x, {n, c});
    auto w_t = test::upload(ctx, w, {c});
    auto b_t = test::upload(ctx, b, {c});
    auto out = test::poisoned(ctx, {n, c});
    auto mean = test::poisoned(ctx, {n});
    auto rstd = test::poisoned(ctx, {n});
    ops::layernorm_forward(ctx, out.tensor, mean.tensor, rstd.tensor, x_t.tensor, w_t.tensor, b_t.tensor);
    auto dout_t = test::upload(ctx, dout, {n, c});
    auto dx = test::upload(ctx, std::vector<float>(size_t(n * c), 0.0f), {n, c});
    auto dw = test::upload(ctx, std::vector<float>(size_t(c), 0.0f), {c});
    auto db = test::upload(ctx, std::vector<float>(size_t(c), 0.0f), {c});
    ops::layernorm_backward(ctx, dx.tensor, dw.tensor, db.tensor, dout_t.tensor, x_t.tensor, w_t.tensor,
                            mean.tensor, rstd.tensor);
    auto all = test::download(ctx, dx.tensor);
    for (auto* t : {&dw.tensor, &db.tensor}) {
      auto part = test::download(ctx, *t);
      all.insert(all.end(), part.begin(), part.end());
    }
    return all;
  };
  auto two = run(test::cpu_context());
  std::vector<float> one;
  test::with_one_thread([&](Context& single) { one = run(single); });
  REQUIRE(one.size() == two.size());
  for (size_t i = 0; i < one.size(); ++i) REQUIRE(one[i] == two[i]);
}
