// Every registered op with zero rows on the GPU, f32 and bf16 (test::check_zero_rows): nothing
// launched (a grid of zero blocks is a CUDA error), nothing written, gradients left alone.
#include "support/op_harness.h"

using namespace tessera;

TEST_CASE("zero rows: every registered op accepts 0 rows on the GPU and leaves the gradients alone",
          "[cuda][zero-rows]") {
  TESSERA_REQUIRE_GPU(gpu);
  for (const kernels::OpEntry& e : kernels::op_registry()) test::check_zero_rows(*gpu, e);
}
