// layernorm_forward / layernorm_backward: CUDA against the CPU kernels, f32 and bf16.
#include <cstring>
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"
#include "tessera/dtype.h"

using namespace tessera;
using test::bitwise_equal;
using test::round_to_bf16;

TEST_CASE("layernorm: CUDA matches CPU, forward and backward, f32 and bf16", "[cuda][layernorm]") {
  TESSERA_REQUIRE_GPU(gpu);
  Context& cpu = test::cpu_context();
  const int64_t N = 2 * 37, C = 200;
  const auto x = test::random_normal(size_t(N * C), 211, 2.0f);
  const auto w = test::random_uniform(size_t(C), 212, 0.5f, 1.5f);
  const auto b = test::random_uniform(size_t(C), 213);
  const auto dout = test::random_uniform(size_t(N * C), 214);
  const auto dx0 = test::random_uniform(size_t(N * C), 215);
  const auto dw0 = test::random_uniform(size_t(C), 216);
  const auto db0 = test::random_uniform(size_t(C), 217);

  for (DType dtype : {DType::f32, DType::bf16}) {
    INFO("dtype " << dtype_name(dtype));
    const double tol = dtype == DType::f32 ? 1e-5 : 1e-2;
    auto host = [&](const std::vector<float>& v) { return dtype == DType::f32 ? v : round_to_bf16(v); };

    auto c_x = test::upload(cpu, host(x), {N, C});
    auto c_w = test::upload(cpu, host(w), {C});
    auto c_b = test::upload(cpu, host(b), {C});
    auto c_out = test::poisoned(cpu, {N, C});
    auto c_mean = test::poisoned(cpu, {N});
    auto c_rstd = test::poisoned(cpu, {N});
    ops::layernorm_forward(cpu, c_out.tensor, c_mean.tensor, c_rstd.tensor, c_x.tensor, c_w.tensor, c_b.tensor);

    auto g_x = test::upload(*gpu, x, {N, C}, dtype);
    auto g_w = test::upload(*gpu, w, {C}, dtype);
    auto g_b = test::upload(*gpu, b, {C}, dtype);
    auto g_out = test::poisoned(*gpu, {N, C}, dtype);
    auto g_mean = test::poisoned(*gpu, {N});
    auto g_rstd = test::poisoned(*gpu, {N});
    ops::layernorm_forward(*gpu, g_out.tensor, g_mean.tensor, g_rstd.tensor, g_x.tensor, g_w.tensor, g_b.tensor);
    CHECK(test::max_relative_error(test::download(*gpu, g_out.tensor), test::download(cpu, c_out.tensor), 1e-1) < tol);
    CHECK(test::max_relative_error(test::download(*gpu, g_mean.tensor), test::download(cpu, c_mean.tensor), 1e-1) < 1e-5);
    CHECK(test::max_relative_error(test::download(*gpu, g_rstd.tensor), test::download(cpu, c_rstd.tensor)) < 1e-5);

    auto c_dout = test::upload(cpu, host(dout), {N, C});
    auto c_dx = test::upload(cpu, host(dx0), {N, C});
    auto c_dw = test::upload(cpu, dw0, {C});
    auto c_db = test::upload(cpu, db0, {C});
    ops::layernorm_backward(cpu, c_dx.tensor, c_dw.tensor, c_db.tensor, c_dout.tensor, c_x.tensor, c_w.tensor,
                            c_mean.tensor, c_rstd.tensor);
    const auto want_dx = test::download(cpu, c_dx.tensor);
    const auto want_dw = test::download(cpu, c_dw.tensor);
    const auto want_db = test::download(cpu, c_db.tensor);

    auto g_dout = test::upload(*gpu, dout, {N, C}, dtype);
    std::vector<float> first;
    for (int run = 0; run < 2; ++run) {
      auto g_dx = test::upload(*gpu, dx0, {N, C}, dtype);
      auto g_dw = test::upload(*gpu, dw0, {C});
      auto g_db = test::upload(*gpu, db0, {C});
      ops::layernorm_backward(*gpu, g_dx.tensor, g_dw.tensor, g_db.tensor, g_dout.tensor, g_x.tensor, g_w.tensor,
                              g_mean.tensor, g_rstd.tensor);
      auto dx = test::download(*gpu, g_dx.tensor);
      auto dw = test::download(*gpu, g_dw.tensor);
      auto db = test::download(*gpu, g_db.tensor);
      CHECK(test::max_relative_error(dx, want_dx, 1e-1) < tol);
      CHECK(test::max_relative_error(dw, want_dw, 1e-1) < tol);
      CHECK(test::max_relative_error(db, want_db, 1e-1) < tol);
      dx.insert(dx.end(), dw.begin(), dw.end());
      dx.insert(dx.end(), db.begin(), db.end());
      if (run == 0)
        first = std::move(dx);
      else
        CHECK(bitwise_equal(dx, first));  // deterministic
    }
  }
}
