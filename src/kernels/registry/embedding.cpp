// embedding_forward / embedding_backward. dims: B T C Vl maxT vocab_start (maxT 0: no position
// table; vocab_start > 0: a vocabulary-parallel shard, some tokens outside it).
#include "kernels/registry/families.h"

namespace tessera::kernels {

namespace {

struct Sizes {
  int64_t B, T, C, Vl, maxT, start;
  explicit Sizes(const Dims& d) : B(d[0]), T(d[1]), C(d[2]), Vl(d[3]), maxT(d[4]), start(d[5]) {}
};

// Tokens with a repeat (the backward sums several positions into one row), the shard's first and
// last rows, and in a shard, tokens of the shards before and after it.
std::vector<float> tokens_for(const Sizes& s, uint64_t seed) {
  const int64_t n = s.B * s.T;
  std::vector<float> tok = integers(n, seed, 0, s.start > 0 ? s.start + 2 * s.Vl : s.Vl);
  for (int64_t i = 4; i < n; i += 5) tok[size_t(i)] = tok[0];
  if (n > 1) tok[1] = float(s.start + s.Vl - 1);
  if (n > 2) tok[2] = float(s.start);
  return tok;
}

// out (B,T,C) = wte[token - start] (0 outside the shard) + wpe[t] (if any), in float64.
std::vector<double> embedding64(const Sizes& s, const std::vector<double>& tokens, const std::vector<double>& wte,
                                const std::vector<double>& wpe) {
  std::vector<double> out(size_t(s.B * s.T * s.C), 0.0);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t t = 0; t < s.T; ++t) {
      const int64_t row = int64_t(tokens[size_t(b * s.T + t)]) - s.start;
      for (int64_t c = 0; c < s.C; ++c) {
        double x = row >= 0 && row < s.Vl ? wte[size_t(row * s.C + c)] : 0.0;
        if (!wpe.empty()) x += wpe[size_t(t * s.C + c)];
        out[size_t((b * s.T + t) * s.C + c)] = x;
      }
    }
  return out;
}

// The GPT-2 vocabulary (16-byte path, odd rows), a second shard, an odd width (scalar path), and a
// shard without position table.
const std::vector<Dims> kCases = {
    {2, 37, 200, 50257, 64, 0}, {2, 37, 200, 25136, 64, 25136}, {3, 5, 7, 11, 8, 0}, {2, 9, 16, 13, 0, 13}};
const std::vector<Dims> kSmall = {{2, 3, 5, 7, 4, 0}, {2, 3, 4, 6, 0, 3}};

OpEntry forward() {
  OpEntry e;
  e.name = "embedding_forward";
  e.dims = "B T C Vl maxT vocab_start";
  e.cases = kCases;
  e.small = kSmall;
  e.make = [](const Dims& d, DType, uint64_t seed) {
    const Sizes s(d);
    OpCall c;
    c.args = {output("out", {s.B, s.T, s.C}),
              input("tokens", {s.B, s.T}, tokens_for(s, seed_of(seed, 1)), ArgKind::i32),
              input("wte", {s.Vl, s.C}, uniform(s.Vl * s.C, seed_of(seed, 2))),
              s.maxT ? input("wpe", {s.maxT, s.C}, uniform(s.maxT * s.C, seed_of(seed, 3))) : absent("wpe")};
    c.run = [s](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::embedding_forward, cpu::embedding_forward)(ctx, t[0], t[1], t[2], t[3], int(s.start));
      return 0.0;
    };
    return c;
  };
  e.math = [](const Dims& d, Values& v) {
    v[0] = embedding64(Sizes(d), v[1], v[2], v[3]);
    return 0.0;
  };
  return e;
}

OpEntry backward() {
  OpEntry e;
  e.name = "embedding_backward";
  e.dims = "B T C Vl maxT vocab_start";
  e.cases = kCases;
  e.small = kSmall;
  e.make = [](const Dims& d, DType, uint64_t seed) {
    const Sizes s(d);
    OpCall c;
    c.args = {accumulate("dwte", {s.Vl, s.C}, uniform(s.Vl * s.C, seed_of(seed, 0))),
              s.maxT ? accumulate("dwpe", {s.maxT, s.C}, uniform(s.maxT * s.C, seed_of(seed, 1))) : absent("dwpe"),
              input("dout", {s.B, s.T, s.C}, uniform(s.B * s.T * s.C, seed_of(seed, 2))),
              input("tokens", {s.B, s.T}, tokens_for(s, seed_of(seed, 3)), ArgKind::i32)};
    c.run = [s](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::embedding_backward, cpu::embedding_backward)(ctx, t[0], t[1], t[2], t[3], int(s.start));
      return 0.0;
    };
    c.loss_variables = {input("wte", {s.Vl, s.C}, uniform(s.Vl * s.C, seed_of(seed, 4)))};
    if (s.maxT) c.loss_variables.push_back(input("wpe", {s.maxT, s.C}, uniform(s.maxT * s.C, seed_of(seed, 5))));
    return c;
  };
  e.gradient.loss = [](const Dims& d, const Values& v, const Values& vars) {
    const std::vector<double> none;
    return dot(embedding64(Sizes(d), v[3], vars[0], vars.size() > 1 ? vars[1] : none), v[2]);
  };
  e.gradient.pairs = {{4, 0}, {5, 1}};  // wte -> dwte, wpe -> dwpe (when there is one)
  return e;
}

}  // namespace

std::vector<OpEntry> embedding_ops() { return {forward(), backward()}; }

}  // namespace tessera::kernels
