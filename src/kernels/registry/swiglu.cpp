// swiglu_forward / swiglu_backward. dims: N F (inp (N,2F) = [gate | up]).
#include <cmath>

#include "kernels/registry/families.h"

namespace tessera::kernels {

namespace {

double silu64(double x) { return x / (1.0 + std::exp(-x)); }

// out (N,F) = silu(gate) * up, in float64.
std::vector<double> swiglu64(int64_t N, int64_t F, const std::vector<double>& x) {
  std::vector<double> out(size_t(N * F));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t f = 0; f < F; ++f)
      out[size_t(n * F + f)] = silu64(x[size_t(n * 2 * F + f)]) * x[size_t(n * 2 * F + F + f)];
  return out;
}

// LLaMA-like rows (F a multiple of 8 and not), one row, a short odd one.
const std::vector<Dims> kCases = {{74, 688}, {37, 300}, {1, 4097}, {5, 7}};
const std::vector<Dims> kSmall = {{6, 5}, {2, 9}};

// Gates from -6 to 6: sigmoid's tails and middle.
std::vector<float> inputs(int64_t N, int64_t F, uint64_t seed) { return uniform(N * 2 * F, seed, -6.0f, 6.0f); }

OpEntry forward() {
  OpEntry e;
  e.name = "swiglu_forward";
  e.dims = "N F";
  e.cases = kCases;
  e.small = kSmall;
  e.make = [](const Dims& d, DType, uint64_t seed) {
    const int64_t N = d[0], F = d[1];
    OpCall c;
    c.args = {output("out", {N, F}), input("inp", {N, 2 * F}, inputs(N, F, seed_of(seed, 1)))};
    c.run = [](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::swiglu_forward, cpu::swiglu_forward)(ctx, t[0], t[1]);
      return 0.0;
    };
    return c;
  };
  e.math = [](const Dims& d, Values& v) {
    v[0] = swiglu64(d[0], d[1], v[1]);
    return 0.0;
  };
  return e;
}

OpEntry backward() {
  OpEntry e;
  e.name = "swiglu_backward";
  e.dims = "N F";
  e.cases = kCases;
  e.small = kSmall;
  e.make = [](const Dims& d, DType, uint64_t seed) {
    const int64_t N = d[0], F = d[1];
    OpCall c;
    c.args = {output("dinp", {N, 2 * F}), input("dout", {N, F}, uniform(N * F, seed_of(seed, 1))),
              input("inp", {N, 2 * F}, inputs(N, F, seed_of(seed, 2)))};
    c.run = [](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::swiglu_backward, cpu::swiglu_backward)(ctx, t[0], t[1], t[2]);
      return 0.0;
    };
    return c;
  };
  e.gradient.loss = [](const Dims& d, const Values& v, const Values&) { return dot(swiglu64(d[0], d[1], v[2]), v[1]); };
  e.gradient.pairs = {{2, 0}};
  return e;
}

}  // namespace

std::vector<OpEntry> swiglu_ops() { return {forward(), backward()}; }

}  // namespace tessera::kernels
