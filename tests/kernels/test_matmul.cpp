// matmul_forward / matmul_backward on the CPU against a float64 reference.
#include <cmath>
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"

using namespace tessera;

namespace {

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }
std::vector<float> to_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

// out (N,OC) = inp (N,C) @ w (OC,C)^T + b (OC, may be empty), float64.
std::vector<double> reference_matmul(const std::vector<double>& inp, const std::vector<double>& w,
                                     const std::vector<double>& b, int64_t N, int64_t C, int64_t OC) {
  std::vector<double> out(size_t(N * OC));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < OC; ++o) {
      double s = b.empty() ? 0.0 : b[size_t(o)];
      for (int64_t c = 0; c < C; ++c) s += inp[size_t(n * C + c)] * w[size_t(o * C + c)];
      out[size_t(n * OC + o)] = s;
    }
  return out;
}

double reference_gelu(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

}  // namespace

TEST_CASE("matmul: forward matches float64 with and without bias and gelu", "[kernels][matmul]") {
  Context& ctx = test::cpu_context();
  const int64_t N = 37, C = 29, OC = 53;
  auto inp = test::random_uniform(size_t(N * C), 51);
  auto w = test::random_uniform(size_t(OC * C), 52);
  auto b = test::random_uniform(size_t(OC), 53);
  auto inp_t = test::upload(ctx, inp, {N, C});
  auto w_t = test::upload(ctx, w, {OC, C});
  auto b_t = test::upload(ctx, b, {OC});
  auto with_bias = reference_matmul(to_double(inp), to_double(w), to_double(b), N, C, OC);
  auto without_bias = reference_matmul(to_double(inp), to_double(w), {}, N, C, OC);

  SECTION("bias") {
    auto out = test::poisoned(ctx, {N, OC});
    ops::matmul_forward(ctx, out.tensor, Tensor(), inp_t.tensor, w_t.tensor, b_t.tensor, Epilogue::none);
    CHECK(test::max_relative_error(test::download(ctx, out.tensor), to_float(with_bias), 1e-2) < 1e-4);
  }
  SECTION("no bias") {
    auto out = test::poisoned(ctx, {N, OC});
    ops::matmul_forward(ctx, out.tensor, Tensor(), inp_t.tensor, w_t.tensor, Tensor(), Epilogue::none);
    CHECK(test::max_relative_error(test::download(ctx, out.tensor), to_float(without_bias), 1e-2) < 1e-4);
  }
  SECTION("bias and gelu") {
    auto out = test::poisoned(ctx, {N, OC});
    auto pre = test::poisoned(ctx, {N, OC});
    ops::matmul_forward(ctx, out.tensor, pre.tensor, inp_t.tensor, w_t.tensor, b_t.tensor, Epilogue::gelu);
    std::vector<float> want(with_bias.size());
    for (size_t i = 0; i < want.size(); ++i) want[i] = float(reference_gelu(with_bias[i]));
    CHECK(test::max_relative_error(test::download(ctx, pre.tensor), to_float(with_bias), 1e-2) < 1e-4);
    CHECK(test::max_relative_error(test::download(ctx, out.tensor), want, 1e-2) < 1e-4);
  }
}

TEST_CASE("matmul: backward matches finite differences; dweight and dbias accumulate", "[kernels][matmul]") {
  Context& ctx = test::cpu_context();
  const int64_t N = 6, C = 5, OC = 4;  // B=2, T=3
  auto inpf = test::random_uniform(size_t(N * C), 54);
  auto wf = test::random_uniform(size_t(OC * C), 55);
  auto bf = test::random_uniform(size_t(OC), 56);
  auto dout = test::random_uniform(size_t(N * OC), 57);
  auto dw0 = test::random_uniform(size_t(OC * C), 58);
  auto db0 = test::random_uniform(size_t(OC), 59);

  auto inp_t = test::upload(ctx, inpf, {N, C});
  auto w_t = test::upload(ctx, wf, {OC, C});
  auto dout_t = test::upload(ctx, dout, {N, OC});
  auto dinp_t = test::poisoned(ctx, {N, C});  // overwritten, not accumulated
  auto dw_t = test::upload(ctx, dw0, {OC, C});
  auto db_t = test::upload(ctx, db0, {OC});
  ops::matmul_backward(ctx, dinp_t.tensor, dw_t.tensor, db_t.tensor, dout_t.tensor, inp_t.tensor, w_t.tensor);

  auto inp = to_double(inpf), w = to_double(wf), b = to_double(bf);
  auto loss = [&] {
    auto out = reference_matmul(inp, w, b, N, C, OC);
    double s = 0.0;
    for (size_t i = 0; i < out.size(); ++i) s += out[i] * double(dout[i]);
    return s;
  };
  auto expected = [&](const std::vector<float>* initial, std::vector<double>& param) {
    std::vector<float> want(param.size());
    for (size_t i = 0; i < want.size(); ++i)
      want[i] = float((initial ? double((*initial)[i]) : 0.0) + test::finite_difference(loss, param, i));
    return want;
  };
  CHECK(test::max_relative_error(test::download(ctx, dinp_t.tensor), expected(nullptr, inp), 1e-2) < 1e-4);
  CHECK(test::max_relative_error(test::download(ctx, dw_t.tensor), expected(&dw0, w), 1e-2) < 1e-4);
  CHECK(test::max_relative_error(test::download(ctx, db_t.tensor), expected(&db0, b), 1e-2) < 1e-4);

  SECTION("empty dinp and dbias are skipped") {
    auto dw2 = test::upload(ctx, dw0, {OC, C});
    ops::matmul_backward(ctx, Tensor(), dw2.tensor, Tensor(), dout_t.tensor, inp_t.tensor, w_t.tensor);
    CHECK(test::download(ctx, dw2.tensor) == test::download(ctx, dw_t.tensor));
  }
}

TEST_CASE("matmul: forward and backward do not depend on the thread count", "[kernels][matmul]") {
  // Shapes that cut into tiles both ways (rows for the forward and dinp, output rows of dweight
  // beyond 256, where OpenBLAS's sums depend on the extent of the call), with the fused bias + GELU
  // epilogue. The tiling follows the machine's cores, not the thread count.
  const int64_t N = 300, C = 70, OC = 530;
  auto inp = test::random_uniform(size_t(N * C), 81);
  auto w = test::random_uniform(size_t(OC * C), 82);
  auto b = test::random_uniform(size_t(OC), 83);
  auto dout = test::random_uniform(size_t(N * OC), 84);
  auto run = [&](Context& ctx) {
    auto inp_t = test::upload(ctx, inp, {N, C});
    auto w_t = test::upload(ctx, w, {OC, C});
    auto b_t = test::upload(ctx, b, {OC});
    auto dout_t = test::upload(ctx, dout, {N, OC});
    auto out = test::poisoned(ctx, {N, OC}), pre = test::poisoned(ctx, {N, OC});
    ops::matmul_forward(ctx, out.tensor, pre.tensor, inp_t.tensor, w_t.tensor, b_t.tensor, Epilogue::gelu);
    auto dinp = test::poisoned(ctx, {N, C});
    auto dw = test::upload(ctx, w, {OC, C});
    auto db = test::upload(ctx, b, {OC});
    ops::matmul_backward(ctx, dinp.tensor, dw.tensor, db.tensor, dout_t.tensor, inp_t.tensor, w_t.tensor);
    std::vector<float> all;
    for (auto* t : {&out.tensor, &pre.tensor, &dinp.tensor, &dw.tensor, &db.tensor}) {
      auto part = test::download(ctx, *t);
      all.insert(all.end(), part.begin(), part.end());
    }
    return all;
  };
  auto two = run(test::cpu_context());
  std::vector<float> one;
  test::with_one_thread([&](Context& single) { one = run(single); });
  CHECK(test::bitwise_equal(one, two));
}
