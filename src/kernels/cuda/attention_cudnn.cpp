// cuDNN frontend SDPA graphs for bf16 causal attention with grouped-query heads. Q (B,NH,T,HS) and
// K, V (B,NKV,T,HS) are described with strides straight into the packed qkv (B,T,NH+2*NKV,HS), and
// O, dO with strides into (B,T,NH,HS), so no transposes are needed; cuDNN pairs query head h with
// key/value head h / (NH/NKV), as ops.h does. The logsumexp stats (B,NH,T,1) f32 are cuDNN's
// natural-log "Stats".
#include "kernels/cuda/attention_cudnn.h"

#ifndef TESSERA_WITH_CUDNN_ATTENTION
#define TESSERA_WITH_CUDNN_ATTENTION 0
#endif

#if TESSERA_WITH_CUDNN_ATTENTION

#include <cudnn_frontend.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "core/cuda_resources.h"
#include "core/cudnn_check.h"
#include "kernels/graph_cache.h"

namespace tessera::cuda::cudnn_attention {

namespace fe = cudnn_frontend;

namespace {

// Tensor ids in the variant pack.
enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kdO, kdQ, kdK, kdV };

// One graph per shape and direction. The cache lives in the Context (its cuDNN handle and device
// are the ones every graph in it was built with), so nothing outlives the context.
struct GraphKey {
  int64_t B, NH, NKV, T, HS;
  bool backward;
  bool operator==(const GraphKey& o) const {
    return B == o.B && NH == o.NH && NKV == o.NKV && T == o.T && HS == o.HS && backward == o.backward;
  }
  std::string describe() const {
    return std::string("cuDNN's attention ") + (backward ? "backward" : "forward") + " graph for B=" +
           std::to_string(B) + " heads=" + std::to_string(NH) + " kv heads=" + std::to_string(NKV) +
           " T=" + std::to_string(T) + " head size=" + std::to_string(HS);
  }
};

struct GraphKeyHash {
  size_t operator()(const GraphKey& k) const {
    size_t h = 0;
    for (int64_t v : {k.B, k.NH, k.NKV, k.T, k.HS, int64_t(k.backward)}) h = h * 1000003u ^ std::hash<int64_t>()(v);
    return h;
  }
};

using AttentionGraphs = detail::GraphCache<GraphKey, fe::graph::Graph, GraphKeyHash>;

[[noreturn]] void throw_frontend_error(const char* call, fe::error_t status, const char* file, int line) {
  detail::throw_gpu_error("cuDNN frontend", call,
                          status.get_message() + " (set ContextOptions::use_cudnn_attention = false to use "
                                                 "the plain CUDA attention kernels instead)",
                          file, line);
}

#define TESSERA_CUDNN_FE_CHECK(call)                                             \
  do {                                                                           \
    fe::error_t tessera_fe_status_ = (call);                                     \
    if (tessera_fe_status_.is_bad()) throw_frontend_error(#call, tessera_fe_status_, __FILE__, __LINE__); \
  } while (0)

// Errors that mean "cuDNN has no engine for this graph here" (a silent fallback); anything else
// while building (a cuDNN or frontend version without this feature, a driver problem, a wrong
// graph description) falls back with one logged line and is counted, so the GPU check reports it.
bool is_unsupported(fe::error_t status) {
  return status.code == fe::error_code_t::GRAPH_NOT_SUPPORTED ||
         status.code == fe::error_code_t::HEURISTIC_QUERY_FAILED ||
         status.code == fe::error_code_t::GRAPH_EXECUTION_PLAN_CREATION_FAILED;
}

std::shared_ptr<fe::graph::Tensor_attributes> bf16_tensor(fe::graph::Graph& graph, const char* name, Uid uid,
                                                          const std::vector<int64_t>& dims,
                                                          const std::vector<int64_t>& strides) {
  return graph.tensor(fe::graph::Tensor_attributes()
                          .set_name(name)
                          .set_uid(uid)
                          .set_dim(dims)
                          .set_stride(strides)
                          .set_data_type(fe::DataType_t::BFLOAT16));
}

// Describes the forward (generate_stats) or backward SDPA graph for one shape and builds it with
// this handle.
AttentionGraphs::Entry build_graph(cudnnHandle_t handle, const GraphKey& key) {
  const int64_t B = key.B, NH = key.NH, NKV = key.NKV, T = key.T, HS = key.HS, C = NH * HS;
  const int64_t row = (NH + 2 * NKV) * HS;  // qkv elements per token
  const std::vector<int64_t> q_dims = {B, NH, T, HS}, kv_dims = {B, NKV, T, HS};
  const std::vector<int64_t> qkv_strides = {T * row, HS, row, 1};  // into qkv (B,T,NH+2*NKV,HS)
  const std::vector<int64_t> o_strides = {T * C, HS, C, 1};        // into out (B,T,NH,HS)
  const std::vector<int64_t> stats_dims = {B, NH, T, 1};
  const std::vector<int64_t> stats_strides = {NH * T, T, 1, 1};
  const float scale = 1.0f / std::sqrt(float(HS));

  auto graph = std::make_shared<fe::graph::Graph>();
  graph->set_io_data_type(fe::DataType_t::BFLOAT16)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  auto Q = bf16_tensor(*graph, "Q", kQ, q_dims, qkv_strides);
  auto K = bf16_tensor(*graph, "K", kK, kv_dims, qkv_strides);
  auto V = bf16_tensor(*graph, "V", kV, kv_dims, qkv_strides);

  if (!key.backward) {
    auto options = fe::graph::SDPA_attributes()
                       .set_name("tessera_attention_forward")
                       .set_generate_stats(true)
                       .set_attn_scale(scale)
                       .set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT)
                       .set_diagonal_band_right_bound(0);  // causal: key j <= query t
    auto outputs = graph->sdpa(Q, K, V, options);
    outputs[0]->set_output(true).set_uid(kO).set_dim(q_dims).set_stride(o_strides).set_data_type(
        fe::DataType_t::BFLOAT16);
    outputs[1]->set_output(true).set_uid(kStats).set_dim(stats_dims).set_stride(stats_strides).set_data_type(
        fe::DataType_t::FLOAT);
  } else {
    auto O = bf16_tensor(*graph, "O", kO, q_dims, o_strides);
    auto dO = bf16_tensor(*graph, "dO", kdO, q_dims, o_strides);
    auto stats = graph->tensor(fe::graph::Tensor_attributes()
                                   .set_name("Stats")
                                   .set_uid(kStats)
                                   .set_dim(stats_dims)
                                   .set_stride(stats_strides)
                                   .set_data_type(fe::DataType_t::FLOAT));
    auto options = fe::graph::SDPA_backward_attributes()
                       .set_name("tessera_attention_backward")
                       .set_attn_scale(scale)
                       .set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT)
                       .set_diagonal_band_right_bound(0)
                       .set_deterministic_algorithm(true);  // tessera's bitwise reproducibility
    auto grads = graph->sdpa_backward(Q, K, V, O, dO, stats, options);
    const Uid grad_uids[3] = {kdQ, kdK, kdV};
    for (int i = 0; i < 3; i++)
      grads[size_t(i)]
          ->set_output(true)
          .set_uid(grad_uids[i])
          .set_dim(i == 0 ? q_dims : kv_dims)
          .set_stride(qkv_strides)
          .set_data_type(fe::DataType_t::BFLOAT16);
  }

  // Each step in order; an unsupported graph at any of them means "use the plain kernels".
  const std::function<fe::error_t()> steps[] = {
      [&] { return graph->validate(); },
      [&] { return graph->build_operation_graph(handle); },
      [&] { return graph->create_execution_plans({fe::HeurMode_t::A}); },
      [&] { return graph->check_support(); },
      [&] { return graph->build_plans(fe::BuildPlanPolicy_t::HEURISTICS_CHOICE); },
  };
  AttentionGraphs::Entry entry;
  for (const auto& step : steps) {
    fe::error_t status = step();
    if (status.is_good()) continue;
    entry.outcome = is_unsupported(status) ? AttentionGraphs::Outcome::unsupported : AttentionGraphs::Outcome::error;
    entry.message = status.get_message();
    return entry;
  }
  fe::error_t status = graph->get_workspace_size(entry.workspace_bytes);
  if (status.is_bad()) {
    entry.outcome = AttentionGraphs::Outcome::error;
    entry.message = status.get_message();
    return entry;
  }
  entry.outcome = AttentionGraphs::Outcome::built;
  entry.graph = graph;
  return entry;
}

// cuDNN's kernels use 16-byte vector loads and TMA on every operand; views at other offsets
// (e.g. a layer's slice of a larger stats buffer) take the plain path instead.
bool aligned16(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data) % 16 == 0; }

// Whether the fused attention is meant for this call: bf16, a head size cuDNN takes, a cuDNN
// handle, the option on. (Misaligned operands, which cuDNN cannot take, count as a fallback.)
bool applies(const Context& ctx, const Tensor& qkv, int n_head, int n_kv_head) {
  const int64_t HS = qkv.size(2) / (n_head + 2 * n_kv_head);
  return qkv.dtype == DType::bf16 && HS % 8 == 0 && HS <= 128 && ctx.cuda() != nullptr &&
         ctx.cuda()->cudnn != nullptr && ctx.options().use_cudnn_attention;
}

// Q, K and V of the packed qkv (bf16 elements): q at 0, k after NH heads, v after NH+NKV heads.
struct QkvParts {
  uint16_t *q, *k, *v;
};

QkvParts parts_of(const Tensor& qkv, int n_head, int n_kv_head) {
  auto* q = static_cast<uint16_t*>(qkv.data);
  const int64_t HS = qkv.size(2) / (n_head + 2 * n_kv_head);
  return {q, q + n_head * HS, q + (n_head + n_kv_head) * HS};
}

GraphKey key_of(const Context& ctx, const Tensor& qkv, int n_head, int n_kv_head, bool backward) {
  const int64_t HS = qkv.size(2) / (n_head + 2 * n_kv_head);
  return GraphKey{qkv.size(0), n_head, n_kv_head, qkv.size(1), HS, backward};
}

Outcome execute(Context& ctx, const GraphKey& key, std::unordered_map<int64_t, void*>& pack) {
  detail::CudaResources* gpu = ctx.cuda();
  const AttentionGraphs::Entry& cached =
      gpu->kernel_state<AttentionGraphs>().get(key, key.describe(), [&] { return build_graph(gpu->cudnn, key); });
  if (!cached.graph) return Outcome::fell_back;
  TESSERA_CUDNN_CHECK(cudnnSetStream(gpu->cudnn, gpu->stream));
  // The scratch area is shared with other kernels, each using it only within its own launches
  // on this stream, so it is free here.
  void* workspace = cached.workspace_bytes > 0 ? gpu->scratch(size_t(cached.workspace_bytes)) : nullptr;
  TESSERA_CUDNN_FE_CHECK(cached.graph->execute(gpu->cudnn, pack, workspace));
  return Outcome::ran;
}

}  // namespace

Outcome try_forward(Context& ctx, Tensor out, Tensor stats, Tensor qkv, int n_head, int n_kv_head) {
  if (!applies(ctx, qkv, n_head, n_kv_head)) return Outcome::not_applicable;
  if (!aligned16(qkv) || !aligned16(out) || !aligned16(stats)) return Outcome::fell_back;
  const QkvParts in = parts_of(qkv, n_head, n_kv_head);
  std::unordered_map<int64_t, void*> pack = {
      {kQ, in.q}, {kK, in.k}, {kV, in.v}, {kO, out.data}, {kStats, stats.data}};
  return execute(ctx, key_of(ctx, qkv, n_head, n_kv_head, false), pack);
}

Outcome try_backward(Context& ctx, Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor stats, int n_head,
                     int n_kv_head) {
  if (!applies(ctx, qkv, n_head, n_kv_head)) return Outcome::not_applicable;
  if (!aligned16(qkv) || !aligned16(out) || !aligned16(stats) || !aligned16(dout) || !aligned16(dqkv))
    return Outcome::fell_back;
  const QkvParts in = parts_of(qkv, n_head, n_kv_head), grad = parts_of(dqkv, n_head, n_kv_head);
  std::unordered_map<int64_t, void*> pack = {
      {kQ, in.q},     {kK, in.k},     {kV, in.v},     {kO, out.data}, {kdO, dout.data},
      {kStats, stats.data}, {kdQ, grad.q}, {kdK, grad.k}, {kdV, grad.v}};
  return execute(ctx, key_of(ctx, qkv, n_head, n_kv_head, true), pack);
}

}  // namespace tessera::cuda::cudnn_attention

#else  // built without the cuDNN frontend: the plain kernels always run

namespace tessera::cuda::cudnn_attention {

Outcome try_forward(Context&, Tensor, Tensor, Tensor, int, int) { return Outcome::not_applicable; }
Outcome try_backward(Context&, Tensor, Tensor, Tensor, Tensor, Tensor, int, int) { return Outcome::not_applicable; }

}  // namespace tessera::cuda::cudnn_attention

#endif
