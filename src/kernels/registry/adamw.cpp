// adamw_update: one step from a running state. dims: n step. In a bf16 case the parameter is bf16
// with an fp32 master beside it (the CPU reference takes it as it is); in an f32 case it is its own
// master.
#include <cmath>

#include "kernels/registry/families.h"

namespace tessera::kernels {

namespace {

AdamWParams params(int64_t step) {
  AdamWParams hp;
  hp.lr = 1e-2f;
  hp.weight_decay = 0.1f;
  hp.grad_scale = 0.7f;
  hp.step = int(step);
  return hp;
}

}  // namespace

std::vector<OpEntry> adamw_ops() {
  OpEntry e;
  e.name = "adamw_update";
  e.dims = "n step";
  e.cases = {{100003, 1}, {100003, 3}, {5, 2}};
  e.small = {{37, 1}, {37, 4}};
  e.reference_takes_bf16 = true;
  e.make = [](const Dims& d, DType dtype, uint64_t seed) {
    const int64_t n = d[0];
    const std::vector<float> w = uniform(n, seed_of(seed, 0));
    OpCall c;
    c.args = {accumulate("param", {n}, w, ArgKind::activation),
              dtype == DType::bf16 ? accumulate("master", {n}, w) : absent("master"),
              accumulate("m", {n}, normal(n, seed_of(seed, 2), 0.1f)),
              accumulate("v", {n}, uniform(n, seed_of(seed, 3), 0.0f, 0.01f)),
              input("grad", {n}, normal(n, seed_of(seed, 4)), ArgKind::f32)};
    const AdamWParams hp = params(d[1]);
    c.run = [hp](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::adamw_update, cpu::adamw_update)(ctx, t[0], t[1], t[2], t[3], t[4], hp);
      return 0.0;
    };
    return c;
  };
  // In float64 (an f32 parameter: its own master).
  e.math = [](const Dims& d, Values& v) {
    const AdamWParams hp = params(d[1]);
    const double b1 = hp.beta1, b2 = hp.beta2;
    for (size_t i = 0; i < v[0].size(); ++i) {
      const double g = v[4][i] * hp.grad_scale;
      const double m = b1 * v[2][i] + (1.0 - b1) * g, s = b2 * v[3][i] + (1.0 - b2) * g * g;
      const double mhat = m / (1.0 - std::pow(b1, hp.step)), vhat = s / (1.0 - std::pow(b2, hp.step));
      double& w = v[0][i];
      w -= double(hp.lr) * (mhat / (std::sqrt(vhat) + hp.eps) + hp.weight_decay * w);
      v[2][i] = m, v[3][i] = s;
    }
    return 0.0;
  };
  return {e};
}

}  // namespace tessera::kernels
