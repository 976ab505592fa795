// Helpers shared by the tests: deterministic random data, host/device tensors, comparisons,
// finite differences, and the visible skip of GPU tests on machines without a GPU.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tessera/buffer.h"
#include "tessera/context.h"
#include "tessera/tensor.h"

namespace tessera::test {

// Random floats from a fixed-seed generator (never zeros: every test runs on real data).
std::vector<float> random_uniform(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f);
std::vector<float> random_normal(size_t n, uint64_t seed, float stddev = 1.0f);
std::vector<int32_t> random_ints(size_t n, uint64_t seed, int32_t lo, int32_t hi_exclusive);
// A byte-vocabulary token stream with structure to learn: motifs of 8 tokens drawn by a fixed LCG.
std::vector<uint16_t> motif_tokens(size_t n);

// A CPU context with a fixed thread count (2, like CI) that does not announce itself.
Context& cpu_context();
// Runs `body` on a fresh one-thread CPU context (to compare with the default context's result:
// CPU kernels must not depend on the thread count), then restores the process's OpenMP and
// OpenBLAS thread counts, which a Context sets, to the tests' default.
void with_one_thread(const std::function<void(Context&)>& body);
// The GPU context, or nullptr (with the reason) when this machine has none.
Context* gpu_context(std::string* reason);
// Whether the environment says a GPU must be there (TESSERA_REQUIRE_GPU=1): GPU tests then fail
// instead of skipping.
bool gpu_required();

// Owns memory for one tensor on a given context's device, filled from host data.
struct DeviceTensor {
  Buffer buffer;
  Tensor tensor;
};
DeviceTensor upload(Context& ctx, const std::vector<float>& host, std::initializer_list<int64_t> shape,
                    DType dtype = DType::f32);
DeviceTensor upload_ints(Context& ctx, const std::vector<int32_t>& host, std::initializer_list<int64_t> shape);
// An uninitialised tensor on ctx's device, poisoned with NaNs.
DeviceTensor poisoned(Context& ctx, std::initializer_list<int64_t> shape, DType dtype = DType::f32);
// Copies a tensor (any device, f32 or bf16) back to host floats.
std::vector<float> download(Context& ctx, const Tensor& t);

// Largest |a-b| / max(|b|, floor) over all elements; NaN anywhere counts as infinite error.
double max_relative_error(const std::vector<float>& a, const std::vector<float>& b, double floor = 1e-3);
double max_abs_error(const std::vector<float>& a, const std::vector<float>& b);
// The values a bf16 tensor holds after rounding these floats (the expectation of a bf16 upload).
std::vector<float> round_to_bf16(std::vector<float> v);
bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b);

// Central finite difference of f with respect to x[i] in float64.
double finite_difference(const std::function<double()>& f, std::vector<double>& x, size_t i, double h = 1e-6);

}  // namespace tessera::test

// GPU tests call this first: without a GPU the test reports itself skipped, by name, and returns;
// CTest marks it skipped through the test's SKIP_REGULAR_EXPRESSION property. With the environment
// variable TESSERA_REQUIRE_GPU=1 (the GPU check sets it) the missing GPU is a failure instead, so a
// driver mismatch or a GPU taken by another process never passes as an all-skipped run.
#define TESSERA_REQUIRE_GPU(ctx_var)                                                            \
  std::string tessera_skip_reason_;                                                             \
  ::tessera::Context* ctx_var = ::tessera::test::gpu_context(&tessera_skip_reason_);            \
  if (!ctx_var) {                                                                               \
    if (::tessera::test::gpu_required())                                                        \
      FAIL("TESSERA_REQUIRE_GPU=1 but no GPU can be used: " << tessera_skip_reason_);           \
    WARN("TESSERA-SKIP: " << Catch::getResultCapture().getCurrentTestName() << ": "            \
                          << tessera_skip_reason_);                                             \
    return;                                                                                     \
  }
