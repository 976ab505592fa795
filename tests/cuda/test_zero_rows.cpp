// Every CUDA kernel with zero rows: nothing launched (a grid of zero blocks is a CUDA error),
// nothing accumulated (tests/support/zero_rows.h), f32 and bf16.
#include "support/zero_rows.h"

using namespace tessera;

TEST_CASE("zero rows: every CUDA kernel accepts B*T = 0 and leaves the gradients alone", "[cuda][zero-rows]") {
  TESSERA_REQUIRE_GPU(gpu);
  for (DType dtype : {DType::f32, DType::bf16}) {
    INFO(dtype_name(dtype));
    test::check_zero_rows(*gpu, dtype);
  }
}
