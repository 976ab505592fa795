// Linear layer on the CPU: OpenBLAS GEMMs on tessera's OpenMP team (gemm.h), float32, row-major:
// out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC). Bias and GELU are applied to each tile of
// the output by the thread that computed it, right after its GEMM.
#include <algorithm>

#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/gemm.h"
#include "kernels/ops.h"

namespace tessera::cpu {

namespace {
constexpr int64_t kColumnBlock = 64;
}  // namespace

void matmul_forward(Context& ctx, Tensor out, Tensor pre_gelu, Tensor inp, Tensor weight, Tensor bias,
                    Epilogue epilogue) {
  const int64_t N = inp.size(0), C = inp.size(1), OC = weight.size(0);
  const bool gelu = epilogue == Epilogue::gelu;
  // With the gelu epilogue the GEMM lands in pre_gelu and out is derived from it.
  float* y = gelu ? pre_gelu.ptr<float>() : out.ptr<float>();
  float* o = out.ptr<float>();
  const float* b = bias.empty() ? nullptr : bias.ptr<float>();
  Gemm g;
  g.trans_b = true;
  g.M = N, g.N = OC, g.K = C;
  g.a = inp.ptr<float>(), g.lda = C;
  g.b = weight.ptr<float>(), g.ldb = C;
  g.c = y, g.ldc = OC;
  auto bias_gelu = [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    for (int64_t m = m0; m < m1; ++m) bias_gelu_span(o + m * OC + n0, y + m * OC + n0, b ? b + n0 : nullptr, n1 - n0);
  };
  auto add_bias = [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    for (int64_t m = m0; m < m1; ++m) add_bias_span(y + m * OC + n0, b + n0, n1 - n0);
  };
  if (gelu) {
    gemm(ctx, g, bias_gelu);
  } else if (b) {
    gemm(ctx, g, add_bias);
  } else {
    gemm(ctx, g);
  }
}

void matmul_backward(Context& ctx, Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                     Tensor weight) {
  const int64_t N = inp.size(0), C = inp.size(1), OC = weight.size(0);
  const float* d = dout.ptr<float>();
  if (!dinp.empty()) {
    // dinp (N,C) = dout (N,OC) @ weight (OC,C)
    Gemm g;
    g.M = N, g.N = C, g.K = OC;
    g.a = d, g.lda = OC;
    g.b = weight.ptr<float>(), g.ldb = C;
    g.c = dinp.ptr<float>(), g.ldc = C;
    gemm(ctx, g);
  }
  // dweight (OC,C) += dout^T (OC,N) @ inp (N,C)
  Gemm g;
  g.trans_a = true;
  g.M = OC, g.N = C, g.K = N;
  g.a = d, g.lda = OC;
  g.b = inp.ptr<float>(), g.ldb = C;
  g.beta = 1.0f;
  g.c = dweight.ptr<float>(), g.ldc = C;
  gemm(ctx, g);
  if (!dbias.empty()) {
    // Column sums: each column owned by one thread, rows added in order.
    float* db = dbias.ptr<float>();
    const int64_t blocks = (OC + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t o0 = blk * kColumnBlock, o1 = std::min(OC, o0 + kColumnBlock);
      for (int64_t n = 0; n < N; ++n) add_bias_span(db + o0, d + n * OC + o0, o1 - o0);
    }
  }
}

}  // namespace tessera::cpu
