// residual_forward: CUDA against the CPU kernel, f32 and bf16, aligned and not.
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"
#include "tessera/dtype.h"

using namespace tessera;
using test::bitwise_equal;
using test::round_to_bf16;

TEST_CASE("residual: CUDA matches CPU, f32 and bf16, also in place", "[cuda][residual]") {
  TESSERA_REQUIRE_GPU(gpu);
  Context& cpu = test::cpu_context();
  const int64_t n = 2 * 37 * 200 + 3;
  const auto a = test::random_uniform(size_t(n), 251);
  const auto b = test::random_uniform(size_t(n), 252);
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (int64_t offset : {int64_t(0), int64_t(1)}) {
      INFO("dtype " << dtype_name(dtype) << " offset " << offset);
      const double tol = dtype == DType::f32 ? 1e-6 : 1e-2;
      auto host = [&](const std::vector<float>& v) { return dtype == DType::f32 ? v : round_to_bf16(v); };
      const int64_t m = n - offset;
      auto c_a = test::upload(cpu, host(a), {n});
      auto c_b = test::upload(cpu, host(b), {n});
      auto c_out = test::poisoned(cpu, {n});
      ops::residual_forward(cpu, c_out.tensor.flat_range(offset, m), c_a.tensor.flat_range(offset, m),
                            c_b.tensor.flat_range(offset, m));
      const auto want = test::download(cpu, c_out.tensor.flat_range(offset, m));

      auto g_a = test::upload(*gpu, a, {n}, dtype);
      auto g_b = test::upload(*gpu, b, {n}, dtype);
      auto g_out = test::poisoned(*gpu, {n}, dtype);
      ops::residual_forward(*gpu, g_out.tensor.flat_range(offset, m), g_a.tensor.flat_range(offset, m),
                            g_b.tensor.flat_range(offset, m));
      CHECK(test::max_relative_error(test::download(*gpu, g_out.tensor.flat_range(offset, m)), want, 1e-1) < tol);
      ops::residual_forward(*gpu, g_a.tensor.flat_range(offset, m), g_a.tensor.flat_range(offset, m),
                            g_b.tensor.flat_range(offset, m));
      CHECK(test::max_relative_error(test::download(*gpu, g_a.tensor.flat_range(offset, m)), want, 1e-1) < tol);
    }
  }
}
