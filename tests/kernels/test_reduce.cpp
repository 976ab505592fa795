// sum_of_squares on the CPU: accurate, and bitwise independent of the thread count.
#include <cstring>
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"

using namespace tessera;

TEST_CASE("sum_of_squares: matches long double and is bitwise equal for 1 and 2 threads", "[kernels][reduce]") {
  for (int64_t n : {int64_t(1), int64_t(4095), int64_t(100003)}) {
    auto g = test::random_normal(size_t(n), 111 + uint64_t(n));
    long double want = 0.0L;
    for (float x : g) want += (long double)x * (long double)x;

    auto g_two = test::upload(test::cpu_context(), g, {n});
    double two = ops::sum_of_squares(test::cpu_context(), g_two.tensor);
    double one = 0.0;
    test::with_one_thread([&](Context& single) {
      auto g_one = test::upload(single, g, {n});
      one = ops::sum_of_squares(single, g_one.tensor);
    });
    INFO("n = " << n);
    CHECK(std::memcmp(&one, &two, sizeof(double)) == 0);
    CHECK(std::fabs(two - double(want)) <= 1e-12 * double(want));
  }
}
