// The CPU kernels' vectorisable exp (src/kernels/cpu/cpu_math.h) against float64 exp.
#include <cmath>
#include <limits>

#include "kernels/cpu/cpu_math.h"
#include "support/test_support.h"

using namespace tessera;

TEST_CASE("exp_approx: within 2 ulp of exp over the float range, and the limits", "[kernels][cpu_math]") {
  double worst_ulp = 0.0;
  float worst_x = 0.0f;
  // Every 2^-12 from the underflow bound to ln(FLT_MAX): about 720k points.
  for (float x = -86.9f; x < 88.72f; x += 1.0f / 4096) {
    const double want = std::exp(double(x));
    const float got = cpu::exp_approx(x);
    const float rounded = float(want);
    const double ulp = double(std::nextafter(rounded, std::numeric_limits<float>::infinity())) - double(rounded);
    const double err = std::fabs(double(got) - want) / ulp;
    if (err > worst_ulp) worst_ulp = err, worst_x = x;
  }
  CAPTURE(worst_x);
  CHECK(worst_ulp <= 2.0);
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(cpu::exp_approx(0.0f) == 1.0f);
  CHECK(cpu::exp_approx(-inf) == 0.0f);
  CHECK(cpu::exp_approx(-1000.0f) == 0.0f);
  CHECK(cpu::exp_approx(inf) == inf);
  CHECK(cpu::exp_approx(89.0f) == inf);
  CHECK(std::isnan(cpu::exp_approx(std::numeric_limits<float>::quiet_NaN())));
}
