// The four steps of the vocabulary-parallel cross-entropy, each on its own with the statistics the
// all-reduces would give it. dims: N Vl vocab_start valid (crossentropy_vp_loss: N;
// crossentropy_vp_backward adds in_place). How the steps compose over ranks is tested in
// tests/kernels/test_crossentropy_vocab_parallel.cpp.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/registry/families.h"

namespace tessera::kernels {

namespace {

constexpr float kDloss = 1.0f / 48;

struct Slice {
  int64_t N, Vl, start, valid;
  explicit Slice(const Dims& d) : N(d[0]), Vl(d[1]), start(d[2]), valid(d[3]) {}
};

// GPT-2's vocabulary over two ranks: rank 0 (odd width: scalar path), rank 1 with padding (16-byte
// path), a rank holding padding only; and small slices.
const std::vector<Dims> kCases = {{6, 25129, 0, 25129}, {6, 25136, 25136, 25121}, {6, 25136, 50272, 0}, {5, 13, 13, 9}};
const std::vector<Dims> kSmall = {{4, 9, 0, 9}, {4, 9, 9, 5}, {3, 8, 16, 0}};

// Targets on the slice's edges and on both sides of it.
std::vector<float> targets_for(const Slice& s, uint64_t seed) {
  std::vector<float> t = integers(s.N, seed, 0, s.start + 2 * s.Vl);
  const float edges[] = {float(s.start), float(s.start + std::max<int64_t>(s.valid, 1) - 1), float(s.start + s.Vl),
                         0.0f};
  for (size_t i = 0; i < 4 && i < t.size(); ++i) t[i] = edges[i];
  return t;
}

// Padded columns hold a huge logit: it would dominate the max and the sums if a kernel read them.
std::vector<float> logits_for(const Slice& s, uint64_t seed) {
  std::vector<float> x = normal(s.N * s.Vl, seed, 3.0f);
  for (int64_t n = 0; n < s.N; n++)
    for (int64_t i = s.valid; i < s.Vl; i++) x[size_t(n * s.Vl + i)] = 1000.0f;
  return x;
}

// The row's own max over the valid columns, raised on odd rows as if another rank held a larger
// logit; a rank without valid columns gets its max from elsewhere.
std::vector<float> global_max_for(const Slice& s, const std::vector<float>& x) {
  std::vector<float> m(size_t(s.N));
  for (int64_t n = 0; n < s.N; n++) {
    const float* row = &x[size_t(n * s.Vl)];
    m[size_t(n)] = s.valid ? *std::max_element(row, row + s.valid) : 4.0f + float(n);
    if (n % 2) m[size_t(n)] += 0.75f;
  }
  return m;
}

bool local(double target, const Slice& s, int64_t* column) {
  *column = int64_t(target) - s.start;
  return *column >= 0 && *column < s.valid;
}

OpEntry vp_max() {
  OpEntry e;
  e.name = "crossentropy_vp_max";
  e.dims = "N Vl vocab_start valid";
  e.cases = kCases;
  e.small = kSmall;
  e.make = [](const Dims& d, DType, uint64_t seed) {
    const Slice s(d);
    OpCall c;
    c.args = {output("row_max", {s.N}, ArgKind::f32), input("logits", {s.N, s.Vl}, logits_for(s, seed_of(seed, 1)))};
    c.run = [s](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::crossentropy_vp_max, cpu::crossentropy_vp_max)(ctx, t[0], t[1], int(s.valid));
      return 0.0;
    };
    return c;
  };
  e.math = [](const Dims& d, Values& v) {
    const Slice s(d);
    v[0].assign(size_t(s.N), -std::numeric_limits<double>::infinity());
    for (int64_t n = 0; n < s.N; n++)
      for (int64_t i = 0; i < s.valid; i++) v[0][size_t(n)] = std::max(v[0][size_t(n)], v[1][size_t(n * s.Vl + i)]);
    return 0.0;
  };
  e.f32_tolerance = e.bf16_tolerance = 0.0;  // a max picks one element: exact
  return e;
}

OpEntry vp_sums() {
  OpEntry e;
  e.name = "crossentropy_vp_sums";
  e.dims = "N Vl vocab_start valid";
  e.cases = kCases;
  e.small = kSmall;
  e.make = [](const Dims& d, DType dtype, uint64_t seed) {
    const Slice s(d);
    std::vector<float> x = logits_for(s, seed_of(seed, 2));
    // The global max is taken from the values the op will see (bf16-rounded in a bf16 case).
    std::vector<float> seen = x;
    if (dtype == DType::bf16)
      for (float& f : seen) f = bf16_to_float(float_to_bf16(f));
    OpCall c;
    c.args = {output("sum_exp", {s.N}, ArgKind::f32), output("target_logit", {s.N}, ArgKind::f32),
              input("logits", {s.N, s.Vl}, x), input("row_max", {s.N}, global_max_for(s, seen), ArgKind::f32),
              input("targets", {s.N}, targets_for(s, seed_of(seed, 4)), ArgKind::i32)};
    c.run = [s](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::crossentropy_vp_sums, cpu::crossentropy_vp_sums)(ctx, t[0], t[1], t[2], t[3], t[4], int(s.start),
                                                                      int(s.valid));
      return 0.0;
    };
    return c;
  };
  e.math = [](const Dims& d, Values& v) {
    const Slice s(d);
    for (int64_t n = 0; n < s.N; n++) {
      double sum = 0.0;
      for (int64_t i = 0; i < s.valid; i++) sum += std::exp(v[2][size_t(n * s.Vl + i)] - v[3][size_t(n)]);
      int64_t column;
      v[0][size_t(n)] = sum;
      v[1][size_t(n)] = local(v[4][size_t(n)], s, &column) ? v[2][size_t(n * s.Vl + column)] : 0.0;
    }
    return 0.0;
  };
  return e;
}

OpEntry vp_loss() {
  OpEntry e;
  e.name = "crossentropy_vp_loss";
  e.dims = "N";
  e.cases = {{6}, {1037}};
  e.small = {{5}};
  e.dtypes = {DType::f32};  // statistics only: always f32
  e.make = [](const Dims& d, DType, uint64_t seed) {
    const int64_t N = d[0];
    OpCall c;
    // exp(x - max) summed over ~25k columns is ~1e3: totals in that range.
    c.args = {output("losses", {N}, ArgKind::f32),
              input("sum_exp", {N}, uniform(N, seed_of(seed, 1), 500.0f, 2000.0f), ArgKind::f32),
              input("target_logit", {N}, normal(N, seed_of(seed, 2), 3.0f), ArgKind::f32),
              input("row_max", {N}, normal(N, seed_of(seed, 3), 3.0f), ArgKind::f32)};
    c.run = [](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::crossentropy_vp_loss, cpu::crossentropy_vp_loss)(ctx, t[0], t[1], t[2], t[3]);
      return 0.0;
    };
    return c;
  };
  e.math = [](const Dims& d, Values& v) {
    for (int64_t n = 0; n < d[0]; n++) v[0][size_t(n)] = std::log(v[1][size_t(n)]) + v[3][size_t(n)] - v[2][size_t(n)];
    return 0.0;
  };
  return e;
}

OpEntry vp_backward() {
  OpEntry e;
  e.name = "crossentropy_vp_backward";
  e.dims = "N Vl vocab_start valid in_place";
  e.cases = {{6, 25129, 0, 25129, 0},
             {6, 25136, 25136, 25121, 0},
             {6, 25136, 25136, 25121, 1},
             {6, 25136, 50272, 0, 0},
             {5, 13, 13, 9, 1}};
  e.small = {{4, 9, 0, 9, 0}, {4, 9, 9, 5, 1}, {3, 8, 16, 0, 0}};
  e.make = [](const Dims& d, DType dtype, uint64_t seed) {
    const Slice s(d);
    std::vector<float> x = logits_for(s, seed_of(seed, 1)), seen = x;
    if (dtype == DType::bf16)
      for (float& f : seen) f = bf16_to_float(float_to_bf16(f));
    // Totals as if the other ranks added their share: this slice's own sum, and more.
    std::vector<float> row_max = global_max_for(s, seen), sum_exp(size_t(s.N));
    const std::vector<float> extra = uniform(s.N, seed_of(seed, 3), 0.5f, 2.0f);
    for (int64_t n = 0; n < s.N; n++) {
      double own = 0.0;
      for (int64_t i = 0; i < s.valid; i++) own += std::exp(double(seen[size_t(n * s.Vl + i)]) - row_max[size_t(n)]);
      sum_exp[size_t(n)] = float(own + extra[size_t(n)]);
    }
    OpCall c;
    c.args = {d[4] ? in_place("dlogits", 1) : output("dlogits", {s.N, s.Vl}), input("logits", {s.N, s.Vl}, x),
              input("row_max", {s.N}, row_max, ArgKind::f32), input("sum_exp", {s.N}, sum_exp, ArgKind::f32),
              input("targets", {s.N}, targets_for(s, seed_of(seed, 4)), ArgKind::i32)};
    c.run = [s](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::crossentropy_vp_backward, cpu::crossentropy_vp_backward)(ctx, t[0], t[1], t[2], t[3], t[4],
                                                                              int(s.start), int(s.valid), kDloss);
      return 0.0;
    };
    return c;
  };
  // dlogits = (exp(x - max) / sum_exp - onehot(target)) * dloss on the valid columns, 0 elsewhere.
  e.math = [](const Dims& d, Values& v) {
    const Slice s(d);
    v[0].assign(size_t(s.N * s.Vl), 0.0);
    for (int64_t n = 0; n < s.N; n++) {
      int64_t target;
      if (!local(v[4][size_t(n)], s, &target)) target = -1;
      for (int64_t i = 0; i < s.valid; i++)
        v[0][size_t(n * s.Vl + i)] =
            (std::exp(v[1][size_t(n * s.Vl + i)] - v[2][size_t(n)]) / v[3][size_t(n)] - (i == target ? 1.0 : 0.0)) *
            kDloss;
    }
    return 0.0;
  };
  e.floor = e.bf16_floor = 1e-4;  // gradients far below the largest one (dloss) are judged against 1e-4 of it
  return e;
}

}  // namespace

std::vector<OpEntry> crossentropy_vp_ops() { return {vp_max(), vp_sums(), vp_loss(), vp_backward()}; }

}  // namespace tessera::kernels
