// matmul_forward (dims: N C OC gelu bias) / matmul_backward (dims: N C OC dinp dbias); the flags
// are 0 or 1 (bias 0: a bias-free linear, as LLaMA's).
#include <cmath>

#include "kernels/registry/families.h"

namespace tessera::kernels {

namespace {

// out (N,OC) = inp (N,C) @ w (OC,C)^T + b (OC, may be empty), in float64.
std::vector<double> matmul64(int64_t N, int64_t C, int64_t OC, const std::vector<double>& inp,
                             const std::vector<double>& w, const std::vector<double>& b) {
  std::vector<double> out(size_t(N * OC));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < OC; ++o) {
      double s = b.empty() ? 0.0 : b[size_t(o)];
      for (int64_t c = 0; c < C; ++c) s += inp[size_t(n * C + c)] * w[size_t(o * C + c)];
      out[size_t(n * OC + o)] = s;
    }
  return out;
}

double gelu64(double x) { return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }

std::vector<float> weights(int64_t n, uint64_t seed) { return uniform(n, seed, -0.2f, 0.2f); }

OpEntry forward() {
  OpEntry e;
  e.name = "matmul_forward";
  e.dims = "N C OC gelu bias";
  // bf16 takes cuBLASLt's fused GELU epilogue (with and without bias) when OC % 8 == 0, else a
  // separate gelu kernel; the GPT-2 classifier width; an odd shape.
  e.cases = {{74, 200, 800, 1, 1}, {74, 200, 800, 1, 0},   {74, 200, 50, 1, 1}, {74, 200, 50, 0, 1},
             {74, 200, 50, 0, 0},  {74, 200, 50257, 0, 0}, {37, 29, 31, 0, 0}};
  e.small = {{6, 5, 4, 0, 1}, {6, 5, 4, 1, 1}, {5, 3, 7, 1, 0}};
  e.make = [](const Dims& d, DType, uint64_t seed) {
    const int64_t N = d[0], C = d[1], OC = d[2];
    const bool gelu = d[3] != 0, bias = d[4] != 0;
    OpCall c;
    c.args = {output("out", {N, OC}), gelu ? output("pre_gelu", {N, OC}) : absent("pre_gelu"),
              input("inp", {N, C}, uniform(N * C, seed_of(seed, 2))),
              input("weight", {OC, C}, weights(OC * C, seed_of(seed, 3))),
              bias ? input("bias", {OC}, uniform(OC, seed_of(seed, 4))) : absent("bias")};
    const Epilogue epilogue = gelu ? Epilogue::gelu : Epilogue::none;
    c.run = [epilogue](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::matmul_forward, cpu::matmul_forward)(ctx, t[0], t[1], t[2], t[3], t[4], epilogue);
      return 0.0;
    };
    return c;
  };
  e.math = [](const Dims& d, Values& v) {
    std::vector<double> y = matmul64(d[0], d[1], d[2], v[2], v[3], v[4]);
    if (d[3]) {
      v[1] = y;
      for (double& x : y) x = gelu64(x);
    }
    v[0] = y;
    return 0.0;
  };
  // The CPU GEMMs tile by the machine's cores and run single-threaded OpenBLAS per tile, so the
  // thread count changes no sum (src/kernels/cpu/gemm.h).
  e.same_bits_any_threads = true;
  return e;
}

OpEntry backward() {
  OpEntry e;
  e.name = "matmul_backward";
  e.dims = "N C OC dinp dbias";
  e.cases = {
      {74, 200, 800, 1, 1}, {74, 200, 50, 1, 0}, {74, 200, 50, 0, 0}, {74, 200, 50257, 1, 0}, {37, 29, 31, 1, 1}};
  e.small = {{6, 5, 4, 1, 1}, {5, 3, 7, 0, 0}};
  e.make = [](const Dims& d, DType, uint64_t seed) {
    const int64_t N = d[0], C = d[1], OC = d[2];
    OpCall c;
    c.args = {d[3] ? output("dinp", {N, C}) : absent("dinp"),
              accumulate("dweight", {OC, C}, uniform(OC * C, seed_of(seed, 1))),
              d[4] ? accumulate("dbias", {OC}, uniform(OC, seed_of(seed, 2))) : absent("dbias"),
              input("dout", {N, OC}, uniform(N * OC, seed_of(seed, 3))),
              input("inp", {N, C}, uniform(N * C, seed_of(seed, 4))),
              input("weight", {OC, C}, weights(OC * C, seed_of(seed, 5)))};
    c.run = [](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::matmul_backward, cpu::matmul_backward)(ctx, t[0], t[1], t[2], t[3], t[4], t[5]);
      return 0.0;
    };
    c.loss_variables = {input("bias", {OC}, uniform(OC, seed_of(seed, 6)))};
    return c;
  };
  e.gradient.loss = [](const Dims& d, const Values& v, const Values& vars) {
    return dot(matmul64(d[0], d[1], d[2], v[4], v[5], vars[0]), v[3]);
  };
  e.gradient.pairs = {{4, 0}, {5, 1}, {6, 2}};  // inp -> dinp, weight -> dweight, bias -> dbias
  e.same_bits_any_threads = true;
  return e;
}

}  // namespace

std::vector<OpEntry> matmul_ops() { return {forward(), backward()}; }

}  // namespace tessera::kernels
