// The test-backend-ops harness (after ggml's): every op of the registry (src/kernels/registry.h)
// run on a backend against the CPU reference on identical inputs, at odd sizes, f32 and bf16,
// with views that start mid-buffer, outputs poisoned, poison guards around every argument, inputs
// checked unchanged and a second run bitwise equal; on the CPU also the reference against the op's
// float64 maths, a backward against float64 finite differences, and one thread against two.
#pragma once

#include <string>
#include <vector>

#include "kernels/registry.h"
#include "support/test_support.h"

namespace tessera::test {

// Every case of `entry` on `backend` (a CUDA context: each of the entry's dtypes; the CPU: f32),
// at offsets 0 and 1.
void check_op_on_backend(Context& backend, const kernels::OpEntry& entry);
// One case: `entry` at `dims` with `activations` on `backend`, each argument `offset` elements
// into its buffer, against the CPU reference.
void check_case(Context& backend, const kernels::OpEntry& entry, const kernels::Dims& dims, DType activations,
                int64_t offset);
// The CPU-only checks of every small case: maths, finite differences, thread count.
void check_op_float64(const kernels::OpEntry& entry);
// Every case of `entry` with its first dim (the rows: B, N or n) set to 0, as a rank gets with an
// empty slice, on `backend` in each dtype: no error (a CUDA grid of zero blocks is one), nothing
// written around the empty arguments, accumulators (parameter gradients) unchanged, a returned
// value of 0.
void check_zero_rows(Context& backend, const kernels::OpEntry& entry);

// The names of the ops declared in ops.h's TESSERA_KERNEL_DECLARATIONS.
std::vector<std::string> ops_declared_in(const std::string& ops_header_path);

}  // namespace tessera::test
