// rope_forward / rope_backward. dims: B T NH NKV HS llama3 offset in_place (llama3 0: rope_theta
// 10000, no scaling; 1: Llama 3.1's rope_theta 500000 and frequency scaling; offset: the position
// of the first token).
#include <cmath>

#include "kernels/registry/families.h"

namespace tessera::kernels {

namespace {

struct Sizes {
  int64_t B, T, NH, NKV, HS;
  RopeParams rope;
  int offset;
  bool in_place;
  explicit Sizes(const Dims& d)
      : B(d[0]), T(d[1]), NH(d[2]), NKV(d[3]), HS(d[4]), offset(int(d[6])), in_place(d[7] != 0) {
    if (d[5]) rope = RopeParams{500000.0, 8.0, 1.0, 4.0, 8192};
  }
  int64_t row() const { return (NH + 2 * NKV) * HS; }
  int64_t numel() const { return B * T * row(); }
};

// The rotation by sign * angle of the q and k heads of x (B,T,(NH+2*NKV)*HS), v copied, in float64
// from the same float32 angles the kernels use.
std::vector<double> rope64(const Sizes& s, const std::vector<double>& x, double sign) {
  const std::vector<float> inv_freq = rope_inverse_frequencies(int(s.HS), s.rope);
  const int64_t R = s.row(), half = s.HS / 2;
  std::vector<double> y = x;
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t t = 0; t < s.T; ++t)
      for (int64_t h = 0; h < s.NH + s.NKV; ++h)
        for (int64_t i = 0; i < half; ++i) {
          const double angle = double(float(s.offset + t) * inv_freq[size_t(i)]);
          const double c = std::cos(angle), sn = sign * std::sin(angle);
          const size_t lo = size_t((b * s.T + t) * R + h * s.HS + i), hi = lo + size_t(half);
          y[lo] = x[lo] * c - x[hi] * sn;
          y[hi] = x[hi] * c + x[lo] * sn;
        }
  return y;
}

// Head sizes of LLaMA (64, 128) and small ones, grouped, multi-query and multi-head; positions from
// 0 and from around Llama 3.1's original context; in place.
const std::vector<Dims> kCases = {{2, 37, 4, 2, 64, 0, 0, 0}, {2, 37, 4, 2, 64, 1, 8190, 0}, {3, 1, 2, 2, 128, 1, 0, 0},
                                  {1, 5, 3, 1, 16, 1, 0, 1},  {2, 9, 6, 3, 8, 0, 100, 1},    {1, 17, 2, 2, 6, 1, 3, 0}};
const std::vector<Dims> kSmall = {{1, 3, 2, 1, 4, 0, 0, 0}, {2, 3, 2, 2, 8, 1, 8190, 0}, {1, 4, 4, 2, 6, 1, 3, 1}};

OpEntry forward() {
  OpEntry e;
  e.name = "rope_forward";
  e.dims = "B T NH NKV HS llama3 offset in_place";
  e.cases = kCases;
  e.small = kSmall;
  e.make = [](const Dims& d, DType, uint64_t seed) {
    const Sizes s(d);
    OpCall c;
    c.args = {s.in_place ? in_place("out", 1) : output("out", {s.B, s.T, s.row()}),
              input("qkv", {s.B, s.T, s.row()}, normal(s.numel(), seed_of(seed, 1)))};
    c.run = [s](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::rope_forward, cpu::rope_forward)(ctx, t[0], t[1], int(s.NH), int(s.NKV), s.rope, s.offset);
      return 0.0;
    };
    return c;
  };
  e.math = [](const Dims& d, Values& v) {
    v[0] = rope64(Sizes(d), v[1], 1.0);
    return 0.0;
  };
  return e;
}

OpEntry backward() {
  OpEntry e;
  e.name = "rope_backward";
  e.dims = "B T NH NKV HS llama3 offset in_place";
  e.cases = kCases;
  e.small = kSmall;
  e.make = [](const Dims& d, DType, uint64_t seed) {
    const Sizes s(d);
    OpCall c;
    c.args = {s.in_place ? in_place("dqkv", 1) : output("dqkv", {s.B, s.T, s.row()}),
              input("dout", {s.B, s.T, s.row()}, normal(s.numel(), seed_of(seed, 1)))};
    c.run = [s](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::rope_backward, cpu::rope_backward)(ctx, t[0], t[1], int(s.NH), int(s.NKV), s.rope, s.offset);
      return 0.0;
    };
    c.loss_variables = {input("qkv", {s.B, s.T, s.row()}, normal(s.numel(), seed_of(seed, 2)))};
    return c;
  };
  e.gradient.loss = [](const Dims& d, const Values& v, const Values& vars) {
    return dot(rope64(Sizes(d), vars[0], 1.0), v[1]);
  };
  e.gradient.pairs = {{2, 0}};  // qkv -> dqkv
  return e;
}

}  // namespace

std::vector<OpEntry> rope_ops() { return {forward(), backward()}; }

}  // namespace tessera::kernels
