// sum_of_squares. dims: n.
#include "kernels/registry/families.h"

namespace tessera::kernels {

std::vector<OpEntry> reduce_ops() {
  OpEntry e;
  e.name = "sum_of_squares";
  e.dims = "n";
  // One element, a few blocks, many, and GPT-2 124M's gradients over 16 ranks.
  e.cases = {{1}, {1000}, {1000003}, {124439808 / 16}};
  e.small = {{1000}};
  e.dtypes = {DType::f32};  // gradients are always f32
  e.make = [](const Dims& d, DType, uint64_t seed) {
    OpCall c;
    c.args = {input("grad", {d[0]}, normal(d[0], seed_of(seed, 0)), ArgKind::f32)};
    c.run = [](Via via, Context& ctx, const std::vector<Tensor>& t) {
      return pick(via, ops::sum_of_squares, cpu::sum_of_squares)(ctx, t[0]);
    };
    c.returns_value = true;
    return c;
  };
  e.math = [](const Dims&, Values& v) {
    double s = 0.0;
    for (double x : v[0]) s += x * x;
    return s;
  };
  e.math_tolerance = 1e-12;  // accumulated in double
  e.f32_tolerance = 1e-12;
  return {e};
}

}  // namespace tessera::kernels
