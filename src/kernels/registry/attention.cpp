// attention_forward / attention_backward. dims: B T NH NKV HS.
#include <algorithm>
#include <cmath>

#include "kernels/registry/families.h"

namespace tessera::kernels {

namespace {

struct Heads {
  int64_t B, T, NH, NKV, HS;
  explicit Heads(const Dims& d) : B(d[0]), T(d[1]), NH(d[2]), NKV(d[3]), HS(d[4]) {}
  int64_t C() const { return NH * HS; }                // out channels
  int64_t row() const { return (NH + 2 * NKV) * HS; }  // qkv channels
};

// Float64 causal attention: out (B,T,NH*HS) and lse (B,NH,T) from qkv (B,T,(NH+2*NKV)*HS), query
// head h reading key/value head h / (NH/NKV).
void attention64(const Heads& s, const std::vector<double>& qkv, std::vector<double>& out, std::vector<double>& lse) {
  const int64_t C = s.C(), R = s.row(), group = s.NH / s.NKV;
  out.assign(size_t(s.B * s.T * C), 0.0);
  lse.assign(size_t(s.B * s.NH * s.T), 0.0);
  const double scale = 1.0 / std::sqrt(double(s.HS));
  std::vector<double> w(size_t(s.T));
  for (int64_t b = 0; b < s.B; b++)
    for (int64_t h = 0; h < s.NH; h++) {
      const int64_t k = C + (h / group) * s.HS, v = k + s.NKV * s.HS;
      for (int64_t t = 0; t < s.T; t++) {
        const double* q = &qkv[size_t((b * s.T + t) * R + h * s.HS)];
        double maxval = -INFINITY;
        for (int64_t j = 0; j <= t; j++) {
          const double* key = &qkv[size_t((b * s.T + j) * R + k)];
          double d = 0.0;
          for (int64_t i = 0; i < s.HS; i++) d += q[i] * key[i];
          w[size_t(j)] = d * scale;
          maxval = std::max(maxval, w[size_t(j)]);
        }
        double sum = 0.0;
        for (int64_t j = 0; j <= t; j++) sum += std::exp(w[size_t(j)] - maxval);
        double* o = &out[size_t((b * s.T + t) * C + h * s.HS)];
        for (int64_t j = 0; j <= t; j++) {
          const double p = std::exp(w[size_t(j)] - maxval) / sum;
          const double* value = &qkv[size_t((b * s.T + j) * R + v)];
          for (int64_t i = 0; i < s.HS; i++) o[i] += p * value[i];
        }
        lse[size_t((b * s.NH + h) * s.T + t)] = maxval + std::log(sum);
      }
    }
}

// Multi-head, long, one token, head sizes the bf16 cuDNN path takes (multiples of 8) and does not
// (20), grouped-query and multi-query.
const std::vector<Dims> kCases = {{2, 37, 3, 3, 64}, {1, 1024, 2, 2, 64}, {3, 1, 2, 2, 16}, {2, 17, 2, 2, 20},
                                  {2, 45, 8, 2, 64}, {1, 33, 4, 1, 32},   {2, 9, 6, 3, 20}};
const std::vector<Dims> kSmall = {{2, 5, 2, 2, 3}, {1, 7, 1, 1, 8}, {2, 6, 4, 2, 3}, {1, 5, 3, 1, 4}};

OpEntry forward() {
  OpEntry e;
  e.name = "attention_forward";
  e.dims = "B T NH NKV HS";
  e.cases = kCases;
  e.small = kSmall;
  e.make = [](const Dims& d, DType, uint64_t seed) {
    const Heads s(d);
    OpCall c;
    c.args = {output("out", {s.B, s.T, s.C()}), output("stats", {s.B, s.NH, s.T}, ArgKind::f32),
              input("qkv", {s.B, s.T, s.row()}, normal(s.B * s.T * s.row(), seed_of(seed, 2)))};
    c.run = [s](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::attention_forward, cpu::attention_forward)(ctx, t[0], t[1], t[2], int(s.NH), int(s.NKV));
      return 0.0;
    };
    return c;
  };
  e.math = [](const Dims& d, Values& v) {
    attention64(Heads(d), v[2], v[0], v[1]);
    return 0.0;
  };
  e.math_tolerance = 1e-4;  // float32 softmax sums
  e.bf16_floor = 1.0;       // bf16 outputs: errors judged against the largest value
  return e;
}

OpEntry backward() {
  OpEntry e;
  e.name = "attention_backward";
  e.dims = "B T NH NKV HS";
  e.cases = kCases;
  e.small = kSmall;
  e.make = [](const Dims& d, DType, uint64_t seed) {
    const Heads s(d);
    OpCall c;
    c.args = {output("dqkv", {s.B, s.T, s.row()}),
              input("dout", {s.B, s.T, s.C()}, normal(s.B * s.T * s.C(), seed_of(seed, 1))),
              input("qkv", {s.B, s.T, s.row()}, normal(s.B * s.T * s.row(), seed_of(seed, 2))),
              derived("out", {s.B, s.T, s.C()}), derived("stats", {s.B, s.NH, s.T}, ArgKind::f32)};
    c.prepare = [s](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::attention_forward, cpu::attention_forward)(ctx, t[3], t[4], t[2], int(s.NH), int(s.NKV));
      return 0.0;
    };
    c.run = [s](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::attention_backward, cpu::attention_backward)(ctx, t[0], t[1], t[2], t[3], t[4], int(s.NH),
                                                                  int(s.NKV));
      return 0.0;
    };
    return c;
  };
  e.gradient.loss = [](const Dims& d, const Values& v, const Values&) {
    std::vector<double> out, lse;
    attention64(Heads(d), v[2], out, lse);
    return dot(out, v[1]);
  };
  e.gradient.pairs = {{2, 0}};  // d/dqkv -> dqkv
  e.bf16_floor = 1.0;
  // The first query's dq is exactly 0 in the reference by cancellation (its one probability is 1,
  // dP - D = 0); the fast CPU kernel sums in another order and leaves rounding noise there, judged
  // against the floor like any other small gradient.
  e.zeros_exact = false;
  return e;
}

}  // namespace

std::vector<OpEntry> attention_ops() { return {forward(), backward()}; }

}  // namespace tessera::kernels
