// The fused residual + LayerNorm and residual + RMSNorm give exactly the bits of residual_forward
// then the norm (the model switched to them without changing a loss): through ops:: (the one-pass
// CPU twins) and the plain references, at row widths around the norms' 8 lanes, with each alias
// ops.h allows, on one thread and on three.
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include "kernels/ops.h"
#include "kernels/registry.h"
#include "support/test_support.h"

using namespace tessera;

namespace {

Tensor rows(std::vector<float>& v, int64_t N, int64_t C) { return Tensor(v.data(), {N, C}, DType::f32, Device::cpu); }
Tensor row(std::vector<float>& v) { return Tensor(v.data(), {int64_t(v.size())}, DType::f32, Device::cpu); }

bool same_bits(const std::vector<float>& x, const std::vector<float>& y) {
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

enum class Alias { none, residual_over_a, out_over_b };
enum class Norm { layernorm, rmsnorm };

void check_against_unfused(Context& ctx, Norm norm, int64_t N, int64_t C, Alias alias, bool plain) {
  INFO((norm == Norm::layernorm ? "layernorm" : "rmsnorm") << ", N " << N << ", C " << C << ", alias " << int(alias)
                                                           << (plain ? ", plain reference" : ", ops::"));
  constexpr float kEps = 1e-6f;
  const std::vector<float> a0 = kernels::normal(N * C, 11, 2.0f), b0 = kernels::uniform(N * C, 12);
  std::vector<float> w = kernels::uniform(C, 13, 0.5f, 1.5f), bias = kernels::uniform(C, 14);

  // Unfused: the decoder's former pair of calls.
  std::vector<float> a = a0, b = b0, want_res(size_t(N * C), -7.0f), want_out(size_t(N * C), -7.0f),
                     want_mean(size_t(N), -7.0f), want_rstd(size_t(N), -7.0f);
  ops::residual_forward(ctx, rows(want_res, N, C), rows(a, N, C), rows(b, N, C));
  if (norm == Norm::layernorm)
    ops::layernorm_forward(ctx, rows(want_out, N, C), row(want_mean), row(want_rstd), rows(want_res, N, C), row(w),
                           row(bias));
  else
    ops::rmsnorm_forward(ctx, rows(want_out, N, C), row(want_rstd), rows(want_res, N, C), row(w), kEps);

  std::vector<float> fa = a0, fb = b0, res(size_t(N * C), -9.0f), out(size_t(N * C), -9.0f), mean(size_t(N), -9.0f),
                     rstd(size_t(N), -9.0f);
  std::vector<float>& res_buf = alias == Alias::residual_over_a ? fa : res;
  std::vector<float>& out_buf = alias == Alias::out_over_b ? fb : out;
  if (norm == Norm::layernorm) {
    auto call = plain ? cpu::residual_layernorm_forward : ops::residual_layernorm_forward;
    call(ctx, rows(res_buf, N, C), rows(out_buf, N, C), row(mean), row(rstd), rows(fa, N, C), rows(fb, N, C), row(w),
         row(bias));
  } else {
    auto call = plain ? cpu::residual_rmsnorm_forward : ops::residual_rmsnorm_forward;
    call(ctx, rows(res_buf, N, C), rows(out_buf, N, C), row(rstd), rows(fa, N, C), rows(fb, N, C), row(w), kEps);
  }
  CHECK(same_bits(res_buf, want_res));
  CHECK(same_bits(out_buf, want_out));
  if (norm == Norm::layernorm) CHECK(same_bits(mean, want_mean));  // RMSNorm has no mean
  CHECK(same_bits(rstd, want_rstd));
}

}  // namespace

TEST_CASE("fused residual + norm: bitwise the two ops in turn, any alias, any thread count", "[kernels][fused-norms]") {
  ContextOptions options;
  options.device = DevicePreference::cpu;
  options.announce = false;
  for (int threads : {1, 3}) {
    options.cpu_threads = threads;
    Context ctx(options);
    INFO(threads << " threads");
    for (const auto& [N, C] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {5, 7}, {37, 64}, {9, 203}, {3, 768}})
      for (Alias alias : {Alias::none, Alias::residual_over_a, Alias::out_over_b})
        for (bool plain : {false, true})
          for (Norm norm : {Norm::layernorm, Norm::rmsnorm}) check_against_unfused(ctx, norm, N, C, alias, plain);
  }
}

TEST_CASE("fused residual + norm: out may not be the residual, shapes checked", "[kernels][fused-norms]") {
  Context& ctx = test::cpu_context();
  std::vector<float> a(12, 1.0f), b(12, 2.0f), r(12), w(4, 1.0f), bias(4, 0.0f), mean(3), rstd(3);
  CHECK_THROWS_WITH(ops::residual_layernorm_forward(ctx, rows(r, 3, 4), rows(r, 3, 4), row(mean), row(rstd),
                                                    rows(a, 3, 4), rows(b, 3, 4), row(w), row(bias)),
                    Catch::Contains("out must not be the residual"));
  CHECK_THROWS_WITH(ops::residual_layernorm_forward(ctx, rows(r, 3, 4), rows(a, 3, 4), row(mean), row(rstd),
                                                    rows(a, 3, 4), rows(b, 2, 6), row(w), row(bias)),
                    Catch::Contains("b has shape"));
  CHECK_THROWS_WITH(ops::residual_rmsnorm_forward(ctx, rows(r, 3, 4), rows(r, 3, 4), row(rstd), rows(a, 3, 4),
                                                  rows(b, 3, 4), row(w), 1e-5f),
                    Catch::Contains("out must not be the residual"));
  CHECK_THROWS_WITH(ops::residual_rmsnorm_forward(ctx, rows(r, 3, 4), rows(b, 3, 4), row(mean), rows(a, 3, 4),
                                                  rows(b, 3, 4), row(w), 0.0f),
                    Catch::Contains("eps must be positive"));
}
