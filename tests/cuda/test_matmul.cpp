// matmul_forward / matmul_backward: CUDA (cuBLASLt) against the CPU kernels, f32 and bf16.
#include <cstring>
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"
#include "tessera/dtype.h"

using namespace tessera;
using test::bitwise_equal;
using test::round_to_bf16;

namespace {

struct Shape {
  int64_t N, C, OC;
};

// Forward with every epilogue variant, then backward (twice on the GPU: bitwise equal).
void check_matmul(Context& gpu, Shape s, DType dtype, bool with_bias) {
  Context& cpu = test::cpu_context();
  const auto [N, C, OC] = s;
  INFO("N " << N << " C " << C << " OC " << OC << " " << dtype_name(dtype) << (with_bias ? " bias" : " no bias"));
  const double tol = dtype == DType::f32 ? 1e-5 : 1e-2;
  auto host = [&](const std::vector<float>& v) { return dtype == DType::f32 ? v : round_to_bf16(v); };
  const auto inp = test::random_uniform(size_t(N * C), 221);
  const auto w = test::random_uniform(size_t(OC * C), 222, -0.2f, 0.2f);
  const auto b = test::random_uniform(size_t(OC), 223);
  const auto dout = test::random_uniform(size_t(N * OC), 224);
  const auto dw0 = test::random_uniform(size_t(OC * C), 225);
  const auto db0 = test::random_uniform(size_t(OC), 226);

  auto c_inp = test::upload(cpu, host(inp), {N, C});
  auto c_w = test::upload(cpu, host(w), {OC, C});
  auto c_b = test::upload(cpu, host(b), {OC});
  auto g_inp = test::upload(gpu, inp, {N, C}, dtype);
  auto g_w = test::upload(gpu, w, {OC, C}, dtype);
  auto g_b = test::upload(gpu, b, {OC}, dtype);
  Tensor cb = with_bias ? c_b.tensor : Tensor();
  Tensor gb = with_bias ? g_b.tensor : Tensor();

  {
    auto c_out = test::poisoned(cpu, {N, OC});
    auto g_out = test::poisoned(gpu, {N, OC}, dtype);
    ops::matmul_forward(cpu, c_out.tensor, Tensor(), c_inp.tensor, c_w.tensor, cb, Epilogue::none);
    ops::matmul_forward(gpu, g_out.tensor, Tensor(), g_inp.tensor, g_w.tensor, gb, Epilogue::none);
    CHECK(test::max_relative_error(test::download(gpu, g_out.tensor), test::download(cpu, c_out.tensor), 1e-1) < tol);
  }
  {
    auto c_out = test::poisoned(cpu, {N, OC});
    auto c_pre = test::poisoned(cpu, {N, OC});
    auto g_out = test::poisoned(gpu, {N, OC}, dtype);
    auto g_pre = test::poisoned(gpu, {N, OC}, dtype);
    ops::matmul_forward(cpu, c_out.tensor, c_pre.tensor, c_inp.tensor, c_w.tensor, cb, Epilogue::gelu);
    ops::matmul_forward(gpu, g_out.tensor, g_pre.tensor, g_inp.tensor, g_w.tensor, gb, Epilogue::gelu);
    CHECK(test::max_relative_error(test::download(gpu, g_pre.tensor), test::download(cpu, c_pre.tensor), 1e-1) < tol);
    CHECK(test::max_relative_error(test::download(gpu, g_out.tensor), test::download(cpu, c_out.tensor), 1e-1) < tol);
  }

  auto c_dout = test::upload(cpu, host(dout), {N, OC});
  auto c_dinp = test::poisoned(cpu, {N, C});
  auto c_dw = test::upload(cpu, dw0, {OC, C});
  auto c_db = test::upload(cpu, db0, {OC});
  ops::matmul_backward(cpu, c_dinp.tensor, c_dw.tensor, with_bias ? c_db.tensor : Tensor(), c_dout.tensor,
                       c_inp.tensor, c_w.tensor);
  const auto want_dinp = test::download(cpu, c_dinp.tensor);
  const auto want_dw = test::download(cpu, c_dw.tensor);
  const auto want_db = test::download(cpu, c_db.tensor);

  auto g_dout = test::upload(gpu, dout, {N, OC}, dtype);
  std::vector<float> first;
  for (int run = 0; run < 2; ++run) {
    auto g_dinp = test::poisoned(gpu, {N, C}, dtype);
    auto g_dw = test::upload(gpu, dw0, {OC, C});
    auto g_db = test::upload(gpu, db0, {OC});
    ops::matmul_backward(gpu, g_dinp.tensor, g_dw.tensor, with_bias ? g_db.tensor : Tensor(), g_dout.tensor,
                         g_inp.tensor, g_w.tensor);
    auto dinp = test::download(gpu, g_dinp.tensor);
    auto dw = test::download(gpu, g_dw.tensor);
    auto db = test::download(gpu, g_db.tensor);
    CHECK(test::max_relative_error(dinp, want_dinp, 1e-1) < tol);
    CHECK(test::max_relative_error(dw, want_dw, 1e-1) < tol);
    CHECK(test::max_relative_error(db, want_db, 1e-1) < tol);
    dinp.insert(dinp.end(), dw.begin(), dw.end());
    dinp.insert(dinp.end(), db.begin(), db.end());
    if (run == 0)
      first = std::move(dinp);
    else
      CHECK(bitwise_equal(dinp, first));  // deterministic
  }

  // Without dinp (the first layer's input needs no gradient) dweight is the same.
  auto g_dw = test::upload(gpu, dw0, {OC, C});
  ops::matmul_backward(gpu, Tensor(), g_dw.tensor, Tensor(), g_dout.tensor, g_inp.tensor, g_w.tensor);
  CHECK(test::max_relative_error(test::download(gpu, g_dw.tensor), want_dw, 1e-1) < tol);
}

}  // namespace

TEST_CASE("matmul: CUDA matches CPU on odd shapes, f32 and bf16", "[cuda][matmul]") {
  TESSERA_REQUIRE_GPU(gpu);
  for (DType dtype : {DType::f32, DType::bf16}) {
    check_matmul(*gpu, {2 * 37, 200, 800}, dtype, true);  // OC % 8 == 0: bf16 takes the fused gelu epilogue
    check_matmul(*gpu, {2 * 37, 200, 50}, dtype, true);   // OC % 8 != 0: separate gelu kernel
    check_matmul(*gpu, {2 * 37, 200, 50}, dtype, false);
  }
}

TEST_CASE("matmul: CUDA matches CPU for the GPT-2 classifier shape (vocabulary 50257)", "[cuda][matmul]") {
  TESSERA_REQUIRE_GPU(gpu);
  for (DType dtype : {DType::f32, DType::bf16}) check_matmul(*gpu, {2 * 37, 200, 50257}, dtype, false);
}

TEST_CASE("matmul: CUDA handles views that are not 16-byte aligned", "[cuda][matmul]") {
  TESSERA_REQUIRE_GPU(gpu);
  Context& cpu = test::cpu_context();
  const int64_t N = 37, C = 29, OC = 31;
  const auto inp = test::random_uniform(size_t(N * C + 1), 231);
  const auto w = test::random_uniform(size_t(OC * C + 1), 232);
  // Rows starting one element in: the pointers are only 4-byte aligned.
  auto c_inp = test::upload(cpu, inp, {N * C + 1});
  auto c_w = test::upload(cpu, w, {OC * C + 1});
  auto g_inp = test::upload(*gpu, inp, {N * C + 1});
  auto g_w = test::upload(*gpu, w, {OC * C + 1});
  auto c_out = test::poisoned(cpu, {N * OC + 1});
  auto g_out = test::poisoned(*gpu, {N * OC + 1});
  auto view = [](const Tensor& t, int64_t rows, int64_t cols) { return t.flat_range(1, rows * cols).reshape({rows, cols}); };
  ops::matmul_forward(cpu, view(c_out.tensor, N, OC), Tensor(), view(c_inp.tensor, N, C), view(c_w.tensor, OC, C),
                      Tensor(), Epilogue::none);
  ops::matmul_forward(*gpu, view(g_out.tensor, N, OC), Tensor(), view(g_inp.tensor, N, C), view(g_w.tensor, OC, C),
                      Tensor(), Epilogue::none);
  CHECK(test::max_relative_error(test::download(*gpu, view(g_out.tensor, N, OC)),
                                 test::download(cpu, view(c_out.tensor, N, OC)), 1e-1) < 1e-5);
}
