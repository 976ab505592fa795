// layernorm_forward / layernorm_backward. dims: N C. residual_layernorm_forward. dims: N C alias
// (0: none; 1: residual written over a; 2: out written over b, as under sequence parallelism).
#include <cmath>

#include "kernels/registry/families.h"

namespace tessera::kernels {

namespace {

struct Normalized {
  std::vector<double> out, mean, rstd;
};

// out (N,C) = (x - mean) * rstd * w + b per row, eps 1e-5, in float64.
Normalized layernorm64(int64_t N, int64_t C, const std::vector<double>& x, const std::vector<double>& w,
                       const std::vector<double>& b) {
  Normalized r{std::vector<double>(size_t(N * C)), std::vector<double>(size_t(N)), std::vector<double>(size_t(N))};
  for (int64_t n = 0; n < N; ++n) {
    const double* xn = &x[size_t(n * C)];
    double m = 0.0, var = 0.0;
    for (int64_t c = 0; c < C; ++c) m += xn[c];
    m /= double(C);
    for (int64_t c = 0; c < C; ++c) var += (xn[c] - m) * (xn[c] - m);
    const double s = 1.0 / std::sqrt(var / double(C) + 1e-5);
    for (int64_t c = 0; c < C; ++c) r.out[size_t(n * C + c)] = (xn[c] - m) * s * w[size_t(c)] + b[size_t(c)];
    r.mean[size_t(n)] = m;
    r.rstd[size_t(n)] = s;
  }
  return r;
}

// Rows of GPT-2's width, a narrow odd one (fewer channels than a warp's lanes), a wide one.
const std::vector<Dims> kCases = {{74, 200}, {5, 7}, {3, 1601}, {65, 768}};
const std::vector<Dims> kSmall = {{6, 5}, {3, 33}};

std::vector<float> inputs(int64_t n, uint64_t seed) { return normal(n, seed, 2.0f); }
std::vector<float> weights(int64_t n, uint64_t seed) { return uniform(n, seed, 0.5f, 1.5f); }

OpEntry forward() {
  OpEntry e;
  e.name = "layernorm_forward";
  e.dims = "N C";
  e.cases = kCases;
  e.small = kSmall;
  e.make = [](const Dims& d, DType, uint64_t seed) {
    const int64_t N = d[0], C = d[1];
    OpCall c;
    c.args = {output("out", {N, C}),
              output("mean", {N}, ArgKind::f32),
              output("rstd", {N}, ArgKind::f32),
              input("inp", {N, C}, inputs(N * C, seed_of(seed, 3))),
              input("weight", {C}, weights(C, seed_of(seed, 4))),
              input("bias", {C}, uniform(C, seed_of(seed, 5)))};
    c.run = [](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::layernorm_forward, cpu::layernorm_forward)(ctx, t[0], t[1], t[2], t[3], t[4], t[5]);
      return 0.0;
    };
    return c;
  };
  e.math = [](const Dims& d, Values& v) {
    Normalized r = layernorm64(d[0], d[1], v[3], v[4], v[5]);
    v[0] = r.out, v[1] = r.mean, v[2] = r.rstd;
    return 0.0;
  };
  return e;
}

OpEntry residual_forward() {
  OpEntry e;
  e.name = "residual_layernorm_forward";
  e.dims = "N C alias";
  e.cases = {{74, 200, 0}, {74, 200, 1}, {74, 200, 2}, {5, 7, 0}, {3, 1601, 2}, {65, 768, 0}};
  e.small = {{6, 5, 0}, {3, 33, 1}, {3, 33, 2}};
  e.make = [](const Dims& d, DType, uint64_t seed) {
    const int64_t N = d[0], C = d[1];
    OpCall c;
    c.args = {d[2] == 1 ? in_place("residual", 4) : output("residual", {N, C}),
              d[2] == 2 ? in_place("out", 5) : output("out", {N, C}),
              output("mean", {N}, ArgKind::f32),
              output("rstd", {N}, ArgKind::f32),
              input("a", {N, C}, inputs(N * C, seed_of(seed, 1))),
              input("b", {N, C}, uniform(N * C, seed_of(seed, 2))),
              input("weight", {C}, weights(C, seed_of(seed, 4))),
              input("bias", {C}, uniform(C, seed_of(seed, 5)))};
    c.run = [](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::residual_layernorm_forward, cpu::residual_layernorm_forward)(ctx, t[0], t[1], t[2], t[3], t[4],
                                                                                  t[5], t[6], t[7]);
      return 0.0;
    };
    return c;
  };
  e.math = [](const Dims& d, Values& v) {
    v[0] = v[4];
    for (size_t i = 0; i < v[0].size(); ++i) v[0][i] += v[5][i];
    Normalized r = layernorm64(d[0], d[1], v[0], v[6], v[7]);
    v[1] = r.out, v[2] = r.mean, v[3] = r.rstd;
    return 0.0;
  };
  return e;
}

OpEntry backward() {
  OpEntry e;
  e.name = "layernorm_backward";
  e.dims = "N C";
  e.cases = kCases;
  e.small = kSmall;
  e.make = [](const Dims& d, DType, uint64_t seed) {
    const int64_t N = d[0], C = d[1];
    OpCall c;
    c.args = {accumulate("dinp", {N, C}, uniform(N * C, seed_of(seed, 0)), ArgKind::activation),
              accumulate("dweight", {C}, uniform(C, seed_of(seed, 1))),
              accumulate("dbias", {C}, uniform(C, seed_of(seed, 2))),
              input("dout", {N, C}, uniform(N * C, seed_of(seed, 3))),
              input("inp", {N, C}, inputs(N * C, seed_of(seed, 4))),
              input("weight", {C}, weights(C, seed_of(seed, 5))),
              derived("mean", {N}, ArgKind::f32),
              derived("rstd", {N}, ArgKind::f32)};
    // The forward computes mean and rstd; its out and bias are scratch here.
    c.prepare = [N, C](Via via, Context& ctx, const std::vector<Tensor>& t) {
      Buffer scratch(ctx, size_t(N * C + C) * dtype_size(t[4].dtype), ctx.device());
      const Tensor flat = scratch.view({N * C + C}, t[4].dtype);
      const Tensor out = flat.flat_range(0, N * C).reshape({N, C}), bias = flat.flat_range(N * C, C);
      zero_tensor(ctx, bias);
      pick(via, ops::layernorm_forward, cpu::layernorm_forward)(ctx, out, t[6], t[7], t[4], t[5], bias);
      ctx.synchronize();
      return 0.0;
    };
    c.run = [](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::layernorm_backward, cpu::layernorm_backward)(ctx, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]);
      return 0.0;
    };
    c.loss_variables = {input("bias", {C}, uniform(C, seed_of(seed, 6)))};
    return c;
  };
  e.gradient.loss = [](const Dims& d, const Values& v, const Values& vars) {
    return dot(layernorm64(d[0], d[1], v[4], v[5], vars[0]).out, v[3]);
  };
  e.gradient.pairs = {{4, 0}, {5, 1}, {8, 2}};  // inp -> dinp, weight -> dweight, bias -> dbias
  return e;
}

}  // namespace

std::vector<OpEntry> layernorm_ops() { return {forward(), residual_forward(), backward()}; }

}  // namespace tessera::kernels
