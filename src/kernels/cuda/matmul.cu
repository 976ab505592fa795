// Linear layer on the GPU with cuBLASLt. tessera's tensors are row-major and cuBLAS is
// column-major, so a row-major (R,K) matrix is read as its column-major transpose (K,R):
//   forward   out^T (OC,N)  = weight^T' (OC,C) @ inp^T (C,N)      [A = weight, transposed]
//   dinp      dinp^T (C,N)  = weight^T (C,OC) @ dout^T (OC,N)
//   dweight   dweight^T (C,OC) += inp^T (C,N) @ dout (N,OC)        [B = dout, transposed]
// float32 uses CUBLAS_COMPUTE_32F (never TF32); bf16 uses bf16 A/B/C/D with fp32 compute, and
// dweight is fp32 C/D with bf16 A/B. dbias is a deterministic column-sum kernel.
#include <memory>
#include <string>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/ops.h"

namespace tessera::cuda {

namespace {

using namespace common;

constexpr int kBlock = 256;
constexpr int kRowsPerChunk = 128;  // rows per dbias partial sum

cudaDataType cuda_type(DType t) { return t == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F; }

// RAII owners for the cuBLASLt descriptors of one call (destroy errors ignored: nothing to do).
struct MatmulDesc {
  cublasLtMatmulDesc_t h = nullptr;
  ~MatmulDesc() {
    if (h) cublasLtMatmulDescDestroy(h);
  }
};
struct Layout {
  cublasLtMatrixLayout_t h = nullptr;
  ~Layout() {
    if (h) cublasLtMatrixLayoutDestroy(h);
  }
};
struct Preference {
  cublasLtMatmulPreference_t h = nullptr;
  ~Preference() {
    if (h) cublasLtMatmulPreferenceDestroy(h);
  }
};

// One column-major operand: pointer, element type, and rows x cols as stored, leading dimension.
struct Operand {
  const void* data;
  cudaDataType type;
  int64_t rows, cols, ld;
};

struct Gemm {
  bool trans_a = false, trans_b = false;
  Operand a{}, b{}, d{};  // D (m,n) = op(A) (m,k) @ op(B) (k,n) [+ beta * D]
  float beta = 0.0f;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
  void* aux = nullptr;  // GELU pre-activation output
  int64_t aux_ld = 0;
};

std::string describe(const Gemm& g) {
  auto op = [](const Operand& o) {
    return "(" + std::to_string(o.rows) + "x" + std::to_string(o.cols) + ", ld " + std::to_string(o.ld) +
           (o.type == CUDA_R_16BF ? " bf16)" : " f32)");
  };
  return "A " + op(g.a) + (g.trans_a ? "^T" : "") + ", B " + op(g.b) + (g.trans_b ? "^T" : "") + ", D " + op(g.d) +
         ", epilogue " + std::to_string(int(g.epilogue));
}

// Runs the matmul; returns false (having launched nothing) when cuBLASLt has no algorithm for
// this combination and `may_fail` is set, so the caller can fall back to separate kernels.
bool run_gemm(Context& ctx, const Gemm& g, bool may_fail) {
  detail::CudaResources* r = ctx.cuda();
  MatmulDesc desc;
  TESSERA_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc.h, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_a = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  TESSERA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  TESSERA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  TESSERA_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_EPILOGUE, &g.epilogue, sizeof(g.epilogue)));
  if (g.bias)
    TESSERA_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof(g.bias)));
  if (g.aux) {
    TESSERA_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &g.aux, sizeof(g.aux)));
    TESSERA_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &g.aux_ld, sizeof(g.aux_ld)));
  }

  Layout la, lb, ld;
  TESSERA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la.h, g.a.type, uint64_t(g.a.rows), uint64_t(g.a.cols), g.a.ld));
  TESSERA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb.h, g.b.type, uint64_t(g.b.rows), uint64_t(g.b.cols), g.b.ld));
  TESSERA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&ld.h, g.d.type, uint64_t(g.d.rows), uint64_t(g.d.cols), g.d.ld));

  // Tell the heuristic the real alignment of each pointer (views into buffers may be offset).
  Preference pref;
  TESSERA_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref.h));
  const uint64_t workspace = r->cublaslt_workspace_bytes;
  TESSERA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                            &workspace, sizeof(workspace)));
  const uint32_t align_a = pointer_alignment(g.a.data), align_b = pointer_alignment(g.b.data);
  uint32_t align_d = pointer_alignment(g.d.data);
  if (g.bias) align_d = std::min(align_d, pointer_alignment(g.bias));
  if (g.aux) align_d = std::min(align_d, pointer_alignment(g.aux));
  TESSERA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                            &align_a, sizeof(align_a)));
  TESSERA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                            &align_b, sizeof(align_b)));
  TESSERA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                            &align_d, sizeof(align_d)));
  TESSERA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                            &align_d, sizeof(align_d)));

  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(r->cublaslt, desc.h, la.h, lb.h, ld.h, ld.h, pref.h, 1, &heuristic, &found);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
    if (may_fail) return false;
    throw internal_error("cuBLASLt has no algorithm for the matmul " + describe(g) +
                             (st != CUBLAS_STATUS_SUCCESS ? std::string(": ") + cublasLtGetStatusString(st) : ""),
                         TESSERA_HERE);
  }
  const float alpha = 1.0f;
  st = cublasLtMatmul(r->cublaslt, desc.h, &alpha, g.a.data, la.h, g.b.data, lb.h, &g.beta, g.d.data, ld.h,
                      const_cast<void*>(g.d.data), ld.h, &heuristic.algo, r->cublaslt_workspace,
                      r->cublaslt_workspace_bytes, r->stream);
  if (st == CUBLAS_STATUS_NOT_SUPPORTED && may_fail) return false;
  TESSERA_CUBLAS_CHECK(st);
  return true;
}

// y (N,OC) += bias (OC), for when cuBLASLt's bias epilogue is unavailable.
template <class T>
__global__ void add_bias_kernel(T* y, const T* bias, int64_t N, int64_t OC) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < N * OC; i += stride)
    y[i] = from_float<T>(to_float(y[i]) + to_float(bias[i % OC]));
}

// partials (chunks, OC): column sums of dout over each chunk's rows, rows in order.
template <class T>
__global__ void column_sum_partials(float* partials, const T* dout, int N, int OC) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= OC) return;
  const int row0 = blockIdx.y * kRowsPerChunk;
  const int row1 = min(N, row0 + kRowsPerChunk);
  float acc = 0.0f;
  for (int n = row0; n < row1; ++n) acc += to_float(dout[int64_t(n) * OC + o]);
  partials[int64_t(blockIdx.y) * OC + o] = acc;
}

// dbias[o] += the chunk partials of column o, in chunk order.
__global__ void column_sum_final(float* dbias, const float* partials, int chunks, int OC) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= OC) return;
  float acc = 0.0f;
  for (int k = 0; k < chunks; ++k) acc += partials[int64_t(k) * OC + o];
  dbias[o] += acc;
}

// target (N,OC) = inp @ weight^T (+ bias), via the bias epilogue when available.
void matmul_bias(Context& ctx, Tensor target, Tensor inp, Tensor weight, Tensor bias) {
  const int64_t N = inp.size(0), C = inp.size(1), OC = weight.size(0);
  const cudaDataType t = cuda_type(inp.dtype);
  Gemm g;
  g.trans_a = true;
  g.a = {weight.data, t, C, OC, C};
  g.b = {inp.data, t, C, N, C};
  g.d = {target.data, t, OC, N, OC};
  if (!bias.empty()) {
    g.epilogue = CUBLASLT_EPILOGUE_BIAS;
    g.bias = bias.data;
    FastPathCount& count = ctx.fast_paths().matmul_bias_epilogue;
    if (run_gemm(ctx, g, /*may_fail=*/true)) {
      ++count.ran;
      return;
    }
    ++count.fell_back;
    g.epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    g.bias = nullptr;
  }
  run_gemm(ctx, g, /*may_fail=*/false);
  if (!bias.empty()) {
    const unsigned grid = grid_for(N * OC, kBlock);
    if (inp.dtype == DType::bf16)
      add_bias_kernel<<<grid, kBlock, 0, stream_of(ctx)>>>(target.ptr<bf16_t>(), bias.ptr<bf16_t>(), N, OC);
    else
      add_bias_kernel<<<grid, kBlock, 0, stream_of(ctx)>>>(target.ptr<float>(), bias.ptr<float>(), N, OC);
    TESSERA_CUDA_CHECK_LAUNCH();
  }
}

// bf16 only: cuBLASLt's fused GELU epilogue writes out = gelu(pre) and pre_gelu in one pass. For
// float32 tessera's own exact-tanh gelu kernel runs instead, to keep 1e-5 parity with the CPU.
bool fused_gelu(Context& ctx, Tensor out, Tensor pre_gelu, Tensor inp, Tensor weight, Tensor bias) {
  const int64_t N = inp.size(0), C = inp.size(1), OC = weight.size(0);
  if (inp.dtype != DType::bf16 || OC % 8 != 0) return false;  // the aux leading dim must be a multiple of 8
  Gemm g;
  g.trans_a = true;
  g.a = {weight.data, CUDA_R_16BF, C, OC, C};
  g.b = {inp.data, CUDA_R_16BF, C, N, C};
  g.d = {out.data, CUDA_R_16BF, OC, N, OC};
  g.epilogue = bias.empty() ? CUBLASLT_EPILOGUE_GELU_AUX : CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
  g.bias = bias.empty() ? nullptr : bias.data;
  g.aux = pre_gelu.data;
  g.aux_ld = OC;
  const bool ran = run_gemm(ctx, g, /*may_fail=*/true);
  FastPathCount& count = ctx.fast_paths().matmul_gelu_epilogue;
  ++(ran ? count.ran : count.fell_back);
  return ran;
}

template <class T>
void dbias_column_sums(Context& ctx, Tensor dbias, Tensor dout) {
  const int N = int(dout.size(0)), OC = int(dout.size(1));
  const int chunks = ceil_div(N, kRowsPerChunk);
  auto* partials = static_cast<float*>(ctx.cuda()->scratch(sizeof(float) * size_t(chunks) * size_t(OC)));
  dim3 grid(unsigned(ceil_div(OC, kBlock)), unsigned(chunks));
  column_sum_partials<T><<<grid, kBlock, 0, stream_of(ctx)>>>(partials, dout.ptr<T>(), N, OC);
  TESSERA_CUDA_CHECK_LAUNCH();
  column_sum_final<<<unsigned(ceil_div(OC, kBlock)), kBlock, 0, stream_of(ctx)>>>(dbias.ptr<float>(), partials,
                                                                                   chunks, OC);
  TESSERA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void matmul_forward(Context& ctx, Tensor out, Tensor pre_gelu, Tensor inp, Tensor weight, Tensor bias,
                    Epilogue epilogue) {
  if (inp.size(0) == 0) return;  // no rows: cuBLASLt and the kernels would be asked for empty grids
  if (epilogue != Epilogue::gelu) {
    matmul_bias(ctx, out, inp, weight, bias);
    return;
  }
  if (fused_gelu(ctx, out, pre_gelu, inp, weight, bias)) return;
  matmul_bias(ctx, pre_gelu, inp, weight, bias);
  gelu_forward(ctx, out, pre_gelu);
}

void matmul_backward(Context& ctx, Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                     Tensor weight) {
  const int64_t N = inp.size(0), C = inp.size(1), OC = weight.size(0);
  if (N == 0) return;  // no rows: dinp is empty, dweight and dbias gain nothing
  const cudaDataType t = cuda_type(inp.dtype);
  if (!dinp.empty()) {
    Gemm g;
    g.a = {weight.data, t, C, OC, C};
    g.b = {dout.data, t, OC, N, OC};
    g.d = {dinp.data, t, C, N, C};
    run_gemm(ctx, g, /*may_fail=*/false);
  }
  {
    Gemm g;
    g.trans_b = true;
    g.a = {inp.data, t, C, N, C};
    g.b = {dout.data, t, OC, N, OC};
    g.d = {dweight.data, CUDA_R_32F, C, OC, C};
    g.beta = 1.0f;
    run_gemm(ctx, g, /*may_fail=*/false);
  }
  if (!dbias.empty()) {
    if (inp.dtype == DType::bf16)
      dbias_column_sums<bf16_t>(ctx, dbias, dout);
    else
      dbias_column_sums<float>(ctx, dbias, dout);
  }
}

}  // namespace tessera::cuda
