// The one place that chooses a backend, and the one place shapes and dtypes are checked.
#include <chrono>
#include <string>
#include <type_traits>
#include <utility>

#include "kernels/cpu/flash_attention.h"
#include "kernels/cpu/fused_norms.h"
#include "kernels/ops.h"
#include "tessera/error.h"

#ifndef TESSERA_WITH_CUDA
#define TESSERA_WITH_CUDA 0
#endif
#ifndef TESSERA_WITH_CUDNN_ATTENTION
#define TESSERA_WITH_CUDNN_ATTENTION 0
#endif

namespace tessera {

bool built_with_cuda() { return TESSERA_WITH_CUDA; }
bool built_with_cudnn_attention() { return TESSERA_WITH_CUDNN_ATTENTION; }

namespace {

[[noreturn]] void shape_error(const char* op, const std::string& detail) {
  throw Error(ExitCode::bad_config, std::string(op) + ": " + detail, "kernel boundary",
              "the caller passed tensors of mismatched shape, dtype or device");
}

// Every tensor lives on the context's device; activations are f32, or bf16 on CUDA.
void expect_device(const Context& ctx, const char* op, const char* name, const Tensor& t) {
  if (t.empty()) shape_error(op, std::string(name) + " is empty");
  if (t.device != ctx.device())
    shape_error(op, std::string(name) + " is on " + device_name(t.device) + " but the context is on " +
                        device_name(ctx.device()));
}

void expect_activation(const Context& ctx, const char* op, const char* name, const Tensor& t) {
  expect_device(ctx, op, name, t);
  bool ok = t.dtype == DType::f32 || (t.dtype == DType::bf16 && ctx.on_gpu());
  if (!ok) shape_error(op, std::string(name) + " has dtype " + dtype_name(t.dtype) + " (" + t.shape_str() + ")");
}

void expect_dtype(const Context& ctx, const char* op, const char* name, const Tensor& t, DType dtype) {
  expect_device(ctx, op, name, t);
  if (t.dtype != dtype)
    shape_error(op, std::string(name) + " must be " + dtype_name(dtype) + ", got " + t.shape_str());
}

void expect_shape(const char* op, const char* name, const Tensor& t, std::initializer_list<int64_t> shape) {
  Tensor want(nullptr, shape, t.dtype, t.device);
  bool ok = want.ndim == t.ndim;
  for (int i = 0; ok && i < t.ndim; ++i) ok = want.dims[size_t(i)] == t.dims[size_t(i)];
  if (!ok) shape_error(op, std::string(name) + " has shape " + t.shape_str() + ", expected " + want.shape_str());
}

void expect_same_dtype(const char* op, const Tensor& a, const char* an, const Tensor& b, const char* bn) {
  if (a.dtype != b.dtype)
    shape_error(op, std::string(an) + " is " + dtype_name(a.dtype) + " but " + bn + " is " + dtype_name(b.dtype));
}

}  // namespace

#if TESSERA_WITH_CUDA
#define TESSERA_BACKEND_CALL(ctx, op, ...) ((ctx).on_gpu() ? cuda::op(ctx, __VA_ARGS__) : cpu::op(ctx, __VA_ARGS__))
#else
#define TESSERA_BACKEND_CALL(ctx, op, ...) cpu::op(ctx, __VA_ARGS__)
#endif

namespace {

// Runs one kernel call, timed into the context's op profile when there is one.
template <class Call>
auto profiled(Context& ctx, const char* op, Call&& call) {
  OpProfile* profile = ctx.op_profile();
  if (!profile) return call();
  ctx.synchronize();
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  if constexpr (std::is_void_v<decltype(call())>) {
    call();
    ctx.synchronize();
    profile->add(op, seconds());
  } else {
    auto result = call();
    ctx.synchronize();
    profile->add(op, seconds());
    return result;
  }
}

}  // namespace

#define TESSERA_DISPATCH(ctx, op, ...) profiled(ctx, #op, [&] { return TESSERA_BACKEND_CALL(ctx, op, __VA_ARGS__); })

// Ops whose CPU backend is a faster twin of the plain cpu:: reference (same contract; the reference
// stays what the twin and the CUDA kernels are checked against).
#if TESSERA_WITH_CUDA
#define TESSERA_DISPATCH_FAST(ctx, op, cpu_fast, ...) \
  profiled(ctx, #op, [&] { return (ctx).on_gpu() ? cuda::op(ctx, __VA_ARGS__) : cpu::cpu_fast(ctx, __VA_ARGS__); })
#else
#define TESSERA_DISPATCH_FAST(ctx, op, cpu_fast, ...) profiled(ctx, #op, [&] { return cpu::cpu_fast(ctx, __VA_ARGS__); })
#endif

namespace ops {

void embedding_forward(Context& ctx, Tensor out, Tensor tokens, Tensor wte, Tensor wpe, int vocab_start) {
  const char* op = "embedding_forward";
  expect_activation(ctx, op, "out", out);
  expect_dtype(ctx, op, "tokens", tokens, DType::i32);
  expect_activation(ctx, op, "wte", wte);
  if (out.ndim != 3) shape_error(op, "out must be (B,T,C), got " + out.shape_str());
  int64_t B = out.size(0), T = out.size(1), C = out.size(2);
  expect_shape(op, "tokens", tokens, {B, T});
  if (wte.ndim != 2 || wte.size(1) != C) shape_error(op, "wte must be (Vl,C), got " + wte.shape_str());
  if (vocab_start < 0) shape_error(op, "vocab_start must not be negative");
  if (!wpe.empty()) {
    expect_activation(ctx, op, "wpe", wpe);
    if (wpe.ndim != 2 || wpe.size(1) != C || wpe.size(0) < T)
      shape_error(op, "wpe must be (maxT>=T,C), got " + wpe.shape_str());
    expect_same_dtype(op, out, "out", wpe, "wpe");
  }
  expect_same_dtype(op, out, "out", wte, "wte");
  TESSERA_DISPATCH(ctx, embedding_forward, out, tokens, wte, wpe, vocab_start);
}

void embedding_backward(Context& ctx, Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens, int vocab_start) {
  const char* op = "embedding_backward";
  expect_dtype(ctx, op, "dwte", dwte, DType::f32);
  expect_activation(ctx, op, "dout", dout);
  expect_dtype(ctx, op, "tokens", tokens, DType::i32);
  if (dout.ndim != 3) shape_error(op, "dout must be (B,T,C), got " + dout.shape_str());
  int64_t B = dout.size(0), T = dout.size(1), C = dout.size(2);
  expect_shape(op, "tokens", tokens, {B, T});
  if (dwte.ndim != 2 || dwte.size(1) != C) shape_error(op, "dwte must be (Vl,C), got " + dwte.shape_str());
  if (vocab_start < 0) shape_error(op, "vocab_start must not be negative");
  if (!dwpe.empty()) {
    expect_dtype(ctx, op, "dwpe", dwpe, DType::f32);
    if (dwpe.ndim != 2 || dwpe.size(1) != C || dwpe.size(0) < T)
      shape_error(op, "dwpe must be (maxT>=T,C), got " + dwpe.shape_str());
  }
  TESSERA_DISPATCH(ctx, embedding_backward, dwte, dwpe, dout, tokens, vocab_start);
}

void layernorm_forward(Context& ctx, Tensor out, Tensor mean, Tensor rstd, Tensor inp, Tensor weight,
                       Tensor bias) {
  const char* op = "layernorm_forward";
  expect_activation(ctx, op, "inp", inp);
  if (inp.ndim != 2) shape_error(op, "inp must be (N,C), got " + inp.shape_str());
  int64_t N = inp.size(0), C = inp.size(1);
  expect_activation(ctx, op, "out", out);
  expect_shape(op, "out", out, {N, C});
  expect_dtype(ctx, op, "mean", mean, DType::f32);
  expect_dtype(ctx, op, "rstd", rstd, DType::f32);
  expect_shape(op, "mean", mean, {N});
  expect_shape(op, "rstd", rstd, {N});
  expect_activation(ctx, op, "weight", weight);
  expect_activation(ctx, op, "bias", bias);
  expect_shape(op, "weight", weight, {C});
  expect_shape(op, "bias", bias, {C});
  expect_same_dtype(op, out, "out", inp, "inp");
  expect_same_dtype(op, weight, "weight", inp, "inp");
  expect_same_dtype(op, bias, "bias", inp, "inp");
  TESSERA_DISPATCH(ctx, layernorm_forward, out, mean, rstd, inp, weight, bias);
}

// The fused residual + norm ops: residual, out, b like a (N,C); rstd (N) f32; weight (C); out is not
// the residual (ops.h).
static void check_residual_norm(const Context& ctx, const char* op, const Tensor& residual, const Tensor& out,
                                const Tensor& rstd, const Tensor& a, const Tensor& b, const Tensor& weight) {
  expect_activation(ctx, op, "a", a);
  if (a.ndim != 2) shape_error(op, "a must be (N,C), got " + a.shape_str());
  const int64_t N = a.size(0), C = a.size(1);
  for (const auto& [name, t] : {std::pair<const char*, const Tensor&>{"b", b}, {"residual", residual}, {"out", out}}) {
    expect_activation(ctx, op, name, t);
    expect_shape(op, name, t, {N, C});
    expect_same_dtype(op, t, name, a, "a");
  }
  if (out.data == residual.data && N * C > 0) shape_error(op, "out must not be the residual tensor");
  expect_dtype(ctx, op, "rstd", rstd, DType::f32);
  expect_shape(op, "rstd", rstd, {N});
  expect_activation(ctx, op, "weight", weight);
  expect_shape(op, "weight", weight, {C});
  expect_same_dtype(op, weight, "weight", a, "a");
}

void residual_layernorm_forward(Context& ctx, Tensor residual, Tensor out, Tensor mean, Tensor rstd, Tensor a,
                                Tensor b, Tensor weight, Tensor bias) {
  const char* op = "residual_layernorm_forward";
  check_residual_norm(ctx, op, residual, out, rstd, a, b, weight);
  expect_dtype(ctx, op, "mean", mean, DType::f32);
  expect_shape(op, "mean", mean, {a.size(0)});
  expect_activation(ctx, op, "bias", bias);
  expect_shape(op, "bias", bias, {a.size(1)});
  expect_same_dtype(op, bias, "bias", a, "a");
  TESSERA_DISPATCH_FAST(ctx, residual_layernorm_forward, residual_layernorm_forward_one_pass, residual, out, mean, rstd,
                        a, b, weight, bias);
}

void layernorm_backward(Context& ctx, Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                        Tensor weight, Tensor mean, Tensor rstd) {
  const char* op = "layernorm_backward";
  expect_activation(ctx, op, "inp", inp);
  if (inp.ndim != 2) shape_error(op, "inp must be (N,C), got " + inp.shape_str());
  int64_t N = inp.size(0), C = inp.size(1);
  expect_activation(ctx, op, "dinp", dinp);
  expect_activation(ctx, op, "dout", dout);
  expect_shape(op, "dinp", dinp, {N, C});
  expect_shape(op, "dout", dout, {N, C});
  expect_dtype(ctx, op, "dweight", dweight, DType::f32);
  expect_dtype(ctx, op, "dbias", dbias, DType::f32);
  expect_shape(op, "dweight", dweight, {C});
  expect_shape(op, "dbias", dbias, {C});
  expect_activation(ctx, op, "weight", weight);
  expect_shape(op, "weight", weight, {C});
  expect_dtype(ctx, op, "mean", mean, DType::f32);
  expect_dtype(ctx, op, "rstd", rstd, DType::f32);
  expect_shape(op, "mean", mean, {N});
  expect_shape(op, "rstd", rstd, {N});
  expect_same_dtype(op, dinp, "dinp", inp, "inp");
  expect_same_dtype(op, dout, "dout", inp, "inp");
  expect_same_dtype(op, weight, "weight", inp, "inp");
  TESSERA_DISPATCH(ctx, layernorm_backward, dinp, dweight, dbias, dout, inp, weight, mean, rstd);
}

void rmsnorm_forward(Context& ctx, Tensor out, Tensor rstd, Tensor inp, Tensor weight, float eps) {
  const char* op = "rmsnorm_forward";
  expect_activation(ctx, op, "inp", inp);
  if (inp.ndim != 2) shape_error(op, "inp must be (N,C), got " + inp.shape_str());
  const int64_t N = inp.size(0), C = inp.size(1);
  expect_activation(ctx, op, "out", out);
  expect_shape(op, "out", out, {N, C});
  expect_dtype(ctx, op, "rstd", rstd, DType::f32);
  expect_shape(op, "rstd", rstd, {N});
  expect_activation(ctx, op, "weight", weight);
  expect_shape(op, "weight", weight, {C});
  expect_same_dtype(op, out, "out", inp, "inp");
  expect_same_dtype(op, weight, "weight", inp, "inp");
  if (!(eps > 0.0f)) shape_error(op, "eps must be positive, got " + std::to_string(eps));
  TESSERA_DISPATCH(ctx, rmsnorm_forward, out, rstd, inp, weight, eps);
}

void residual_rmsnorm_forward(Context& ctx, Tensor residual, Tensor out, Tensor rstd, Tensor a, Tensor b,
                              Tensor weight, float eps) {
  const char* op = "residual_rmsnorm_forward";
  check_residual_norm(ctx, op, residual, out, rstd, a, b, weight);
  if (!(eps > 0.0f)) shape_error(op, "eps must be positive, got " + std::to_string(eps));
  TESSERA_DISPATCH_FAST(ctx, residual_rmsnorm_forward, residual_rmsnorm_forward_one_pass, residual, out, rstd, a, b,
                        weight, eps);
}

void rmsnorm_backward(Context& ctx, Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight,
                      Tensor rstd) {
  const char* op = "rmsnorm_backward";
  expect_activation(ctx, op, "inp", inp);
  if (inp.ndim != 2) shape_error(op, "inp must be (N,C), got " + inp.shape_str());
  const int64_t N = inp.size(0), C = inp.size(1);
  expect_activation(ctx, op, "dinp", dinp);
  expect_activation(ctx, op, "dout", dout);
  expect_shape(op, "dinp", dinp, {N, C});
  expect_shape(op, "dout", dout, {N, C});
  expect_dtype(ctx, op, "dweight", dweight, DType::f32);
  expect_shape(op, "dweight", dweight, {C});
  expect_activation(ctx, op, "weight", weight);
  expect_shape(op, "weight", weight, {C});
  expect_dtype(ctx, op, "rstd", rstd, DType::f32);
  expect_shape(op, "rstd", rstd, {N});
  expect_same_dtype(op, dinp, "dinp", inp, "inp");
  expect_same_dtype(op, dout, "dout", inp, "inp");
  expect_same_dtype(op, weight, "weight", inp, "inp");
  TESSERA_DISPATCH(ctx, rmsnorm_backward, dinp, dweight, dout, inp, weight, rstd);
}

void matmul_forward(Context& ctx, Tensor out, Tensor pre_gelu, Tensor inp, Tensor weight, Tensor bias,
                    Epilogue epilogue) {
  const char* op = "matmul_forward";
  expect_activation(ctx, op, "inp", inp);
  expect_activation(ctx, op, "weight", weight);
  expect_activation(ctx, op, "out", out);
  if (inp.ndim != 2 || weight.ndim != 2) shape_error(op, "inp (N,C) and weight (OC,C) must be 2-D");
  int64_t N = inp.size(0), C = inp.size(1), OC = weight.size(0);
  if (weight.size(1) != C) shape_error(op, "weight " + weight.shape_str() + " does not match inp " + inp.shape_str());
  expect_shape(op, "out", out, {N, OC});
  expect_same_dtype(op, out, "out", inp, "inp");
  expect_same_dtype(op, weight, "weight", inp, "inp");
  if (!bias.empty()) {
    expect_activation(ctx, op, "bias", bias);
    expect_shape(op, "bias", bias, {OC});
    expect_same_dtype(op, bias, "bias", inp, "inp");
  }
  if (epilogue == Epilogue::gelu) {
    expect_activation(ctx, op, "pre_gelu", pre_gelu);
    expect_shape(op, "pre_gelu", pre_gelu, {N, OC});
    expect_same_dtype(op, pre_gelu, "pre_gelu", inp, "inp");
  } else if (!pre_gelu.empty()) {
    shape_error(op, "pre_gelu given without the gelu epilogue");
  }
  TESSERA_DISPATCH(ctx, matmul_forward, out, pre_gelu, inp, weight, bias, epilogue);
}

void matmul_backward(Context& ctx, Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                     Tensor weight) {
  const char* op = "matmul_backward";
  expect_activation(ctx, op, "inp", inp);
  expect_activation(ctx, op, "weight", weight);
  expect_activation(ctx, op, "dout", dout);
  if (inp.ndim != 2 || weight.ndim != 2 || dout.ndim != 2) shape_error(op, "inp, weight and dout must be 2-D");
  int64_t N = inp.size(0), C = inp.size(1), OC = weight.size(0);
  if (weight.size(1) != C) shape_error(op, "weight " + weight.shape_str() + " does not match inp " + inp.shape_str());
  expect_shape(op, "dout", dout, {N, OC});
  expect_same_dtype(op, dout, "dout", inp, "inp");
  expect_same_dtype(op, weight, "weight", inp, "inp");
  if (!dinp.empty()) {
    expect_activation(ctx, op, "dinp", dinp);
    expect_shape(op, "dinp", dinp, {N, C});
    expect_same_dtype(op, dinp, "dinp", inp, "inp");
  }
  expect_dtype(ctx, op, "dweight", dweight, DType::f32);
  expect_shape(op, "dweight", dweight, {OC, C});
  if (!dbias.empty()) {
    expect_dtype(ctx, op, "dbias", dbias, DType::f32);
    expect_shape(op, "dbias", dbias, {OC});
  }
  TESSERA_DISPATCH(ctx, matmul_backward, dinp, dweight, dbias, dout, inp, weight);
}

static void expect_same_elementwise(const Context& ctx, const char* op, const Tensor& a, const char* an,
                                    const Tensor& b, const char* bn) {
  expect_activation(ctx, op, an, a);
  expect_activation(ctx, op, bn, b);
  if (a.numel() != b.numel()) shape_error(op, std::string(an) + " " + a.shape_str() + " vs " + bn + " " + b.shape_str());
  expect_same_dtype(op, a, an, b, bn);
}

void gelu_forward(Context& ctx, Tensor out, Tensor inp) {
  expect_same_elementwise(ctx, "gelu_forward", out, "out", inp, "inp");
  TESSERA_DISPATCH(ctx, gelu_forward, out, inp);
}

void gelu_backward(Context& ctx, Tensor dinp, Tensor inp, Tensor dout) {
  expect_same_elementwise(ctx, "gelu_backward", dinp, "dinp", inp, "inp");
  expect_same_elementwise(ctx, "gelu_backward", dout, "dout", inp, "inp");
  TESSERA_DISPATCH(ctx, gelu_backward, dinp, inp, dout);
}

void residual_forward(Context& ctx, Tensor out, Tensor a, Tensor b) {
  expect_same_elementwise(ctx, "residual_forward", out, "out", a, "a");
  expect_same_elementwise(ctx, "residual_forward", b, "b", a, "a");
  TESSERA_DISPATCH(ctx, residual_forward, out, a, b);
}

// inp (N,2F) = [gate | up], out (N,F), the same dtype.
static void check_swiglu_shapes(const Context& ctx, const char* op, const Tensor& half, const char* half_name,
                                const Tensor& inp) {
  expect_activation(ctx, op, "inp", inp);
  expect_activation(ctx, op, half_name, half);
  if (inp.ndim != 2 || inp.size(1) % 2 != 0)
    shape_error(op, "inp must be (N,2F): gate and up side by side, got " + inp.shape_str());
  expect_shape(op, half_name, half, {inp.size(0), inp.size(1) / 2});
  expect_same_dtype(op, half, half_name, inp, "inp");
}

void swiglu_forward(Context& ctx, Tensor out, Tensor inp) {
  check_swiglu_shapes(ctx, "swiglu_forward", out, "out", inp);
  TESSERA_DISPATCH(ctx, swiglu_forward, out, inp);
}

void swiglu_backward(Context& ctx, Tensor dinp, Tensor dout, Tensor inp) {
  const char* op = "swiglu_backward";
  check_swiglu_shapes(ctx, op, dout, "dout", inp);
  expect_activation(ctx, op, "dinp", dinp);
  expect_shape(op, "dinp", dinp, {inp.size(0), inp.size(1)});
  expect_same_dtype(op, dinp, "dinp", inp, "inp");
  TESSERA_DISPATCH(ctx, swiglu_backward, dinp, dout, inp);
}

// out and in (B,T,(NH+2*NKV)*HS) alike, NKV dividing NH, HS even; valid frequencies.
static void check_rope(const Context& ctx, const char* op, const Tensor& out, const Tensor& in, int n_head,
                       int n_kv_head, const RopeParams& rope, int position_offset) {
  expect_activation(ctx, op, "out", out);
  expect_activation(ctx, op, "in", in);
  if (n_head <= 0 || n_kv_head <= 0 || n_head % n_kv_head != 0)
    shape_error(op, "n_kv_head " + std::to_string(n_kv_head) + " must be positive and divide n_head " +
                        std::to_string(n_head));
  const int64_t parts = int64_t(n_head) + 2 * int64_t(n_kv_head);
  if (in.ndim != 3 || in.size(2) == 0 || in.size(2) % parts != 0 || (in.size(2) / parts) % 2 != 0)
    shape_error(op, "qkv must be (B,T,(NH+2*NKV)*HS) with NH=" + std::to_string(n_head) + ", NKV=" +
                        std::to_string(n_kv_head) + " and HS even, got " + in.shape_str());
  expect_shape(op, "out", out, {in.size(0), in.size(1), in.size(2)});
  expect_same_dtype(op, out, "out", in, "in");
  if (position_offset < 0) shape_error(op, "position_offset must not be negative");
  if (!(rope.theta > 1.0)) shape_error(op, "rope theta must be above 1, got " + std::to_string(rope.theta));
  if (rope.factor != 0.0 && !(rope.factor >= 1.0 && rope.low_freq_factor > 0.0 &&
                              rope.high_freq_factor > rope.low_freq_factor && rope.original_max_position_embeddings > 0))
    shape_error(op, "Llama 3 rope scaling needs factor >= 1, 0 < low_freq_factor < high_freq_factor and "
                    "original_max_position_embeddings > 0");
}

void rope_forward(Context& ctx, Tensor out, Tensor qkv, int n_head, int n_kv_head, const RopeParams& rope,
                  int position_offset) {
  check_rope(ctx, "rope_forward", out, qkv, n_head, n_kv_head, rope, position_offset);
  TESSERA_DISPATCH(ctx, rope_forward, out, qkv, n_head, n_kv_head, rope, position_offset);
}

void rope_backward(Context& ctx, Tensor dqkv, Tensor dout, int n_head, int n_kv_head, const RopeParams& rope,
                   int position_offset) {
  check_rope(ctx, "rope_backward", dqkv, dout, n_head, n_kv_head, rope, position_offset);
  TESSERA_DISPATCH(ctx, rope_backward, dqkv, dout, n_head, n_kv_head, rope, position_offset);
}

// qkv (B,T,(NH+2*NKV)*HS), out (B,T,NH*HS), stats (B,NH,T) f32, with NKV dividing NH.
static void check_attention_shapes(const Context& ctx, const char* op, const Tensor& out, const Tensor& stats,
                                   const Tensor& qkv, int n_head, int n_kv_head) {
  expect_activation(ctx, op, "qkv", qkv);
  expect_activation(ctx, op, "out", out);
  if (n_head <= 0 || n_kv_head <= 0 || n_head % n_kv_head != 0)
    shape_error(op, "n_kv_head " + std::to_string(n_kv_head) + " must be positive and divide n_head " +
                        std::to_string(n_head));
  const int64_t parts = int64_t(n_head) + 2 * int64_t(n_kv_head);
  if (qkv.ndim != 3 || qkv.size(2) == 0 || qkv.size(2) % parts != 0)
    shape_error(op, "qkv must be (B,T,(NH+2*NKV)*HS) with NH=" + std::to_string(n_head) + ", NKV=" +
                        std::to_string(n_kv_head) + ", got " + qkv.shape_str());
  const int64_t B = qkv.size(0), T = qkv.size(1), HS = qkv.size(2) / parts;
  expect_shape(op, "out", out, {B, T, n_head * HS});
  expect_same_dtype(op, out, "out", qkv, "qkv");
  expect_dtype(ctx, op, "stats", stats, DType::f32);
  expect_shape(op, "stats", stats, {B, n_head, T});
}

void attention_forward(Context& ctx, Tensor out, Tensor stats, Tensor qkv, int n_head, int n_kv_head) {
  check_attention_shapes(ctx, "attention_forward", out, stats, qkv, n_head, n_kv_head);
  TESSERA_DISPATCH_FAST(ctx, attention_forward, flash_attention_forward, out, stats, qkv, n_head, n_kv_head);
}

void attention_backward(Context& ctx, Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor stats, int n_head,
                        int n_kv_head) {
  const char* op = "attention_backward";
  check_attention_shapes(ctx, op, out, stats, qkv, n_head, n_kv_head);
  expect_activation(ctx, op, "dqkv", dqkv);
  expect_activation(ctx, op, "dout", dout);
  expect_shape(op, "dqkv", dqkv, {qkv.size(0), qkv.size(1), qkv.size(2)});
  expect_shape(op, "dout", dout, {out.size(0), out.size(1), out.size(2)});
  expect_same_dtype(op, dqkv, "dqkv", qkv, "qkv");
  expect_same_dtype(op, dout, "dout", qkv, "qkv");
  TESSERA_DISPATCH_FAST(ctx, attention_backward, flash_attention_backward, dqkv, dout, qkv, out, stats, n_head,
                        n_kv_head);
}

void crossentropy_forward_backward(Context& ctx, Tensor losses, Tensor dlogits, Tensor logits, Tensor targets,
                                   int vocab_size, float dloss) {
  const char* op = "crossentropy_forward_backward";
  expect_activation(ctx, op, "logits", logits);
  if (logits.ndim != 2) shape_error(op, "logits must be (N,Vp), got " + logits.shape_str());
  int64_t N = logits.size(0), Vp = logits.size(1);
  if (vocab_size <= 0 || vocab_size > Vp)
    shape_error(op, "vocab_size " + std::to_string(vocab_size) + " outside (0, " + std::to_string(Vp) + "]");
  expect_dtype(ctx, op, "losses", losses, DType::f32);
  expect_shape(op, "losses", losses, {N});
  expect_dtype(ctx, op, "targets", targets, DType::i32);
  if (targets.numel() != N) shape_error(op, "targets " + targets.shape_str() + " do not match " + std::to_string(N) + " rows");
  if (!dlogits.empty()) {
    expect_activation(ctx, op, "dlogits", dlogits);
    expect_shape(op, "dlogits", dlogits, {N, Vp});
    expect_same_dtype(op, dlogits, "dlogits", logits, "logits");
  }
  TESSERA_DISPATCH(ctx, crossentropy_forward_backward, losses, dlogits, logits, targets, vocab_size, dloss);
}

// The vocabulary-parallel steps share these: logits (N,Vl) an activation, 0 <= valid <= Vl, and
// every per-row tensor (N) f32 on the context's device.
static void check_vp_logits(const Context& ctx, const char* op, const Tensor& logits, int valid) {
  expect_activation(ctx, op, "logits", logits);
  if (logits.ndim != 2) shape_error(op, "logits must be (N,Vl), got " + logits.shape_str());
  if (valid < 0 || valid > logits.size(1))
    shape_error(op, "valid " + std::to_string(valid) + " outside [0, " + std::to_string(logits.size(1)) + "]");
}

static void expect_row_stat(const Context& ctx, const char* op, const char* name, const Tensor& t, int64_t N) {
  expect_dtype(ctx, op, name, t, DType::f32);
  expect_shape(op, name, t, {N});
}

static void check_vp_targets(const Context& ctx, const char* op, const Tensor& targets, int64_t N, int vocab_start) {
  expect_dtype(ctx, op, "targets", targets, DType::i32);
  if (targets.numel() != N) shape_error(op, "targets " + targets.shape_str() + " do not match " + std::to_string(N) + " rows");
  if (vocab_start < 0) shape_error(op, "vocab_start " + std::to_string(vocab_start) + " is negative");
}

void crossentropy_vp_max(Context& ctx, Tensor row_max, Tensor logits, int valid) {
  const char* op = "crossentropy_vp_max";
  check_vp_logits(ctx, op, logits, valid);
  expect_row_stat(ctx, op, "row_max", row_max, logits.size(0));
  TESSERA_DISPATCH(ctx, crossentropy_vp_max, row_max, logits, valid);
}

void crossentropy_vp_sums(Context& ctx, Tensor sum_exp, Tensor target_logit, Tensor logits, Tensor row_max,
                          Tensor targets, int vocab_start, int valid) {
  const char* op = "crossentropy_vp_sums";
  check_vp_logits(ctx, op, logits, valid);
  const int64_t N = logits.size(0);
  expect_row_stat(ctx, op, "sum_exp", sum_exp, N);
  expect_row_stat(ctx, op, "target_logit", target_logit, N);
  expect_row_stat(ctx, op, "row_max", row_max, N);
  check_vp_targets(ctx, op, targets, N, vocab_start);
  TESSERA_DISPATCH(ctx, crossentropy_vp_sums, sum_exp, target_logit, logits, row_max, targets, vocab_start, valid);
}

void crossentropy_vp_loss(Context& ctx, Tensor losses, Tensor sum_exp, Tensor target_logit, Tensor row_max) {
  const char* op = "crossentropy_vp_loss";
  expect_dtype(ctx, op, "losses", losses, DType::f32);
  if (losses.ndim != 1) shape_error(op, "losses must be (N), got " + losses.shape_str());
  const int64_t N = losses.size(0);
  expect_row_stat(ctx, op, "sum_exp", sum_exp, N);
  expect_row_stat(ctx, op, "target_logit", target_logit, N);
  expect_row_stat(ctx, op, "row_max", row_max, N);
  TESSERA_DISPATCH(ctx, crossentropy_vp_loss, losses, sum_exp, target_logit, row_max);
}

void crossentropy_vp_backward(Context& ctx, Tensor dlogits, Tensor logits, Tensor row_max, Tensor sum_exp,
                              Tensor targets, int vocab_start, int valid, float dloss) {
  const char* op = "crossentropy_vp_backward";
  check_vp_logits(ctx, op, logits, valid);
  const int64_t N = logits.size(0), Vl = logits.size(1);
  expect_activation(ctx, op, "dlogits", dlogits);
  expect_shape(op, "dlogits", dlogits, {N, Vl});
  expect_same_dtype(op, dlogits, "dlogits", logits, "logits");
  expect_row_stat(ctx, op, "row_max", row_max, N);
  expect_row_stat(ctx, op, "sum_exp", sum_exp, N);
  check_vp_targets(ctx, op, targets, N, vocab_start);
  TESSERA_DISPATCH(ctx, crossentropy_vp_backward, dlogits, logits, row_max, sum_exp, targets, vocab_start, valid,
                   dloss);
}

void adamw_update(Context& ctx, Tensor param, Tensor master, Tensor m, Tensor v, Tensor grad,
                  const AdamWParams& hp) {
  const char* op = "adamw_update";
  expect_activation(ctx, op, "param", param);
  int64_t n = param.numel();
  for (auto [name, t] : {std::pair<const char*, Tensor>{"m", m}, {"v", v}, {"grad", grad}}) {
    expect_dtype(ctx, op, name, t, DType::f32);
    if (t.numel() != n) shape_error(op, std::string(name) + " " + t.shape_str() + " vs param " + param.shape_str());
  }
  if (master.empty()) {
    if (param.dtype != DType::f32) shape_error(op, "a bf16 param needs an fp32 master copy");
  } else {
    expect_dtype(ctx, op, "master", master, DType::f32);
    if (master.numel() != n) shape_error(op, "master " + master.shape_str() + " vs param " + param.shape_str());
  }
  if (hp.step < 1) shape_error(op, "step must be >= 1");
  TESSERA_DISPATCH(ctx, adamw_update, param, master, m, v, grad, hp);
}

double sum_of_squares(Context& ctx, Tensor grad) {
  expect_dtype(ctx, "sum_of_squares", "grad", grad, DType::f32);
  return TESSERA_DISPATCH(ctx, sum_of_squares, grad);
}

void convert(Context& ctx, Tensor dst, Tensor src) {
  const char* op = "convert";
  expect_device(ctx, op, "dst", dst);
  expect_device(ctx, op, "src", src);
  if (dst.numel() != src.numel()) shape_error(op, "dst " + dst.shape_str() + " vs src " + src.shape_str());
  auto float_like = [](DType t) { return t == DType::f32 || t == DType::bf16; };
  if (!float_like(dst.dtype) || !float_like(src.dtype)) shape_error(op, "only f32 and bf16 convert");
  TESSERA_DISPATCH(ctx, convert, dst, src);
}

void scale(Context& ctx, Tensor t, float factor) {
  expect_activation(ctx, "scale", "t", t);
  TESSERA_DISPATCH(ctx, scale, t, factor);
}

}  // namespace ops
}  // namespace tessera
