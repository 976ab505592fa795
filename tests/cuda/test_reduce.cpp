// sum_of_squares: CUDA against the CPU kernel, and bitwise reproducible on the GPU.
#include <cstring>
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"

using namespace tessera;

TEST_CASE("sum_of_squares: CUDA matches CPU and repeats bitwise", "[cuda][reduce]") {
  TESSERA_REQUIRE_GPU(gpu);
  Context& cpu = test::cpu_context();
  for (int64_t n : {int64_t(1), int64_t(1000), int64_t(1000003), int64_t(124439808 / 16)}) {
    INFO("n = " << n);
    const auto g = test::random_normal(size_t(n), 271 + uint64_t(n));
    auto c_g = test::upload(cpu, g, {n});
    auto g_g = test::upload(*gpu, g, {n});
    const double want = ops::sum_of_squares(cpu, c_g.tensor);
    const double first = ops::sum_of_squares(*gpu, g_g.tensor);
    const double second = ops::sum_of_squares(*gpu, g_g.tensor);
    CHECK(std::fabs(first - want) <= 1e-12 * want);
    CHECK(std::memcmp(&first, &second, sizeof(double)) == 0);
    // A view that is not 16-byte aligned reads correctly too.
    if (n > 1) {
      auto tail = g_g.tensor.flat_range(1, n - 1);
      const double want_tail = ops::sum_of_squares(cpu, c_g.tensor.flat_range(1, n - 1));
      CHECK(std::fabs(ops::sum_of_squares(*gpu, tail) - want_tail) <= 1e-12 * want_tail);
    }
  }
}
