// Linear layer with OpenBLAS, float32 on the CPU. Row-major throughout:
// out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC).
#include <cblas.h>

#include <algorithm>

#include "kernels/ops.h"

namespace tessera::cpu {

namespace {
constexpr int64_t kColumnBlock = 64;
}  // namespace

void matmul_forward(Context& ctx, Tensor out, Tensor pre_gelu, Tensor inp, Tensor weight, Tensor bias,
                    Epilogue epilogue) {
  const int64_t N = inp.size(0), C = inp.size(1), OC = weight.size(0);
  // With the gelu epilogue the matmul lands in pre_gelu and out is derived from it.
  Tensor target = epilogue == Epilogue::gelu ? pre_gelu : out;
  float* y = target.ptr<float>();
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(N), int(OC), int(C), 1.0f, inp.ptr<float>(), int(C),
              weight.ptr<float>(), int(C), 0.0f, y, int(OC));
  if (!bias.empty()) {
    const float* b = bias.ptr<float>();
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
    for (int64_t n = 0; n < N; ++n) {
      float* y_n = y + n * OC;
      for (int64_t o = 0; o < OC; ++o) y_n[o] += b[o];
    }
  }
  if (epilogue == Epilogue::gelu) gelu_forward(ctx, out, pre_gelu);
}

void matmul_backward(Context& ctx, Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                     Tensor weight) {
  const int64_t N = inp.size(0), C = inp.size(1), OC = weight.size(0);
  const float* d = dout.ptr<float>();
  if (!dinp.empty()) {
    // dinp (N,C) = dout (N,OC) @ weight (OC,C)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(N), int(C), int(OC), 1.0f, d, int(OC),
                weight.ptr<float>(), int(C), 0.0f, dinp.ptr<float>(), int(C));
  }
  // dweight (OC,C) += dout^T (OC,N) @ inp (N,C)
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(OC), int(C), int(N), 1.0f, d, int(OC),
              inp.ptr<float>(), int(C), 1.0f, dweight.ptr<float>(), int(C));
  if (!dbias.empty()) {
    // Column sums: each column owned by one thread, rows added in order.
    float* db = dbias.ptr<float>();
    const int64_t blocks = (OC + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads())
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t o0 = blk * kColumnBlock, o1 = std::min(OC, o0 + kColumnBlock);
      for (int64_t n = 0; n < N; ++n) {
        const float* d_n = d + n * OC;
        for (int64_t o = o0; o < o1; ++o) db[o] += d_n[o];
      }
    }
  }
}

}  // namespace tessera::cpu
