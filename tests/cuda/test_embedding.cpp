// embedding_forward / embedding_backward: CUDA against the CPU kernels, f32 and bf16.
#include <cstring>
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"
#include "tessera/dtype.h"

using namespace tessera;
using test::bitwise_equal;
using test::round_to_bf16;

TEST_CASE("embedding: CUDA matches CPU, forward and backward, f32 and bf16", "[cuda][embedding]") {
  TESSERA_REQUIRE_GPU(gpu);
  Context& cpu = test::cpu_context();
  const int64_t B = 2, T = 37, C = 200, V = 50257, maxT = 64;
  auto tokens = test::random_ints(size_t(B * T), 201, 0, int32_t(V));
  for (int i : {5, 17, 40, 41, 73}) tokens[size_t(i)] = tokens[0];  // a token repeated across rows
  tokens[3] = int32_t(V - 1);
  const auto wte = test::random_uniform(size_t(V * C), 202);
  const auto wpe = test::random_uniform(size_t(maxT * C), 203);
  const auto dout = test::random_uniform(size_t(B * T * C), 204);
  const auto dwte0 = test::random_uniform(size_t(V * C), 205);
  const auto dwpe0 = test::random_uniform(size_t(maxT * C), 206);

  for (DType dtype : {DType::f32, DType::bf16}) {
    INFO("dtype " << dtype_name(dtype));
    const double tol = dtype == DType::f32 ? 1e-5 : 1e-2;
    // The CPU reference sees exactly the values the GPU holds.
    auto host = [&](const std::vector<float>& v) { return dtype == DType::f32 ? v : round_to_bf16(v); };

    auto c_tok = test::upload_ints(cpu, tokens, {B, T});
    auto g_tok = test::upload_ints(*gpu, tokens, {B, T});
    auto c_wte = test::upload(cpu, host(wte), {V, C});
    auto c_wpe = test::upload(cpu, host(wpe), {maxT, C});
    auto g_wte = test::upload(*gpu, wte, {V, C}, dtype);
    auto g_wpe = test::upload(*gpu, wpe, {maxT, C}, dtype);
    auto c_out = test::poisoned(cpu, {B, T, C});
    auto g_out = test::poisoned(*gpu, {B, T, C}, dtype);
    ops::embedding_forward(cpu, c_out.tensor, c_tok.tensor, c_wte.tensor, c_wpe.tensor, 0);
    ops::embedding_forward(*gpu, g_out.tensor, g_tok.tensor, g_wte.tensor, g_wpe.tensor, 0);
    CHECK(test::max_relative_error(test::download(*gpu, g_out.tensor), test::download(cpu, c_out.tensor), 1e-2) < tol);

    auto c_dout = test::upload(cpu, host(dout), {B, T, C});
    auto g_dout = test::upload(*gpu, dout, {B, T, C}, dtype);
    auto c_dwte = test::upload(cpu, dwte0, {V, C});
    auto c_dwpe = test::upload(cpu, dwpe0, {maxT, C});
    ops::embedding_backward(cpu, c_dwte.tensor, c_dwpe.tensor, c_dout.tensor, c_tok.tensor, 0);
    const auto want_wte = test::download(cpu, c_dwte.tensor);
    const auto want_wpe = test::download(cpu, c_dwpe.tensor);

    std::vector<float> first_wte, first_wpe;
    for (int run = 0; run < 2; ++run) {
      auto g_dwte = test::upload(*gpu, dwte0, {V, C});
      auto g_dwpe = test::upload(*gpu, dwpe0, {maxT, C});
      ops::embedding_backward(*gpu, g_dwte.tensor, g_dwpe.tensor, g_dout.tensor, g_tok.tensor, 0);
      auto got_wte = test::download(*gpu, g_dwte.tensor);
      auto got_wpe = test::download(*gpu, g_dwpe.tensor);
      CHECK(test::max_relative_error(got_wte, want_wte, 1e-2) < tol);
      CHECK(test::max_relative_error(got_wpe, want_wpe, 1e-2) < tol);
      if (run == 0) {
        first_wte = std::move(got_wte);
        first_wpe = std::move(got_wpe);
      } else {
        CHECK(bitwise_equal(got_wte, first_wte));  // deterministic
        CHECK(bitwise_equal(got_wpe, first_wpe));
      }
    }
  }
}
