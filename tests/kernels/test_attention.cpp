// CPU attention's special cases: the first query's stats and output, causality, grouped heads equal
// to multi-head attention on repeated key/value heads, and the boundary's head-count checks (the ops
// against float64, finite differences and every backend: src/kernels/registry/attention.cpp).
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

struct ForwardResult {
  test::DeviceTensor out, stats;
};

ForwardResult run_forward(Context& ctx, const Shape& s, const Tensor& qkv) {
  ForwardResult r{test::poisoned(ctx, {s.B, s.T, s.C()}), test::poisoned(ctx, {s.B, s.NH, s.T})};
  ops::attention_forward(ctx, r.out.tensor, r.stats.tensor, qkv, int(s.NH), int(s.NKV));
  return r;
}

}  // namespace

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
