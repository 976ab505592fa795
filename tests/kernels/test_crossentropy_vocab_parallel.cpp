// CPU vocabulary-parallel cross-entropy: 1 to 4 simulated tensor-parallel ranks, each holding a
// column slice of one global logits matrix, combined on the host as the all-reduces would (max,
// then sums in rank order). Losses and the concatenated dlogits are checked against the fused
// crossentropy_forward_backward on the whole matrix and against float64; padding, a rank holding
// only padding, in-place use and the argument checks are covered too.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"
#include "tessera/error.h"

using namespace tessera;

namespace {

constexpr int64_t kRows = 7;
constexpr int64_t kVocab = 50;
constexpr float kDloss = 0.375f;
// Padded logits hold this: it would dominate the max and the sums if a kernel read padding.
constexpr float kPaddingLogit = 1000.0f;
// Spread over every rank's slice for the layouts below, slice edges included (19 | 20).
const std::vector<int32_t> kTargets = {0, 49, 10, 19, 20, 33, 45};

int valid_columns(int64_t vocab_start, int64_t Vl, int64_t V) {
  return int(std::clamp<int64_t>(V - vocab_start, 0, Vl));
}

// A global (N,Vp) logits matrix: random real columns, kPaddingLogit in the padded ones.
std::vector<float> global_logits(int64_t Vp, uint64_t seed) {
  auto x = test::random_normal(size_t(kRows * Vp), seed, 2.0f);
  for (int64_t n = 0; n < kRows; n++)
    for (int64_t i = kVocab; i < Vp; i++) x[size_t(n * Vp + i)] = kPaddingLogit;
  return x;
}

// Columns [start, start + width) of each row of a (N,Vp) matrix, as (N,width).
std::vector<float> columns(const std::vector<float>& m, int64_t Vp, int64_t start, int64_t width) {
  std::vector<float> out(size_t(kRows * width));
  for (int64_t n = 0; n < kRows; n++)
    std::copy_n(m.begin() + n * Vp + start, width, out.begin() + n * width);
  return out;
}

struct VocabParallelRun {
  std::vector<float> losses;   // (N)
  std::vector<float> dlogits;  // (N, tp*Vl): the ranks' slices side by side
  // Each rank's own statistics, before the host combines them.
  std::vector<std::vector<float>> rank_max, rank_sum_exp, rank_target_logit;
};

// The four steps on tp simulated ranks with Vl columns each; all outputs poisoned first.
VocabParallelRun run_vocab_parallel(Context& ctx, const std::vector<float>& logits, int tp, int64_t Vl,
                                    bool in_place) {
  const int64_t N = kRows, Vp = tp * Vl;
  auto targets = test::upload_ints(ctx, kTargets, {N});
  std::vector<test::DeviceTensor> slices;
  for (int r = 0; r < tp; r++) slices.push_back(test::upload(ctx, columns(logits, Vp, r * Vl, Vl), {N, Vl}));
  VocabParallelRun run;

  // Step 1, then the max all-reduce.
  std::vector<float> global_max(size_t(N), -std::numeric_limits<float>::infinity());
  for (int r = 0; r < tp; r++) {
    auto row_max = test::poisoned(ctx, {N});
    ops::crossentropy_vp_max(ctx, row_max.tensor, slices[size_t(r)].tensor, valid_columns(r * Vl, Vl, kVocab));
    run.rank_max.push_back(test::download(ctx, row_max.tensor));
    const auto& mine = run.rank_max.back();
    for (int64_t n = 0; n < N; n++) global_max[size_t(n)] = std::max(global_max[size_t(n)], mine[size_t(n)]);
  }
  auto row_max = test::upload(ctx, global_max, {N});

  // Step 2, then the sum all-reduce (float, in rank order).
  std::vector<float> total_sum(size_t(N), 0.0f), total_target(size_t(N), 0.0f);
  for (int r = 0; r < tp; r++) {
    auto sum_exp = test::poisoned(ctx, {N});
    auto target_logit = test::poisoned(ctx, {N});
    ops::crossentropy_vp_sums(ctx, sum_exp.tensor, target_logit.tensor, slices[size_t(r)].tensor, row_max.tensor,
                              targets.tensor, int(r * Vl), valid_columns(r * Vl, Vl, kVocab));
    run.rank_sum_exp.push_back(test::download(ctx, sum_exp.tensor));
    run.rank_target_logit.push_back(test::download(ctx, target_logit.tensor));
    for (int64_t n = 0; n < N; n++) {
      total_sum[size_t(n)] += run.rank_sum_exp.back()[size_t(n)];
      total_target[size_t(n)] += run.rank_target_logit.back()[size_t(n)];
    }
  }
  auto sum_exp = test::upload(ctx, total_sum, {N});
  auto target_logit = test::upload(ctx, total_target, {N});

  // Step 3 (the same on every rank) and the backward on each slice.
  auto losses = test::poisoned(ctx, {N});
  ops::crossentropy_vp_loss(ctx, losses.tensor, sum_exp.tensor, target_logit.tensor, row_max.tensor);
  run.losses = test::download(ctx, losses.tensor);
  run.dlogits.assign(size_t(N * Vp), std::nanf(""));
  for (int r = 0; r < tp; r++) {
    auto separate = test::poisoned(ctx, {N, Vl});
    Tensor dlogits = in_place ? slices[size_t(r)].tensor : separate.tensor;
    ops::crossentropy_vp_backward(ctx, dlogits, slices[size_t(r)].tensor, row_max.tensor, sum_exp.tensor,
                                  targets.tensor, int(r * Vl), valid_columns(r * Vl, Vl, kVocab), kDloss);
    auto d = test::download(ctx, dlogits);
    for (int64_t n = 0; n < N; n++) std::copy_n(d.begin() + n * Vl, Vl, run.dlogits.begin() + n * Vp + r * Vl);
  }
  return run;
}

// Float64 -log softmax(row)[target] over the first kVocab columns of each row of (N,Vp).
std::vector<double> reference_losses(const std::vector<double>& x, int64_t Vp) {
  std::vector<double> losses(static_cast<size_t>(kRows));
  for (int64_t n = 0; n < kRows; n++) {
    const double* row = x.data() + n * Vp;
    const double maxval = *std::max_element(row, row + kVocab);
    double sum = 0.0;
    for (int64_t i = 0; i < kVocab; i++) sum += std::exp(row[i] - maxval);
    losses[size_t(n)] = maxval + std::log(sum) - row[kTargets[size_t(n)]];
  }
  return losses;
}

// Checks one layout (tp ranks of Vl columns) against the fused kernel and float64.
void check_layout(int tp, int64_t Vl, uint64_t seed) {
  CAPTURE(tp, Vl);
  Context& ctx = test::cpu_context();
  const int64_t N = kRows, Vp = tp * Vl;
  const auto logits = global_logits(Vp, seed);
  const auto run = run_vocab_parallel(ctx, logits, tp, Vl, false);

  // The fused kernel on the whole matrix.
  auto all = test::upload(ctx, logits, {N, Vp});
  auto targets = test::upload_ints(ctx, kTargets, {N});
  auto fused_losses = test::poisoned(ctx, {N});
  auto fused_dlogits = test::poisoned(ctx, {N, Vp});
  ops::crossentropy_forward_backward(ctx, fused_losses.tensor, fused_dlogits.tensor, all.tensor, targets.tensor,
                                     int(kVocab), kDloss);
  CHECK(test::max_relative_error(run.losses, test::download(ctx, fused_losses.tensor)) < 1e-5);
  CHECK(test::max_relative_error(run.dlogits, test::download(ctx, fused_dlogits.tensor), 1e-7) < 1e-5);

  // Float64: losses directly, dlogits as central differences of sum(losses) * dloss.
  std::vector<double> x(logits.begin(), logits.end());
  const auto ref = reference_losses(x, Vp);
  CHECK(test::max_relative_error(run.losses, {ref.begin(), ref.end()}) < 1e-5);
  auto scaled_total = [&] {
    double total = 0.0;
    for (double l : reference_losses(x, Vp)) total += l * kDloss;
    return total;
  };
  std::vector<float> expected(x.size(), 0.0f);
  for (int64_t n = 0; n < N; n++)
    for (int64_t i = 0; i < kVocab; i++) {
      const size_t k = size_t(n * Vp + i);
      expected[k] = float(test::finite_difference(scaled_total, x, k));
    }
  CHECK(test::max_relative_error(run.dlogits, expected) < 1e-4);

  bool padding_zero = true;
  for (int64_t n = 0; n < N; n++)
    for (int64_t i = kVocab; i < Vp; i++) padding_zero = padding_zero && run.dlogits[size_t(n * Vp + i)] == 0.0f;
  CHECK(padding_zero);

  // Each target is held by exactly one rank: the others report 0 for it.
  for (int64_t n = 0; n < N; n++) {
    const int owner = int(kTargets[size_t(n)] / Vl);
    for (int r = 0; r < tp; r++) {
      const float got = run.rank_target_logit[size_t(r)][size_t(n)];
      CHECK(got == (r == owner ? logits[size_t(n * Vp + kTargets[size_t(n)])] : 0.0f));
    }
  }
}

}  // namespace

TEST_CASE("crossentropy_vp: 1, 2 and 3 ranks match the fused kernel and float64, padding is zero",
          "[kernels][crossentropy_vp]") {
  // Vocabulary 50 padded to a multiple of tp*4: 52, 56, 60 columns.
  check_layout(1, 52, 301);
  check_layout(2, 28, 302);
  check_layout(3, 20, 303);
}

TEST_CASE("crossentropy_vp: a rank holding only padding contributes nothing", "[kernels][crossentropy_vp]") {
  // 4 ranks of 20 columns: valid = 20, 20, 10, 0.
  const int tp = 4;
  const int64_t Vl = 20;
  REQUIRE(valid_columns(3 * Vl, Vl, kVocab) == 0);
  check_layout(tp, Vl, 304);

  const auto run = run_vocab_parallel(test::cpu_context(), global_logits(tp * Vl, 304), tp, Vl, false);
  bool empty_rank_silent = true;
  for (int64_t n = 0; n < kRows; n++) {
    empty_rank_silent = empty_rank_silent && run.rank_max[3][size_t(n)] == -std::numeric_limits<float>::infinity() &&
                        run.rank_sum_exp[3][size_t(n)] == 0.0f && run.rank_target_logit[3][size_t(n)] == 0.0f;
    for (int64_t i = 3 * Vl; i < tp * Vl; i++)
      empty_rank_silent = empty_rank_silent && run.dlogits[size_t(n * tp * Vl + i)] == 0.0f;
  }
  CHECK(empty_rank_silent);
}

TEST_CASE("crossentropy_vp: forward steps leave the logits untouched and bad arguments are rejected",
          "[kernels][crossentropy_vp]") {
  Context& ctx = test::cpu_context();
  const int64_t N = kRows, Vl = 28;
  const auto host = global_logits(Vl, 306);
  auto logits = test::upload(ctx, host, {N, Vl});
  auto targets = test::upload_ints(ctx, kTargets, {N});
  auto row_max = test::poisoned(ctx, {N});
  auto sum_exp = test::poisoned(ctx, {N});
  auto target_logit = test::poisoned(ctx, {N});
  ops::crossentropy_vp_max(ctx, row_max.tensor, logits.tensor, int(Vl));
  ops::crossentropy_vp_sums(ctx, sum_exp.tensor, target_logit.tensor, logits.tensor, row_max.tensor, targets.tensor,
                            0, int(Vl));
  CHECK(test::max_abs_error(test::download(ctx, logits.tensor), host) == 0.0);

  CHECK_THROWS_AS(ops::crossentropy_vp_max(ctx, row_max.tensor, logits.tensor, int(Vl) + 1), Error);
  CHECK_THROWS_AS(ops::crossentropy_vp_max(ctx, row_max.tensor, logits.tensor, -1), Error);
  CHECK_THROWS_AS(ops::crossentropy_vp_max(ctx, row_max.tensor.reshape({1, N}), logits.tensor, int(Vl)), Error);
  CHECK_THROWS_AS(ops::crossentropy_vp_sums(ctx, sum_exp.tensor, target_logit.tensor, logits.tensor, row_max.tensor,
                                            targets.tensor, -1, int(Vl)),
                  Error);
  CHECK_THROWS_AS(ops::crossentropy_vp_sums(ctx, sum_exp.tensor, target_logit.tensor, logits.tensor, row_max.tensor,
                                            targets.tensor.flat_range(0, N - 1), 0, int(Vl)),
                  Error);
  CHECK_THROWS_AS(ops::crossentropy_vp_loss(ctx, sum_exp.tensor, targets.tensor, target_logit.tensor, row_max.tensor),
                  Error);
  auto short_dlogits = test::poisoned(ctx, {N, Vl - 1});
  CHECK_THROWS_AS(ops::crossentropy_vp_backward(ctx, short_dlogits.tensor, logits.tensor, row_max.tensor,
                                                sum_exp.tensor, targets.tensor, 0, int(Vl), 1.0f),
                  Error);
}
