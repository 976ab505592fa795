// embedding_forward / embedding_backward on the CPU against a float64 reference.
#include <algorithm>
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"

using namespace tessera;

namespace {

constexpr int64_t B = 2, T = 3, C = 5, V = 7, maxT = 4;

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }
std::vector<float> to_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

// out (B,T,C) = wte[tokens] + wpe[t], in float64.
std::vector<double> reference_forward(const std::vector<int32_t>& tokens, const std::vector<double>& wte,
                                      const std::vector<double>& wpe) {
  std::vector<double> out(size_t(B * T * C));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < C; ++c)
        out[size_t((b * T + t) * C + c)] = wte[size_t(tokens[size_t(b * T + t)] * C + c)] + wpe[size_t(t * C + c)];
  return out;
}

// Tokens with a repeat, so the backward must sum several positions into one row.
std::vector<int32_t> test_tokens() {
  std::vector<int32_t> tokens = test::random_ints(size_t(B * T), 21, 0, int32_t(V));
  tokens[4] = tokens[0];
  tokens[5] = tokens[0];
  return tokens;
}

}  // namespace

TEST_CASE("embedding: forward matches the float64 reference", "[kernels][embedding]") {
  Context& ctx = test::cpu_context();
  auto tokens = test_tokens();
  auto wte = test::random_uniform(size_t(V * C), 22);
  auto wpe = test::random_uniform(size_t(maxT * C), 23);
  auto tok_t = test::upload_ints(ctx, tokens, {B, T});
  auto wte_t = test::upload(ctx, wte, {V, C});
  auto wpe_t = test::upload(ctx, wpe, {maxT, C});
  auto out = test::poisoned(ctx, {B, T, C});
  ops::embedding_forward(ctx, out.tensor, tok_t.tensor, wte_t.tensor, wpe_t.tensor, 0);
  auto want = to_float(reference_forward(tokens, to_double(wte), to_double(wpe)));
  REQUIRE(test::max_relative_error(test::download(ctx, out.tensor), want) < 1e-6);
}

TEST_CASE("embedding: backward adds finite-difference gradients onto existing ones", "[kernels][embedding]") {
  Context& ctx = test::cpu_context();
  auto tokens = test_tokens();
  auto wte = to_double(test::random_uniform(size_t(V * C), 24));
  auto wpe = to_double(test::random_uniform(size_t(maxT * C), 25));
  auto dout = test::random_uniform(size_t(B * T * C), 26);
  auto dwte0 = test::random_uniform(size_t(V * C), 27);
  auto dwpe0 = test::random_uniform(size_t(maxT * C), 28);

  auto tok_t = test::upload_ints(ctx, tokens, {B, T});
  auto dout_t = test::upload(ctx, dout, {B, T, C});
  auto dwte_t = test::upload(ctx, dwte0, {V, C});
  auto dwpe_t = test::upload(ctx, dwpe0, {maxT, C});
  ops::embedding_backward(ctx, dwte_t.tensor, dwpe_t.tensor, dout_t.tensor, tok_t.tensor, 0);

  // loss = sum(out * dout) so that d loss / d out = dout.
  auto loss = [&] {
    auto out = reference_forward(tokens, wte, wpe);
    double s = 0.0;
    for (size_t i = 0; i < out.size(); ++i) s += out[i] * double(dout[i]);
    return s;
  };
  std::vector<float> want_wte(dwte0.size()), want_wpe(dwpe0.size());
  for (size_t i = 0; i < wte.size(); ++i) want_wte[i] = float(double(dwte0[i]) + test::finite_difference(loss, wte, i));
  for (size_t i = 0; i < wpe.size(); ++i) want_wpe[i] = float(double(dwpe0[i]) + test::finite_difference(loss, wpe, i));
  CHECK(test::max_relative_error(test::download(ctx, dwte_t.tensor), want_wte, 1e-2) < 1e-4);
  CHECK(test::max_relative_error(test::download(ctx, dwpe_t.tensor), want_wpe, 1e-2) < 1e-4);
}

TEST_CASE("embedding: backward is bitwise identical for 1 and 2 threads", "[kernels][embedding]") {
  const int64_t b = 4, t = 64, c = 200, v = 50;  // few rows: many repeated tokens
  auto tokens = test::random_ints(size_t(b * t), 29, 0, int32_t(v));
  auto dout = test::random_normal(size_t(b * t * c), 30);
  auto run = [&](Context& ctx) {
    auto tok_t = test::upload_ints(ctx, tokens, {b, t});
    auto dout_t = test::upload(ctx, dout, {b, t, c});
    auto dwte = test::upload(ctx, std::vector<float>(size_t(v * c), 0.5f), {v, c});
    auto dwpe = test::upload(ctx, std::vector<float>(size_t(t * c), 0.25f), {t, c});
    ops::embedding_backward(ctx, dwte.tensor, dwpe.tensor, dout_t.tensor, tok_t.tensor, 0);
    auto a = test::download(ctx, dwte.tensor);
    auto p = test::download(ctx, dwpe.tensor);
    a.insert(a.end(), p.begin(), p.end());
    return a;
  };
  std::vector<float> two = run(test::cpu_context());
  std::vector<float> one;
  test::with_one_thread([&](Context& single) { one = run(single); });
  REQUIRE(one.size() == two.size());
  for (size_t i = 0; i < one.size(); ++i) REQUIRE(one[i] == two[i]);
}

TEST_CASE("embedding: vocabulary shards sum to the whole table, forward and backward", "[kernels][embedding]") {
  Context& ctx = test::cpu_context();
  const int64_t B = 2, T = 5, C = 6, V = 11, maxT = 7;
  auto tokens = test::random_ints(size_t(B * T), 71, 0, int32_t(V));
  auto wte = test::random_uniform(size_t(V * C), 72);
  auto wpe = test::random_uniform(size_t(maxT * C), 73);
  auto dout = test::random_uniform(size_t(B * T * C), 74);
  auto tok = test::upload_ints(ctx, tokens, {B, T});

  // The whole table in one piece.
  auto full_out = test::poisoned(ctx, {B, T, C});
  auto wte_full = test::upload(ctx, wte, {V, C});
  auto wpe_t = test::upload(ctx, wpe, {maxT, C});
  ops::embedding_forward(ctx, full_out.tensor, tok.tensor, wte_full.tensor, wpe_t.tensor, 0);
  auto full_dwte = test::upload(ctx, std::vector<float>(size_t(V * C), 0.0f), {V, C});
  auto dout_t = test::upload(ctx, dout, {B, T, C});
  ops::embedding_backward(ctx, full_dwte.tensor, Tensor(), dout_t.tensor, tok.tensor, 0);

  // Three uneven shards [0,4) [4,8) [8,11); only the first adds positions.
  std::vector<float> summed(size_t(B * T * C), 0.0f), dwte_joined;
  for (int64_t start : {0, 4, 8}) {
    const int64_t rows = std::min<int64_t>(4, V - start);
    std::vector<float> shard(wte.begin() + start * C, wte.begin() + (start + rows) * C);
    auto wte_shard = test::upload(ctx, shard, {rows, C});
    auto out = test::poisoned(ctx, {B, T, C});
    ops::embedding_forward(ctx, out.tensor, tok.tensor, wte_shard.tensor, start == 0 ? wpe_t.tensor : Tensor(),
                           int(start));
    auto part = test::download(ctx, out.tensor);
    for (size_t i = 0; i < summed.size(); ++i) summed[i] += part[i];
    auto dshard = test::upload(ctx, std::vector<float>(size_t(rows * C), 0.0f), {rows, C});
    ops::embedding_backward(ctx, dshard.tensor, Tensor(), dout_t.tensor, tok.tensor, int(start));
    auto d = test::download(ctx, dshard.tensor);
    dwte_joined.insert(dwte_joined.end(), d.begin(), d.end());
  }
  CHECK(test::max_abs_error(summed, test::download(ctx, full_out.tensor)) == 0.0);
  CHECK(test::max_abs_error(dwte_joined, test::download(ctx, full_dwte.tensor)) == 0.0);
}
