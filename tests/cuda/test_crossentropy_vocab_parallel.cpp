// CUDA vocabulary-parallel cross-entropy against the CPU reference: each of the four steps fed the
// same inputs on both backends, float32 and bf16, slices of the 50257-token vocabulary split over
// two ranks (Vl = 25129, odd: the scalar path; Vl = 25136: the 16-byte path) with valid < Vl on
// the last slice and a padding-only slice, poisoned outputs, in place, bitwise reproducible; and
// the composed steps on the GPU against the fused GPU kernel.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"
#include "tessera/dtype.h"

using namespace tessera;
using test::bitwise_equal;
using test::round_to_bf16;

namespace {

constexpr int64_t kVocab = 50257;
constexpr int64_t kRows = 6;
constexpr float kDloss = 1.0f / 48;

// One rank's slice: global columns [vocab_start, vocab_start + Vl), the first `valid` real.
struct Slice {
  int64_t Vl;
  int vocab_start;
  int valid;
};

Slice slice_of(int rank, int64_t Vl) {
  const int64_t start = rank * Vl;
  return {Vl, int(start), int(std::clamp<int64_t>(kVocab - start, 0, Vl))};
}

// Targets on both ranks' edges: rank 1's first column, the last real token, rank 0's last
// column, token 0, and one random token inside each rank.
std::vector<int32_t> targets_for(int64_t Vl) {
  return {int32_t(Vl), int32_t(kVocab - 1), int32_t(Vl - 1), 0, 12345, 40000};
}

// Element-for-element equality (-inf equals -inf, NaN poison equals nothing).
bool identical(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++)
    if (!(a[i] == b[i])) return false;
  return true;
}

// Host inputs of every step; the combined statistics are given, not computed, so that each step
// is compared on its own.
struct StepInputs {
  std::vector<float> logits;  // (N,Vl)
  std::vector<int32_t> targets;
  std::vector<float> global_max, total_sum_exp, total_target_logit;  // (N) each
};

struct StepOutputs {
  std::vector<float> row_max, sum_exp, target_logit, losses, dlogits;
};

StepOutputs run_steps(Context& ctx, const StepInputs& in, Slice s, DType dtype, bool in_place) {
  const int64_t N = kRows;
  auto logits = test::upload(ctx, in.logits, {N, s.Vl}, dtype);
  auto targets = test::upload_ints(ctx, in.targets, {N});
  auto global_max = test::upload(ctx, in.global_max, {N});
  auto total_sum = test::upload(ctx, in.total_sum_exp, {N});
  auto total_target = test::upload(ctx, in.total_target_logit, {N});
  auto row_max = test::poisoned(ctx, {N});
  auto sum_exp = test::poisoned(ctx, {N});
  auto target_logit = test::poisoned(ctx, {N});
  auto losses = test::poisoned(ctx, {N});
  auto separate = test::poisoned(ctx, {N, s.Vl}, dtype);
  Tensor dlogits = in_place ? logits.tensor : separate.tensor;

  ops::crossentropy_vp_max(ctx, row_max.tensor, logits.tensor, s.valid);
  ops::crossentropy_vp_sums(ctx, sum_exp.tensor, target_logit.tensor, logits.tensor, global_max.tensor,
                            targets.tensor, s.vocab_start, s.valid);
  ops::crossentropy_vp_loss(ctx, losses.tensor, total_sum.tensor, total_target.tensor, global_max.tensor);
  ops::crossentropy_vp_backward(ctx, dlogits, logits.tensor, global_max.tensor, total_sum.tensor, targets.tensor,
                                s.vocab_start, s.valid, kDloss);
  return {test::download(ctx, row_max.tensor), test::download(ctx, sum_exp.tensor),
          test::download(ctx, target_logit.tensor), test::download(ctx, losses.tensor), test::download(ctx, dlogits)};
}

// Inputs for one slice: random logits, a global max at or above this slice's own (another rank
// may hold the row's largest logit), and totals as if the other rank added its share.
StepInputs inputs_for(Slice s, uint64_t seed) {
  StepInputs in;
  in.logits = test::random_normal(size_t(kRows * s.Vl), seed, 3.0f);
  in.targets = targets_for(s.Vl);
  StepOutputs own = run_steps(test::cpu_context(), {in.logits, in.targets, std::vector<float>(kRows, 0.0f),
                                                    std::vector<float>(kRows, 1.0f), std::vector<float>(kRows, 0.0f)},
                              s, DType::f32, false);
  in.global_max = own.row_max;
  for (int64_t n = 0; n < kRows; n++) {
    float& m = in.global_max[size_t(n)];
    if (s.valid == 0) m = 4.0f + float(n);  // this rank's max is -inf; the row's comes from elsewhere
    if (n % 2 == 1) m += 0.75f;
  }
  const auto extra = test::random_uniform(size_t(kRows), seed + 1, 0.5f, 2.0f);
  const auto other_target = test::random_normal(size_t(kRows), seed + 2, 3.0f);
  for (int64_t n = 0; n < kRows; n++) {
    // exp(x - max) summed over ~25k columns is ~1e3: keep the totals in that range.
    in.total_sum_exp.push_back(1000.0f * extra[size_t(n)]);
    in.total_target_logit.push_back(other_target[size_t(n)]);
  }
  return in;
}

}  // namespace

TEST_CASE("crossentropy_vp: each CUDA step matches the CPU for 50257 tokens over two ranks",
          "[cuda][crossentropy_vp]") {
  TESSERA_REQUIRE_GPU(gpu);
  for (int64_t Vl : {int64_t(25129), int64_t(25136)}) {
    for (int rank : {0, 1, 2}) {
      const Slice s = slice_of(rank, Vl);
      REQUIRE(s.valid == (rank == 0 ? Vl : rank == 1 ? kVocab - Vl : 0));
      for (DType dtype : {DType::f32, DType::bf16}) {
        StepInputs in = inputs_for(s, uint64_t(400 + 10 * rank + Vl % 7));
        if (dtype == DType::bf16) in.logits = round_to_bf16(in.logits);
        const StepOutputs ref = run_steps(test::cpu_context(), in, s, DType::f32, false);
        for (bool in_place : {false, true}) {
          CAPTURE(Vl, rank, s.valid, dtype_name(dtype), in_place);
          const StepOutputs got = run_steps(*gpu, in, s, dtype, in_place);
          // A max picks one element and the target logit copies one: both exact.
          CHECK(identical(got.row_max, ref.row_max));
          CHECK(identical(got.target_logit, ref.target_logit));
          // The same (bf16-representable) inputs on both sides: fp32 sums agree closely either way.
          CHECK(test::max_relative_error(got.sum_exp, ref.sum_exp) < 1e-5);
          CHECK(test::max_relative_error(got.losses, ref.losses) < 1e-5);
          const double tolerance = dtype == DType::f32 ? 1e-5 : 1e-2;
          // Gradients far below the largest possible one (dloss) are judged against 1e-4 of it.
          CHECK(test::max_relative_error(got.dlogits, ref.dlogits, 1e-4 * kDloss) < tolerance);
          bool padding_zero = true;
          for (int64_t n = 0; n < kRows; n++)
            for (int64_t i = s.valid; i < Vl; i++)
              padding_zero = padding_zero && got.dlogits[size_t(n * Vl + i)] == 0.0f;
          CHECK(padding_zero);
          if (!in_place) {
            const StepOutputs again = run_steps(*gpu, in, s, dtype, false);
            CHECK(identical(again.sum_exp, got.sum_exp));
            CHECK(identical(again.losses, got.losses));
            CHECK(identical(again.dlogits, got.dlogits));
          }
        }
      }
    }
  }
}

TEST_CASE("crossentropy_vp: composed over two ranks on the GPU equals the fused CUDA kernel",
          "[cuda][crossentropy_vp]") {
  TESSERA_REQUIRE_GPU(gpu);
  const int64_t N = kRows, Vl = 25129, Vp = 2 * Vl;
  const auto targets_host = targets_for(Vl);
  for (DType dtype : {DType::f32, DType::bf16}) {
    CAPTURE(dtype_name(dtype));
    auto logits_host = round_to_bf16(test::random_normal(size_t(N * Vp), 421, 3.0f));
    auto logits = test::upload(*gpu, logits_host, {N, Vp}, dtype);
    auto targets = test::upload_ints(*gpu, targets_host, {N});
    auto fused_losses = test::poisoned(*gpu, {N});
    auto fused_dlogits = test::poisoned(*gpu, {N, Vp}, dtype);
    ops::crossentropy_forward_backward(*gpu, fused_losses.tensor, fused_dlogits.tensor, logits.tensor, targets.tensor,
                                       int(kVocab), kDloss);

    // Each rank's slice, then the all-reduces on the host: max, then sums in rank order.
    std::vector<test::DeviceTensor> slices;
    for (int r = 0; r < 2; r++) {
      std::vector<float> part(size_t(N * Vl));
      for (int64_t n = 0; n < N; n++)
        std::copy_n(logits_host.begin() + n * Vp + r * Vl, Vl, part.begin() + n * Vl);
      slices.push_back(test::upload(*gpu, part, {N, Vl}, dtype));
    }
    std::vector<float> max_all(size_t(N), -std::numeric_limits<float>::infinity()), sum_all(size_t(N), 0.0f),
        target_all(size_t(N), 0.0f);
    for (int r = 0; r < 2; r++) {
      auto row_max = test::poisoned(*gpu, {N});
      ops::crossentropy_vp_max(*gpu, row_max.tensor, slices[size_t(r)].tensor, slice_of(r, Vl).valid);
      const auto m = test::download(*gpu, row_max.tensor);
      for (int64_t n = 0; n < N; n++) max_all[size_t(n)] = std::max(max_all[size_t(n)], m[size_t(n)]);
    }
    auto global_max = test::upload(*gpu, max_all, {N});
    for (int r = 0; r < 2; r++) {
      auto sum_exp = test::poisoned(*gpu, {N});
      auto target_logit = test::poisoned(*gpu, {N});
      ops::crossentropy_vp_sums(*gpu, sum_exp.tensor, target_logit.tensor, slices[size_t(r)].tensor, global_max.tensor,
                                targets.tensor, slice_of(r, Vl).vocab_start, slice_of(r, Vl).valid);
      const auto s = test::download(*gpu, sum_exp.tensor), t = test::download(*gpu, target_logit.tensor);
      for (int64_t n = 0; n < N; n++) {
        sum_all[size_t(n)] += s[size_t(n)];
        target_all[size_t(n)] += t[size_t(n)];
      }
    }
    auto total_sum = test::upload(*gpu, sum_all, {N});
    auto total_target = test::upload(*gpu, target_all, {N});
    auto losses = test::poisoned(*gpu, {N});
    ops::crossentropy_vp_loss(*gpu, losses.tensor, total_sum.tensor, total_target.tensor, global_max.tensor);
    CHECK(test::max_relative_error(test::download(*gpu, losses.tensor), test::download(*gpu, fused_losses.tensor)) <
          1e-5);

    std::vector<float> dlogits(size_t(N * Vp));
    for (int r = 0; r < 2; r++) {
      ops::crossentropy_vp_backward(*gpu, slices[size_t(r)].tensor, slices[size_t(r)].tensor, global_max.tensor,
                                    total_sum.tensor, targets.tensor, slice_of(r, Vl).vocab_start,
                                    slice_of(r, Vl).valid, kDloss);
      const auto d = test::download(*gpu, slices[size_t(r)].tensor);
      for (int64_t n = 0; n < N; n++) std::copy_n(d.begin() + n * Vl, Vl, dlogits.begin() + n * Vp + r * Vl);
    }
    const auto fused = test::download(*gpu, fused_dlogits.tensor);
    const double tolerance = dtype == DType::f32 ? 1e-5 : 1e-2;
    CHECK(test::max_relative_error(dlogits, fused, 1e-4 * kDloss) < tolerance);
    CHECK(dlogits[size_t(Vp - 1)] == 0.0f);  // the one padded column
  }
}
