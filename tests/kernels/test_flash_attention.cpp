// The fast CPU attention (flash_attention.h, what ops:: runs on the CPU) against the plain CPU
// reference it stands beside: the same outputs, stats and gradients within float rounding, over
// several query and key blocks (ragged ends, grouped and multi-query heads); its backward against
// float64 finite differences across blocks; bitwise repeatable and independent of the thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/flash_attention.h"
#include "kernels/ops.h"
#include "support/test_support.h"

using namespace tessera;

namespace {

struct Shape {
  int64_t B, T, NH, NKV, HS;
  int64_t C() const { return NH * HS; }
  int64_t row() const { return (NH + 2 * NKV) * HS; }
};

struct Run {
  std::vector<float> out, stats, dqkv;
};

// Forward then backward, through the fast path or the reference.
Run run(Context& ctx, const Shape& s, const std::vector<float>& qkv_host, const std::vector<float>& dout_host,
        bool fast) {
  auto qkv = test::upload(ctx, qkv_host, {s.B, s.T, s.row()});
  auto dout = test::upload(ctx, dout_host, {s.B, s.T, s.C()});
  auto out = test::poisoned(ctx, {s.B, s.T, s.C()});
  auto stats = test::poisoned(ctx, {s.B, s.NH, s.T});
  auto dqkv = test::poisoned(ctx, {s.B, s.T, s.row()});
  const int nh = int(s.NH), nkv = int(s.NKV);
  if (fast) {
    cpu::flash_attention_forward(ctx, out.tensor, stats.tensor, qkv.tensor, nh, nkv);
    cpu::flash_attention_backward(ctx, dqkv.tensor, dout.tensor, qkv.tensor, out.tensor, stats.tensor, nh, nkv);
  } else {
    cpu::attention_forward(ctx, out.tensor, stats.tensor, qkv.tensor, nh, nkv);
    cpu::attention_backward(ctx, dqkv.tensor, dout.tensor, qkv.tensor, out.tensor, stats.tensor, nh, nkv);
  }
  return {test::download(ctx, out.tensor), test::download(ctx, stats.tensor), test::download(ctx, dqkv.tensor)};
}

float largest(const std::vector<float>& v) {
  float m = 0.0f;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}

// Float64 causal attention out (B,T,NH*HS) from qkv, for finite differences.
std::vector<double> reference64(const Shape& s, const std::vector<double>& qkv) {
  const int64_t C = s.C(), R = s.row();
  std::vector<double> out(size_t(s.B * s.T * C), 0.0), w(size_t(s.T));
  const double scale = 1.0 / std::sqrt(double(s.HS));
  for (int64_t b = 0; b < s.B; b++)
    for (int64_t h = 0; h < s.NH; h++)
      for (int64_t t = 0; t < s.T; t++) {
        const int64_t k = C + (h / (s.NH / s.NKV)) * s.HS, v = k + s.NKV * s.HS;
        double maxval = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j <= t; j++) {
          double dot = 0.0;
          for (int64_t i = 0; i < s.HS; i++)
            dot += qkv[size_t((b * s.T + t) * R + h * s.HS + i)] * qkv[size_t((b * s.T + j) * R + k + i)];
          w[size_t(j)] = dot * scale;
          maxval = std::max(maxval, w[size_t(j)]);
        }
        for (int64_t j = 0; j <= t; j++) sum += std::exp(w[size_t(j)] - maxval);
        for (int64_t j = 0; j <= t; j++)
          for (int64_t i = 0; i < s.HS; i++)
            out[size_t((b * s.T + t) * C + h * s.HS + i)] +=
                std::exp(w[size_t(j)] - maxval) / sum * qkv[size_t((b * s.T + j) * R + v + i)];
      }
  return out;
}

}  // namespace

TEST_CASE("flash attention: outputs, stats and gradients match the plain reference", "[kernels][attention][flash]") {
  Context& ctx = test::cpu_context();
  // The tiny model's attention (4 query blocks), ragged ends with grouped heads, multi-query.
  for (Shape s : {Shape{2, 128, 4, 4, 32}, Shape{1, 70, 6, 2, 16}, Shape{2, 33, 3, 1, 8}, Shape{1, 65, 2, 2, 64}}) {
    CAPTURE(s.B, s.T, s.NH, s.NKV, s.HS);
    auto qkv = test::random_normal(size_t(s.B * s.T * s.row()), 71);
    auto dout = test::random_normal(size_t(s.B * s.T * s.C()), 72);
    Run fast = run(ctx, s, qkv, dout, true), plain = run(ctx, s, qkv, dout, false);
    // Both are float32 with different summation orders: each is about 2e-5 from float64 on these
    // peaked softmaxes (random normal q and k), so they agree to within the sum of the two.
    CHECK(test::max_relative_error(fast.out, plain.out, 1e-2) < 5e-5);
    CHECK(test::max_relative_error(fast.stats, plain.stats, 1e-2) < 1e-5);
    CHECK(test::max_relative_error(fast.dqkv, plain.dqkv, 1e-2 * largest(plain.dqkv)) < 5e-5);
  }
}

TEST_CASE("flash attention: backward matches float64 finite differences across blocks", "[kernels][attention][flash]") {
  Context& ctx = test::cpu_context();
  const Shape s{1, 70, 2, 1, 3};  // three key blocks, the last one ragged; two query heads per key head
  auto qkv_host = test::random_normal(size_t(s.B * s.T * s.row()), 73);
  auto dout_host = test::random_normal(size_t(s.B * s.T * s.C()), 74);
  Run fast = run(ctx, s, qkv_host, dout_host, true);
  std::vector<double> x(qkv_host.begin(), qkv_host.end());
  auto loss = [&] {
    auto out = reference64(s, x);
    double l = 0.0;
    for (size_t i = 0; i < out.size(); i++) l += out[i] * double(dout_host[i]);
    return l;
  };
  std::vector<float> expected(x.size());
  for (size_t i = 0; i < x.size(); i++) expected[i] = float(test::finite_difference(loss, x, i));
  CHECK(test::max_relative_error(fast.dqkv, expected, 1e-2) < 1e-4);
}

TEST_CASE("flash attention: bitwise repeatable and independent of the thread count", "[kernels][attention][flash]") {
  const Shape s{3, 90, 4, 2, 16};
  auto qkv = test::random_normal(size_t(s.B * s.T * s.row()), 75);
  auto dout = test::random_normal(size_t(s.B * s.T * s.C()), 76);
  Run two = run(test::cpu_context(), s, qkv, dout, true), again = run(test::cpu_context(), s, qkv, dout, true);
  Run one;
  test::with_one_thread([&](Context& single) { one = run(single, s, qkv, dout, true); });
  for (auto [a, b] : {std::pair{&two.out, &again.out}, {&two.stats, &again.stats}, {&two.dqkv, &again.dqkv},
                      {&two.out, &one.out}, {&two.stats, &one.stats}, {&two.dqkv, &one.dqkv}})
    CHECK(test::bitwise_equal(*a, *b));
}
