// Every registered op with zero rows on the CPU (test::check_zero_rows; the CUDA half is
// tests/cuda/test_zero_rows.cpp).
#include "support/op_harness.h"

using namespace tessera;

TEST_CASE("zero rows: every registered op accepts 0 rows on the CPU and leaves the gradients alone",
          "[kernels][zero-rows]") {
  for (const kernels::OpEntry& e : kernels::op_registry()) test::check_zero_rows(test::cpu_context(), e);
}
