// crossentropy_forward_backward. dims: N Vp V dlogits (0: losses only, 1: separate, 2: in place
// over the logits).
#include <algorithm>
#include <cmath>

#include "kernels/registry/families.h"

namespace tessera::kernels {

namespace {

constexpr float kDloss = 1.0f / 64;

// Float64 losses (N) = logsumexp(row[0..V)) - row[target] of logits (N,Vp).
std::vector<double> losses64(int64_t N, int64_t Vp, int64_t V, const std::vector<double>& x,
                             const std::vector<double>& targets) {
  std::vector<double> losses(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; n++) {
    const double* row = &x[size_t(n * Vp)];
    const double maxval = *std::max_element(row, row + V);
    double sum = 0.0;
    for (int64_t i = 0; i < V; i++) sum += std::exp(row[i] - maxval);
    losses[size_t(n)] = maxval + std::log(sum) - row[int64_t(targets[size_t(n)])];
  }
  return losses;
}

}  // namespace

std::vector<OpEntry> crossentropy_ops() {
  OpEntry e;
  e.name = "crossentropy_forward_backward";
  e.dims = "N Vp V dlogits";
  // GPT-2's vocabulary unpadded (scalar path) and padded to 50304 (16-byte path), in place; losses
  // only; a small odd one.
  e.cases = {{5, 50257, 50257, 1}, {5, 50304, 50257, 1}, {5, 50304, 50257, 2}, {7, 1024, 1000, 0}, {3, 13, 11, 1}};
  e.small = {{4, 40, 37, 1}, {3, 40, 37, 2}, {5, 29, 29, 0}};
  e.make = [](const Dims& d, DType, uint64_t seed) {
    const int64_t N = d[0], Vp = d[1], V = d[2];
    std::vector<float> targets = integers(N, seed_of(seed, 3), 0, V);
    if (N > 1) targets[1] = float(V - 1);  // the last real column
    OpCall c;
    c.args = {output("losses", {N}, ArgKind::f32),
              d[3] == 2   ? in_place("dlogits", 2)
              : d[3] == 1 ? output("dlogits", {N, Vp})
                          : absent("dlogits"),
              input("logits", {N, Vp}, normal(N * Vp, seed_of(seed, 2), 3.0f)),
              input("targets", {N}, targets, ArgKind::i32)};
    c.run = [V](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::crossentropy_forward_backward, cpu::crossentropy_forward_backward)(ctx, t[0], t[1], t[2], t[3],
                                                                                        int(V), kDloss);
      return 0.0;
    };
    return c;
  };
  // Losses directly; dlogits = (softmax - onehot(target)) * dloss, zero in the padded columns.
  e.math = [](const Dims& d, Values& v) {
    const int64_t N = d[0], Vp = d[1], V = d[2];
    v[0] = losses64(N, Vp, V, v[2], v[3]);
    if (d[3] == 0) return 0.0;
    v[1].assign(size_t(N * Vp), 0.0);
    for (int64_t n = 0; n < N; n++) {
      const double lse = v[0][size_t(n)] + v[2][size_t(n * Vp + int64_t(v[3][size_t(n)]))];
      for (int64_t i = 0; i < V; i++)
        v[1][size_t(n * Vp + i)] =
            (std::exp(v[2][size_t(n * Vp + i)] - lse) - (i == int64_t(v[3][size_t(n)]) ? 1.0 : 0.0)) * kDloss;
    }
    return 0.0;
  };
  // ...and dlogits is the gradient of dloss * sum(losses).
  e.gradient.loss = [](const Dims& d, const Values& v, const Values&) {
    double total = 0.0;
    for (double l : losses64(d[0], d[1], d[2], v[2], v[3])) total += l * kDloss;
    return total;
  };
  e.gradient.pairs = {{2, 1}};
  e.floor = e.bf16_floor = 1e-3;  // gradients far below the largest one are judged against 1e-3 of it
  return {e};
}

}  // namespace tessera::kernels
