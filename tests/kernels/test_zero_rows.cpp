// Every CPU kernel with zero rows: no error, nothing accumulated (tests/support/zero_rows.h).
#include "support/zero_rows.h"

using namespace tessera;

TEST_CASE("zero rows: every CPU kernel accepts B*T = 0 and leaves the gradients alone", "[kernels][zero-rows]") {
  test::check_zero_rows(test::cpu_context(), DType::f32);
}
