// CUDA vocabulary-parallel cross-entropy beyond test-backend-ops (which checks each step on its
// own): the four steps composed over two ranks on the GPU equal the fused CUDA kernel.
#include <algorithm>
#include <limits>
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"
#include "tessera/dtype.h"

using namespace tessera;
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

}  // namespace

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
