// CPU attention (multi-head, grouped-query and multi-query): forward and logsumexp stats against a
// float64 reference, backward against float64 central finite differences of that reference,
// grouped heads equal to multi-head attention on repeated key/value heads, causality, run-to-run
// determinism, and the boundary's head-count checks.
#include <cmath>
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"

using namespace tessera;

namespace {

// NKV key/value heads, each shared by NH/NKV query heads.
struct Shape {
  int64_t B, T, NH, NKV, HS;
  int64_t C() const { return NH * HS; }                // out channels
  int64_t row() const { return (NH + 2 * NKV) * HS; }  // qkv channels
  int64_t qkv_numel() const { return B * T * row(); }
};

// Float64 causal attention: out (B,T,C), lse (B,NH,T) from qkv (B,T,(NH+2*NKV)*HS); query head h
// reads key/value head h / (NH/NKV).
void reference_forward(const Shape& s, const std::vector<double>& qkv, std::vector<double>& out,
                       std::vector<double>& lse) {
  const int64_t C = s.C(), R = s.row();
  out.assign(size_t(s.B * s.T * C), 0.0);
  lse.assign(size_t(s.B * s.NH * s.T), 0.0);
  const double scale = 1.0 / std::sqrt(double(s.HS));
  std::vector<double> w(size_t(s.T));
  for (int64_t b = 0; b < s.B; b++)
    for (int64_t h = 0; h < s.NH; h++)
      for (int64_t t = 0; t < s.T; t++) {
        const int64_t k = C + (h / (s.NH / s.NKV)) * s.HS, v = k + s.NKV * s.HS;
        double maxval = -INFINITY;
        for (int64_t j = 0; j <= t; j++) {
          double dot = 0.0;
          for (int64_t i = 0; i < s.HS; i++)
            dot += qkv[size_t((b * s.T + t) * R + h * s.HS + i)] * qkv[size_t((b * s.T + j) * R + k + i)];
          w[size_t(j)] = dot * scale;
          maxval = std::max(maxval, w[size_t(j)]);
        }
        double sum = 0.0;
        for (int64_t j = 0; j <= t; j++) sum += std::exp(w[size_t(j)] - maxval);
        for (int64_t j = 0; j <= t; j++) {
          double p = std::exp(w[size_t(j)] - maxval) / sum;
          for (int64_t i = 0; i < s.HS; i++)
            out[size_t((b * s.T + t) * C + h * s.HS + i)] += p * qkv[size_t((b * s.T + j) * R + v + i)];
        }
        lse[size_t((b * s.NH + h) * s.T + t)] = maxval + std::log(sum);
      }
}

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }
std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

struct ForwardResult {
  test::DeviceTensor out, stats;
};

ForwardResult run_forward(Context& ctx, const Shape& s, const Tensor& qkv) {
  ForwardResult r{test::poisoned(ctx, {s.B, s.T, s.C()}), test::poisoned(ctx, {s.B, s.NH, s.T})};
  ops::attention_forward(ctx, r.out.tensor, r.stats.tensor, qkv, int(s.NH), int(s.NKV));
  return r;
}

}  // namespace

TEST_CASE("attention_forward: output and logsumexp stats match a float64 reference", "[kernels][attention]") {
  Context& ctx = test::cpu_context();
  for (Shape s : {Shape{2, 5, 2, 2, 3}, Shape{1, 37, 3, 3, 16}, Shape{2, 64, 2, 2, 64}, Shape{2, 19, 6, 2, 8},
                  Shape{1, 23, 4, 1, 16}}) {
    CAPTURE(s.B, s.T, s.NH, s.NKV, s.HS);
    auto host_qkv = test::random_normal(size_t(s.qkv_numel()), 11, 1.0f);
    auto qkv = test::upload(ctx, host_qkv, {s.B, s.T, s.row()});
    auto r = run_forward(ctx, s, qkv.tensor);
    std::vector<double> ref_out, ref_lse;
    reference_forward(s, to_double(host_qkv), ref_out, ref_lse);
    CHECK(test::max_relative_error(test::download(ctx, r.out.tensor), to_float(ref_out), 1e-2) < 1e-4);
    CHECK(test::max_relative_error(test::download(ctx, r.stats.tensor), to_float(ref_lse), 1e-2) < 1e-5);
  }
}

TEST_CASE("attention_forward: the first query's stats are its single scaled score", "[kernels][attention]") {
  // Query 0 sees only key 0: logsumexp of one score is the score itself, q0.k0 / sqrt(HS).
  Context& ctx = test::cpu_context();
  Shape s{1, 3, 1, 1, 4};
  auto host_qkv = test::random_uniform(size_t(s.qkv_numel()), 5);
  auto qkv = test::upload(ctx, host_qkv, {s.B, s.T, s.row()});
  auto r = run_forward(ctx, s, qkv.tensor);
  double dot = 0.0;
  for (int i = 0; i < 4; i++) dot += double(host_qkv[size_t(i)]) * host_qkv[size_t(4 + i)];
  CHECK(test::download(ctx, r.stats.tensor)[0] == Approx(dot / 2.0).epsilon(1e-6));
  // ...and its output is v0.
  auto out = test::download(ctx, r.out.tensor);
  for (int i = 0; i < 4; i++) CHECK(out[size_t(i)] == Approx(host_qkv[size_t(8 + i)]).epsilon(1e-6));
}

TEST_CASE("attention_forward: changing a later token's k and v leaves earlier outputs unchanged",
          "[kernels][attention]") {
  Context& ctx = test::cpu_context();
  Shape s{2, 9, 4, 2, 4};
  const int64_t C = s.C(), R = s.row(), changed = 5;
  auto host_qkv = test::random_normal(size_t(s.qkv_numel()), 21);
  auto qkv = test::upload(ctx, host_qkv, {s.B, s.T, R});
  auto before = test::download(ctx, run_forward(ctx, s, qkv.tensor).out.tensor);
  for (int64_t b = 0; b < s.B; b++)
    for (int64_t c = C; c < R; c++) host_qkv[size_t((b * s.T + changed) * R + c)] += 0.75f;
  auto qkv2 = test::upload(ctx, host_qkv, {s.B, s.T, R});
  auto after = test::download(ctx, run_forward(ctx, s, qkv2.tensor).out.tensor);
  for (int64_t b = 0; b < s.B; b++)
    for (int64_t t = 0; t < s.T; t++) {
      bool same = true;
      for (int64_t c = 0; c < C; c++) same = same && before[size_t((b * s.T + t) * C + c)] == after[size_t((b * s.T + t) * C + c)];
      CAPTURE(b, t);
      CHECK(same == (t < changed));
    }
}

TEST_CASE("attention_backward: dqkv matches float64 finite differences", "[kernels][attention]") {
  Context& ctx = test::cpu_context();
  // Multi-head, grouped (2 query heads per key/value head) and multi-query (one key/value head).
  for (Shape s : {Shape{2, 5, 2, 2, 3}, Shape{1, 7, 1, 1, 8}, Shape{2, 6, 4, 2, 3}, Shape{1, 5, 3, 1, 4}}) {
    CAPTURE(s.B, s.T, s.NH, s.NKV, s.HS);
    const int64_t C = s.C();
    auto host_qkv = test::random_normal(size_t(s.qkv_numel()), 31);
    auto host_dout = test::random_normal(size_t(s.B * s.T * C), 32);
    auto qkv = test::upload(ctx, host_qkv, {s.B, s.T, s.row()});
    auto dout = test::upload(ctx, host_dout, {s.B, s.T, C});
    auto fwd = run_forward(ctx, s, qkv.tensor);
    auto dqkv = test::poisoned(ctx, {s.B, s.T, s.row()});
    ops::attention_backward(ctx, dqkv.tensor, dout.tensor, qkv.tensor, fwd.out.tensor, fwd.stats.tensor, int(s.NH),
                            int(s.NKV));
    auto got = test::download(ctx, dqkv.tensor);

    // L = sum(out * dout): dL/dqkv is exactly what attention_backward returns.
    std::vector<double> x = to_double(host_qkv), out, lse;
    auto loss = [&] {
      reference_forward(s, x, out, lse);
      double l = 0.0;
      for (size_t i = 0; i < out.size(); i++) l += out[i] * double(host_dout[i]);
      return l;
    };
    std::vector<float> expected(x.size());
    for (size_t i = 0; i < x.size(); i++) expected[i] = float(test::finite_difference(loss, x, i));
    CHECK(test::max_relative_error(got, expected, 1e-2) < 1e-4);
  }
}

TEST_CASE("attention_backward: two runs are bitwise identical", "[kernels][attention]") {
  Context& ctx = test::cpu_context();
  Shape s{2, 33, 4, 2, 16};
  const int64_t C = s.C();
  auto qkv = test::upload(ctx, test::random_normal(size_t(s.qkv_numel()), 41), {s.B, s.T, s.row()});
  auto dout = test::upload(ctx, test::random_normal(size_t(s.B * s.T * C), 42), {s.B, s.T, C});
  auto fwd = run_forward(ctx, s, qkv.tensor);
  std::vector<float> runs[2];
  for (auto& run : runs) {
    auto dqkv = test::poisoned(ctx, {s.B, s.T, s.row()});
    ops::attention_backward(ctx, dqkv.tensor, dout.tensor, qkv.tensor, fwd.out.tensor, fwd.stats.tensor, int(s.NH),
                            int(s.NKV));
    run = test::download(ctx, dqkv.tensor);
  }
  CHECK(test::max_abs_error(runs[0], runs[1]) == 0.0);
}

TEST_CASE("attention: grouped heads equal multi-head attention with each key/value head repeated",
          "[kernels][attention]") {
  // Repeating key/value head g for each of its NH/NKV query heads gives a multi-head qkv with the
  // same outputs; the grouped dk, dv are the sums of the repeated heads' gradients.
  Context& ctx = test::cpu_context();
  const Shape gqa{2, 11, 6, 2, 8}, mha{2, 11, 6, 6, 8};
  const int64_t G = gqa.NH / gqa.NKV, HS = gqa.HS, C = gqa.C();
  auto host_qkv = test::random_normal(size_t(gqa.qkv_numel()), 51);
  auto host_dout = test::random_normal(size_t(gqa.B * gqa.T * C), 52);
  std::vector<float> repeated(size_t(mha.qkv_numel()));
  for (int64_t bt = 0; bt < gqa.B * gqa.T; bt++) {
    const float* src = &host_qkv[size_t(bt * gqa.row())];
    float* dst = &repeated[size_t(bt * mha.row())];
    for (int64_t i = 0; i < C; i++) dst[i] = src[i];
    for (int64_t h = 0; h < gqa.NH; h++)
      for (int64_t i = 0; i < HS; i++) {
        dst[C + h * HS + i] = src[C + (h / G) * HS + i];
        dst[2 * C + h * HS + i] = src[C + gqa.NKV * HS + (h / G) * HS + i];
      }
  }
  auto run = [&](const Shape& s, const std::vector<float>& qkv_host) {
    auto qkv = test::upload(ctx, qkv_host, {s.B, s.T, s.row()});
    auto dout = test::upload(ctx, host_dout, {s.B, s.T, C});
    auto fwd = run_forward(ctx, s, qkv.tensor);
    auto dqkv = test::poisoned(ctx, {s.B, s.T, s.row()});
    ops::attention_backward(ctx, dqkv.tensor, dout.tensor, qkv.tensor, fwd.out.tensor, fwd.stats.tensor, int(s.NH),
                            int(s.NKV));
    return std::vector<std::vector<float>>{test::download(ctx, fwd.out.tensor), test::download(ctx, fwd.stats.tensor),
                                           test::download(ctx, dqkv.tensor)};
  };
  auto grouped = run(gqa, host_qkv), multi = run(mha, repeated);
  CHECK(test::max_relative_error(grouped[0], multi[0]) < 1e-6);
  CHECK(test::max_relative_error(grouped[1], multi[1]) < 1e-6);
  std::vector<float> summed(grouped[2].size(), 0.0f);
  for (int64_t bt = 0; bt < gqa.B * gqa.T; bt++) {
    const float* src = &multi[2][size_t(bt * mha.row())];
    float* dst = &summed[size_t(bt * gqa.row())];
    for (int64_t i = 0; i < C; i++) dst[i] = src[i];
    for (int64_t h = 0; h < gqa.NH; h++)
      for (int64_t i = 0; i < HS; i++) {
        dst[C + (h / G) * HS + i] += src[C + h * HS + i];
        dst[C + gqa.NKV * HS + (h / G) * HS + i] += src[2 * C + h * HS + i];
      }
  }
  CHECK(test::max_relative_error(grouped[2], summed, 1e-2) < 1e-5);
}

TEST_CASE("attention: the boundary rejects head counts that do not divide", "[kernels][attention]") {
  Context& ctx = test::cpu_context();
  auto qkv = test::upload(ctx, test::random_normal(2 * 3 * 40, 61), {2, 3, 40});  // (6+2*2)*4
  auto out = test::poisoned(ctx, {2, 3, 24});
  auto stats = test::poisoned(ctx, {2, 6, 3});
  ops::attention_forward(ctx, out.tensor, stats.tensor, qkv.tensor, 6, 2);  // accepted: HS 4
  CHECK_THROWS_WITH(ops::attention_forward(ctx, out.tensor, stats.tensor, qkv.tensor, 6, 4),
                    Catch::Contains("must be positive and divide n_head"));
  CHECK_THROWS_WITH(ops::attention_forward(ctx, out.tensor, stats.tensor, qkv.tensor, 6, 0),
                    Catch::Contains("must be positive and divide n_head"));
  CHECK_THROWS_WITH(ops::attention_forward(ctx, out.tensor, stats.tensor, qkv.tensor, 6, 3),
                    Catch::Contains("(B,T,(NH+2*NKV)*HS)"));  // 40 is not a multiple of 12
  CHECK_THROWS_WITH(ops::attention_forward(ctx, out.tensor, stats.tensor, qkv.tensor, 2, 1),
                    Catch::Contains("out has shape"));  // HS 10: out must be (2,3,20)
}
