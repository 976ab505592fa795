// gelu_forward / gelu_backward. dims: n in_place (1: out over inp, or dinp over dout).
#include <cmath>

#include "kernels/registry/families.h"

namespace tessera::kernels {

namespace {

double gelu64(double x) { return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }

// Not a multiple of the 16-byte pack; in place; shorter than one pack.
const std::vector<Dims> kCases = {{100003, 0}, {100003, 1}, {7, 0}};

std::vector<float> inputs(int64_t n, uint64_t seed) { return uniform(n, seed, -4.0f, 4.0f); }

OpEntry forward() {
  OpEntry e;
  e.name = "gelu_forward";
  e.dims = "n in_place";
  e.cases = kCases;
  e.small = {{37, 0}, {37, 1}};
  e.make = [](const Dims& d, DType, uint64_t seed) {
    OpCall c;
    c.args = {d[1] ? in_place("out", 1) : output("out", {d[0]}), input("inp", {d[0]}, inputs(d[0], seed_of(seed, 1)))};
    c.run = [](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::gelu_forward, cpu::gelu_forward)(ctx, t[0], t[1]);
      return 0.0;
    };
    return c;
  };
  e.math = [](const Dims&, Values& v) {
    v[0] = v[1];
    for (double& x : v[0]) x = gelu64(x);
    return 0.0;
  };
  return e;
}

OpEntry backward() {
  OpEntry e;
  e.name = "gelu_backward";
  e.dims = "n in_place";
  e.cases = kCases;
  e.small = {{37, 0}};
  e.make = [](const Dims& d, DType, uint64_t seed) {
    OpCall c;
    c.args = {d[1] ? in_place("dinp", 2) : output("dinp", {d[0]}), input("inp", {d[0]}, inputs(d[0], seed_of(seed, 1))),
              input("dout", {d[0]}, uniform(d[0], seed_of(seed, 2)))};
    c.run = [](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::gelu_backward, cpu::gelu_backward)(ctx, t[0], t[1], t[2]);
      return 0.0;
    };
    return c;
  };
  e.gradient.loss = [](const Dims&, const Values& v, const Values&) {
    double s = 0.0;
    for (size_t i = 0; i < v[1].size(); ++i) s += gelu64(v[1][i]) * v[2][i];
    return s;
  };
  e.gradient.pairs = {{1, 0}};
  return e;
}

}  // namespace

std::vector<OpEntry> gelu_ops() { return {forward(), backward()}; }

}  // namespace tessera::kernels
