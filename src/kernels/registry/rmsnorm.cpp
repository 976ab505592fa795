// rmsnorm_forward / rmsnorm_backward. dims: N C eps_exp tiny (eps = 10^-eps_exp; tiny 1: inputs
// scaled by 1e-3, so that eps weighs as much as the mean square). residual_rmsnorm_forward. dims:
// N C eps_exp tiny alias (0: none; 1: residual written over a; 2: out written over b).
#include <cmath>

#include "kernels/registry/families.h"

namespace tessera::kernels {

namespace {

struct Sizes {
  int64_t N, C;
  float eps;
  bool tiny;
  explicit Sizes(const Dims& d) : N(d[0]), C(d[1]), eps(float(std::pow(10.0, -double(d[2])))), tiny(d[3] != 0) {}
};

struct Normalized {
  std::vector<double> out, rstd;
};

// out (N,C) = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps) per row, in float64.
Normalized rmsnorm64(const Sizes& s, const std::vector<double>& x, const std::vector<double>& w) {
  Normalized r{std::vector<double>(size_t(s.N * s.C)), std::vector<double>(size_t(s.N))};
  for (int64_t n = 0; n < s.N; ++n) {
    const double* xn = &x[size_t(n * s.C)];
    double sum_sq = 0.0;
    for (int64_t c = 0; c < s.C; ++c) sum_sq += xn[c] * xn[c];
    const double rs = 1.0 / std::sqrt(sum_sq / double(s.C) + double(s.eps));
    for (int64_t c = 0; c < s.C; ++c) r.out[size_t(n * s.C + c)] = xn[c] * rs * w[size_t(c)];
    r.rstd[size_t(n)] = rs;
  }
  return r;
}

// Rows of LLaMA-like width, a narrow odd one (fewer channels than a warp's lanes), a wide one,
// eps 1e-5 (Llama 3) and 1e-6 (Llama 2), inputs where eps matters.
const std::vector<Dims> kCases = {{74, 200, 5, 0}, {5, 7, 6, 0}, {3, 1601, 5, 0}, {65, 768, 5, 1}};
const std::vector<Dims> kSmall = {{6, 5, 5, 0}, {3, 33, 6, 0}, {4, 8, 5, 1}};

std::vector<float> inputs(const Sizes& s, uint64_t seed) { return normal(s.N * s.C, seed, s.tiny ? 2e-3f : 2.0f); }
std::vector<float> weights(int64_t n, uint64_t seed) { return uniform(n, seed, 0.5f, 1.5f); }

OpEntry forward() {
  OpEntry e;
  e.name = "rmsnorm_forward";
  e.dims = "N C eps_exp tiny";
  e.cases = kCases;
  e.small = kSmall;
  e.make = [](const Dims& d, DType, uint64_t seed) {
    const Sizes s(d);
    OpCall c;
    c.args = {output("out", {s.N, s.C}), output("rstd", {s.N}, ArgKind::f32),
              input("inp", {s.N, s.C}, inputs(s, seed_of(seed, 2))),
              input("weight", {s.C}, weights(s.C, seed_of(seed, 3)))};
    c.run = [s](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::rmsnorm_forward, cpu::rmsnorm_forward)(ctx, t[0], t[1], t[2], t[3], s.eps);
      return 0.0;
    };
    return c;
  };
  e.math = [](const Dims& d, Values& v) {
    Normalized r = rmsnorm64(Sizes(d), v[2], v[3]);
    v[0] = r.out, v[1] = r.rstd;
    return 0.0;
  };
  return e;
}

OpEntry residual_forward() {
  OpEntry e;
  e.name = "residual_rmsnorm_forward";
  e.dims = "N C eps_exp tiny alias";
  e.cases = {{74, 200, 5, 0, 0}, {74, 200, 5, 0, 1}, {74, 200, 5, 0, 2}, {5, 7, 6, 0, 0}, {3, 1601, 5, 0, 2},
             {65, 768, 5, 1, 0}};
  e.small = {{6, 5, 5, 0, 0}, {3, 33, 6, 0, 1}, {4, 8, 5, 1, 2}};
  e.make = [](const Dims& d, DType, uint64_t seed) {
    const Sizes s(d);
    OpCall c;
    c.args = {d[4] == 1 ? in_place("residual", 3) : output("residual", {s.N, s.C}),
              d[4] == 2 ? in_place("out", 4) : output("out", {s.N, s.C}),
              output("rstd", {s.N}, ArgKind::f32),
              input("a", {s.N, s.C}, inputs(s, seed_of(seed, 1))),
              input("b", {s.N, s.C}, inputs(s, seed_of(seed, 2))),
              input("weight", {s.C}, weights(s.C, seed_of(seed, 3)))};
    c.run = [s](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::residual_rmsnorm_forward, cpu::residual_rmsnorm_forward)(ctx, t[0], t[1], t[2], t[3], t[4], t[5],
                                                                              s.eps);
      return 0.0;
    };
    return c;
  };
  e.math = [](const Dims& d, Values& v) {
    v[0] = v[3];
    for (size_t i = 0; i < v[0].size(); ++i) v[0][i] += v[4][i];
    Normalized r = rmsnorm64(Sizes(d), v[0], v[5]);
    v[1] = r.out, v[2] = r.rstd;
    return 0.0;
  };
  return e;
}

OpEntry backward() {
  OpEntry e;
  e.name = "rmsnorm_backward";
  e.dims = "N C eps_exp tiny";
  e.cases = kCases;
  e.small = kSmall;
  e.make = [](const Dims& d, DType, uint64_t seed) {
    const Sizes s(d);
    OpCall c;
    c.args = {accumulate("dinp", {s.N, s.C}, uniform(s.N * s.C, seed_of(seed, 0)), ArgKind::activation),
              accumulate("dweight", {s.C}, uniform(s.C, seed_of(seed, 1))),
              input("dout", {s.N, s.C}, uniform(s.N * s.C, seed_of(seed, 2))),
              input("inp", {s.N, s.C}, inputs(s, seed_of(seed, 3))),
              input("weight", {s.C}, weights(s.C, seed_of(seed, 4))),
              derived("rstd", {s.N}, ArgKind::f32)};
    // The forward computes rstd; its out is scratch here.
    c.prepare = [s](Via via, Context& ctx, const std::vector<Tensor>& t) {
      Buffer scratch(ctx, size_t(s.N * s.C) * dtype_size(t[3].dtype), ctx.device());
      pick(via, ops::rmsnorm_forward, cpu::rmsnorm_forward)(ctx, scratch.view({s.N, s.C}, t[3].dtype), t[5], t[3], t[4],
                                                            s.eps);
      ctx.synchronize();
      return 0.0;
    };
    c.run = [](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::rmsnorm_backward, cpu::rmsnorm_backward)(ctx, t[0], t[1], t[2], t[3], t[4], t[5]);
      return 0.0;
    };
    return c;
  };
  e.gradient.loss = [](const Dims& d, const Values& v, const Values&) {
    return dot(rmsnorm64(Sizes(d), v[3], v[4]).out, v[2]);
  };
  e.gradient.pairs = {{3, 0}, {4, 1}};  // inp -> dinp, weight -> dweight
  return e;
}

}  // namespace

std::vector<OpEntry> rmsnorm_ops() { return {forward(), residual_forward(), backward()}; }

}  // namespace tessera::kernels
