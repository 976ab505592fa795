// gelu_forward / gelu_backward: CUDA against the CPU kernels, f32 and bf16, aligned and not.
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"
#include "tessera/dtype.h"

using namespace tessera;
using test::bitwise_equal;
using test::round_to_bf16;

TEST_CASE("gelu: CUDA matches CPU, forward and backward, f32 and bf16", "[cuda][gelu]") {
  TESSERA_REQUIRE_GPU(gpu);
  Context& cpu = test::cpu_context();
  const int64_t n = 100003;  // not a multiple of the 16-byte pack
  const auto x = test::random_uniform(size_t(n), 241, -4.0f, 4.0f);
  const auto dout = test::random_uniform(size_t(n), 242);
  for (DType dtype : {DType::f32, DType::bf16}) {
    // 0: the whole buffer (vectorised path); 1: a view one element in (scalar path).
    for (int64_t offset : {int64_t(0), int64_t(1)}) {
      INFO("dtype " << dtype_name(dtype) << " offset " << offset);
      // Floor 0.1 below: 1 + tanh cancels for negative inputs, so small outputs get an absolute
      // bound (1e-6) rather than a relative one.
      const double tol = dtype == DType::f32 ? 1e-5 : 1e-2;
      auto host = [&](const std::vector<float>& v) { return dtype == DType::f32 ? v : round_to_bf16(v); };
      const int64_t m = n - offset;
      auto c_x = test::upload(cpu, host(x), {n});
      auto c_d = test::upload(cpu, host(dout), {n});
      auto g_x = test::upload(*gpu, x, {n}, dtype);
      auto g_d = test::upload(*gpu, dout, {n}, dtype);
      auto c_out = test::poisoned(cpu, {n});
      auto g_out = test::poisoned(*gpu, {n}, dtype);
      ops::gelu_forward(cpu, c_out.tensor.flat_range(offset, m), c_x.tensor.flat_range(offset, m));
      ops::gelu_forward(*gpu, g_out.tensor.flat_range(offset, m), g_x.tensor.flat_range(offset, m));
      CHECK(test::max_relative_error(test::download(*gpu, g_out.tensor.flat_range(offset, m)),
                                     test::download(cpu, c_out.tensor.flat_range(offset, m)), 1e-1) < tol);

      auto c_dx = test::poisoned(cpu, {n});
      auto g_dx = test::poisoned(*gpu, {n}, dtype);
      ops::gelu_backward(cpu, c_dx.tensor.flat_range(offset, m), c_x.tensor.flat_range(offset, m),
                         c_d.tensor.flat_range(offset, m));
      ops::gelu_backward(*gpu, g_dx.tensor.flat_range(offset, m), g_x.tensor.flat_range(offset, m),
                         g_d.tensor.flat_range(offset, m));
      const auto want = test::download(cpu, c_dx.tensor.flat_range(offset, m));
      CHECK(test::max_relative_error(test::download(*gpu, g_dx.tensor.flat_range(offset, m)), want, 1e-1) < tol);

      // In place: dinp aliases dout, out aliases inp.
      ops::gelu_backward(*gpu, g_d.tensor.flat_range(offset, m), g_x.tensor.flat_range(offset, m),
                         g_d.tensor.flat_range(offset, m));
      CHECK(test::max_relative_error(test::download(*gpu, g_d.tensor.flat_range(offset, m)), want, 1e-1) < tol);
      ops::gelu_forward(*gpu, g_x.tensor.flat_range(offset, m), g_x.tensor.flat_range(offset, m));
      CHECK(test::max_relative_error(test::download(*gpu, g_x.tensor.flat_range(offset, m)),
                                     test::download(cpu, c_out.tensor.flat_range(offset, m)), 1e-1) < tol);
    }
  }
}
