// residual_forward. dims: n in_place (1: out over a).
#include "kernels/registry/families.h"

namespace tessera::kernels {

std::vector<OpEntry> residual_ops() {
  OpEntry e;
  e.name = "residual_forward";
  e.dims = "n in_place";
  e.cases = {{2 * 37 * 200 + 3, 0}, {2 * 37 * 200 + 3, 1}, {5, 0}};
  e.small = {{37, 0}, {37, 1}};
  e.make = [](const Dims& d, DType, uint64_t seed) {
    OpCall c;
    c.args = {d[1] ? in_place("out", 1) : output("out", {d[0]}), input("a", {d[0]}, uniform(d[0], seed_of(seed, 1))),
              input("b", {d[0]}, uniform(d[0], seed_of(seed, 2)))};
    c.run = [](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::residual_forward, cpu::residual_forward)(ctx, t[0], t[1], t[2]);
      return 0.0;
    };
    return c;
  };
  e.math = [](const Dims&, Values& v) {
    v[0] = v[1];
    for (size_t i = 0; i < v[0].size(); ++i) v[0][i] += v[2][i];
    return 0.0;
  };
  e.f32_tolerance = 1e-6;
  return {e};
}

}  // namespace tessera::kernels
