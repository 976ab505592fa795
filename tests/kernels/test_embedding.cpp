// embedding_forward / embedding_backward on the CPU: vocabulary shards sum to the whole table (the
// ops against float64 and on every backend: src/kernels/registry/embedding.cpp).
#include <algorithm>
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"

using namespace tessera;

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
