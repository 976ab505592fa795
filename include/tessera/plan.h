// The planner and cluster simulator: given a model shape, a global batch and a cluster, enumerate the
// parallel layouts (tp, cp, pp, dp, sp, ZeRO, recomputation, microbatching, schedule), estimate per-GPU
// memory and step time, and rank them.
//
// Cost model, in one place (every constant lives in ClusterSpec or SoftwareSpec, none per case):
//  - compute: each matmul at peak x gemm_efficiency x s(M) s(N) s(K) x K / (K + balance x out/2),
//    s(d) = d / (d + gemm_half_dim) for tiles a small dimension leaves part empty, the last factor for
//    the output tile's store (out bytes per element) that its K loop does not hide (balance = FLOPs
//    per byte of HBM); forward, input-gradient and weight-gradient (fp32 out) GEMMs each with their
//    own K. Attention by flash kernels at attention_efficiency (causal: half the model FLOPs; the
//    backward 2.5x the FLOPs at attention_backward_efficiency of the rate), or without them batched
//    GEMMs plus the softmax/dropout bytes; element-wise ops (norms, activations, dropout, residuals)
//    and the loss (SoftwareSpec::loss_bytes_per_logit) as bytes / (HBM bandwidth x efficiency).
//  - collectives as nccl-tests defines them: all-reduce moves 2(n-1)/n of the data per rank,
//    all-gather / reduce-scatter (n-1)/n, plus a latency term; a group spanning nodes with k members
//    per node runs at min(intra bandwidth, k x inter bandwidth per GPU) (one NIC per GPU, as NCCL's
//    rings use them). All-reduce across nodes pays NCCL's tree latency (log2 nodes); all-gather and
//    reduce-scatter have only rings, so n-1 inter-node steps per call. A collective hidden behind
//    compute still slows it by overlap_slowdown (the SMs and HBM bandwidth NCCL takes).
//  - the pipeline: make_schedule + simulate() with the per-microbatch chunk costs; the bubble, and the
//    activations in flight (memory), come from the simulation, not from a formula.
//  - data-parallel gradients (over dp x cp ranks: context-parallel ranks hold the same weights): in
//    buckets of max(bucket_params, bucket_params_per_dp x dp) parameters, an all-reduce, or under
//    ZeRO-1 a reduce-scatter overlapped with the last microbatch's backward and a parameter
//    all-gather overlapped with the next first forward (SoftwareSpec::overlap_*); ZeRO-2
//    reduce-scatters after every microbatch. The last bucket's reduction and the first bucket's
//    gather can hide behind nothing; only the rest overlaps.
//  - context parallelism (cp ranks each hold s/cp tokens of every sequence, load-balanced under the
//    causal mask): ring attention sends K/V blocks around the cp ranks, each step's transfer hidden
//    behind the previous block's attention (the backward sends K/V and their gradients); the
//    all-gather variant (Llama 3) gathers K/V before attention and reduce-scatters their gradients,
//    exposed; Ulysses all-to-alls Q/K/V to whole sequences of h/cp heads and back, exposed.
//  - memory: bf16 parameters (2 B) + gradients (SoftwareSpec::grad_bytes, / dp cp under ZeRO-2) +
//    optimizer state (SoftwareSpec::optimizer_bytes: fp32 master, m, v = 12 B; / dp cp under ZeRO-1);
//    activations per layer as Korthikanti et al. 2022 (34sbh + 5as^2b without parallelism,
//    generalised to grouped-query attention, gated MLPs and s/cp tokens per rank) times the layers a
//    pipeline rank keeps in flight (simulate()'s peak in-flight (microbatch, chunk) pairs x layers per
//    chunk); recomputed layers keep their input only.
//
// MFU convention: model FLOPs = 3 x the forward matmul FLOPs (attention scores and values counted in
// full, not halved for causality; the logits included; no recomputation). For GPT shapes this is
// Narayanan et al. 2021's 72 B s l h^2 (1 + s/(6h) + V/(12 l h)). hfu additionally counts the
// recomputed forward (Narayanan et al. 2021's "96 B s l h^2 (...)" with full recomputation).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tessera/schedule.h"

namespace tessera {
struct ModelConfig;
}

namespace tessera::plan {

// A transformer's shape: GPT-2 (learned positions, GeLU MLP, biases, tied embedding, dropout) or
// LLaMA (RoPE, SwiGLU, grouped-query attention, untied head, no dropout).
struct ModelShape {
  std::string name = "custom";
  // 64-bit so that products of sizes never wrap; validate() bounds each one (kMax* below).
  int64_t layers = 0, hidden = 0, heads = 0, kv_heads = 0, ffn = 0, vocab = 0, seq_len = 0;
  bool gated_mlp = false;      // SwiGLU: three FFN matrices
  bool tied_embedding = true;  // the lm head is the embedding matrix
  bool dropout = true;
  bool learned_positions = true;

  // gpt2, gpt2-medium, gpt2-large, gpt2-xl, gpt3-175b, mcore-177b (Megatron-Core's GPT-3 benchmark: vocab
  // 131,072, seq 4096), llama2-7b, llama2-13b, llama2-70b, llama3-8b, llama3-70b, llama3-405b. config_error
  // for an unknown name. tessera-train's presets (ModelConfig::preset_names(): tiny, llama-tiny,
  // llama3.2-1b, llama3.1-8b, ...) are accepted too, as of() their configuration.
  static ModelShape preset(const std::string& name);
  // The shape of a model tessera trains; seq_len is max_seq_len, or the original context of a model
  // whose rotary frequencies are scaled to a longer one (Llama 3.1: 8192 of 131072).
  static ModelShape of(const ModelConfig& config);
  static ModelShape gpt(int64_t layers, int64_t hidden, int64_t heads, int64_t vocab, int64_t seq_len);  // ffn = 4h
  static ModelShape llama(int64_t layers, int64_t hidden, int64_t heads, int64_t kv_heads, int64_t ffn, int64_t vocab,
                          int64_t seq_len);
  // Largest sizes the planner accepts (far beyond any model trained so far; larger values are typos
  // or overflowed arithmetic, and would overflow the planner's own products).
  static constexpr int64_t kMaxLayers = 100000, kMaxHidden = 1 << 20, kMaxFfn = 1 << 23, kMaxVocab = 1 << 24,
                           kMaxSeqLen = 1 << 24;
  // config_error naming the flag (--layers, --hidden, ...) for a non-positive or too large size, heads
  // not dividing hidden, kv heads not dividing heads.
  void validate() const;

  int64_t head_dim() const { return hidden / heads; }
  double layer_parameters() const;
  double embedding_parameters() const;  // token (+ position) embedding, + untied head
  double parameters() const;
  // Forward matmul FLOPs of one token through one layer (attention over seq_len positions in full).
  double layer_forward_flops_per_token() const;
  double logits_forward_flops_per_token() const;  // 2 h V
  // Model FLOPs of one training sequence (3 x forward, the MFU convention above).
  double model_flops_per_sequence() const;
  // With full recomputation's extra forward of every layer (Narayanan et al. 2021's hardware FLOPs).
  double hardware_flops_per_sequence_full_recompute() const;
  std::string describe() const;
};

// One GPU type in nodes. Bandwidths in bytes/s per GPU per direction, latencies in seconds.
struct ClusterSpec {
  std::string name = "custom";
  int gpus = 8, gpus_per_node = 8;
  double peak_flops = 0;          // dense bf16 per GPU
  double memory_bytes = 0;        // HBM per GPU
  double hbm_bandwidth = 0;
  double intra_bandwidth = 0, intra_latency = 0;  // NVLink
  double inter_bandwidth = 0, inter_latency = 0;  // InfiniBand, per GPU (one NIC each)
  // Achievable fractions (not per case): large-GEMM efficiency, saturating dimension, flash
  // attention efficiency, HBM efficiency, collective bus-bandwidth efficiency.
  double gemm_efficiency = 0.65, gemm_half_dim = 128, attention_efficiency = 0.5;
  double attention_backward_efficiency = 0.8;  // flash attention's backward rate relative to its forward
  double hbm_efficiency = 0.8, link_efficiency = 0.8;
  // Compute slows by this fraction of an overlapped collective's time: NCCL's kernels take SMs and
  // HBM bandwidth from the GEMMs they hide behind (16 of 132 SMs on H100 is 12%).
  double overlap_slowdown = 0.12;
  double memory_reserved_bytes = 4e9;  // framework, allocator fragmentation, NCCL buffers
  static constexpr int kMaxGpus = 1 << 20;  // validate(): more is a typo (or an overflowed product)

  // "a100" (80 GB, NVLink 300 GB/s, HDR InfiniBand 25 GB/s per GPU) or "h100" (NVLink 450 GB/s,
  // NDR 50 GB/s per GPU), `gpus` GPUs, 8 per node.
  static ClusterSpec preset(const std::string& name, int gpus);
  // Overrides fields from a JSON object with any of the keys above (same names; bandwidths in GB/s,
  // latencies in microseconds, memory in GB, peak in TFLOP/s, as the program flags take them).
  void apply_json(const std::string& json_text, const std::string& where);
  // config_error naming the flag (--gpus, --gpus-per-node, ...) for an impossible cluster.
  void validate() const;
  std::string describe() const;
};

// Context parallelism's attention exchange (a bit set in SoftwareSpec::context_parallel).
enum class ContextParallel {
  ring = 1,        // K/V blocks passed around the cp ranks, each transfer hidden behind a block's attention
  all_gather = 2,  // K/V all-gathered before attention, their gradients reduce-scattered (Llama 3)
  all_to_all = 4,  // Ulysses: Q/K/V all-to-all to whole sequences of heads/cp heads, and back
};
const char* context_parallel_name(ContextParallel k);  // "ring", "all-gather", "all-to-all"
// A comma-separated list of those names, or "none": the bit set.
unsigned parse_context_parallel(const std::string& list);

// Properties of the training software, not of the layout.
struct SoftwareSpec {
  std::string name = "tessera";
  bool flash_attention = true;
  bool overlap_grad_reduce = true;   // DP buckets start during the last backward
  bool overlap_param_gather = true;  // ZeRO-1's all-gather hidden behind the next forward
  bool tp_comm_overlap = false;      // TP collectives overlapped with the GEMMs around them
  // The backward's TP collectives that need not block (input-gradient reduction, SP's input re-gather
  // for the weight gradient) issued asynchronously behind the GEMMs (Megatron-LM since 2022).
  bool tp_async_backward = false;
  bool p2p_scatter_gather = true;    // pipeline sends split over tp ranks (Narayanan et al. 2021)
  double grad_reduce_bytes = 4;      // fp32 gradient reduction
  // Memory traffic of the loss per logit element, forward and backward, beyond the head GEMMs: 8 for a
  // fused softmax cross-entropy reading bf16 logits and writing bf16 gradients (tessera); 52 for an
  // unfused fp32 one (Megatron-LM: upcast, max, subtract, exp, sum, divide, scale, downcast).
  double loss_bytes_per_logit = 8;
  int max_zero = 1;                 // highest ZeRO stage the software has (2: gradients sharded too)
  bool uneven_chunks = true;        // pipeline chunks of unequal layer counts (the slowest one counts)
  bool short_stages = false;        // up to one empty chunk per stage (Llama 3: first and last stage a layer short)
  bool partial_recompute = false;   // full recomputation of only some layers per chunk
  bool elementwise_recompute = false;  // Recompute::elementwise (norms and MLP activation recomputed)
  // Bytes per parameter of the gradient buffer (fp32 main gradients: 4; a bf16 buffer: 2) and of the
  // optimizer state ZeRO-1 shards (fp32 master, m, v: 12; NeMo's distributed Adam with fp32 moments
  // and 16-bit master remainders: 10; with bf16 moments and no master copy: 4).
  double grad_bytes = 4, optimizer_bytes = 12;
  // Data-parallel buckets: max(bucket_params, bucket_params_per_dp x dp) parameters each (Megatron-
  // Core: 40M and 1M; tessera: 25 MiB of fp32 gradients, whatever dp).
  double bucket_params = 25.0 * (1 << 20) / 4, bucket_params_per_dp = 0;
  unsigned context_parallel = 0;  // ContextParallel bits the software has (0: none; tessera-train has none yet)
  // Its kernels' GEMM and attention rates relative to the card's (ClusterSpec::gemm_efficiency and
  // attention_efficiency, fitted on Megatron-Core r0.8, Megatron-LM 2021 and Llama 3 runs): a newer
  // kernel generation runs faster on the same card. Fitted per preset on its fit-set runs.
  double kernel_efficiency = 1;

  // "tessera" (the defaults above: what tessera-train runs), "megatron-core" (r0.8 with Transformer
  // Engine: fused attention, DP/TP/PP communication overlapped, distributed optimizer, unfused fp32
  // loss, every context-parallel variant), "megatron-lm-2021" (Narayanan et al.: no fused attention,
  // no overlap, fp16 gradient all-reduce), "megatron-lm-2022" (Korthikanti et al.: the same, with the
  // backward's TP collectives asynchronous), "llama3" (Meta's 2024 stack as its paper describes it:
  // FSDP sharding gradients, fp32 reduce-scatter, no TP overlap stated beyond the asynchronous
  // backward, a layer fewer on the first and last stage, element-wise recomputation only, the paper
  // reporting 8K sequences trained without activation checkpointing, and all-gather context
  // parallelism), "nemo-2024" (NeMo 24.x on Megatron-Core: as megatron-core, with Apex's distributed
  // Adam keeping a bf16 gradient buffer, bf16 gradient reduction, fp32 moments and 16-bit master
  // remainders, and a fused cross-entropy). config_error for another name.
  static SoftwareSpec preset(const std::string& name);
  // Overrides fields from a JSON object whose keys are the field names above ("context_parallel": a
  // list of names as parse_context_parallel takes); data_error naming `where` for an unknown key.
  void apply_json(const std::string& json_text, const std::string& where);
};

// selective: the attention core recomputed in the backward (Korthikanti et al. 2022; flash attention
// does so anyway). elementwise: that, and the norms and the MLP activation recomputed from their saved
// inputs (cheap element-wise work) instead of keeping their outputs. full: every layer from its input.
enum class Recompute { none, selective, elementwise, full };
const char* recompute_name(Recompute r);
Recompute parse_recompute(const std::string& s);  // none, selective, elementwise, full

struct Layout {
  int tp = 1, cp = 1, pp = 1, dp = 1;  // gpus = tp x cp x pp x dp
  ContextParallel cp_kind = ContextParallel::ring;
  bool sp = false;
  int zero = 0;  // 0, 1 or 2
  Recompute recompute = Recompute::none;
  int recompute_layers = 0;  // with Recompute::full: layers per chunk recomputed (0: all; Megatron's block method)
  int micro_batch = 1;    // sequences per microbatch (--batch-size)
  int microbatches = 1;   // per step and data-parallel rank
  ScheduleKind schedule = ScheduleKind::one_f_one_b;
  int virtual_stages = 1;
  int64_t gpus() const { return int64_t(tp) * cp * pp * dp; }
  // "tp8 pp16 dp8 sp zero1 rc=selective b=1 m=192 1f1b"; with context parallelism "tp8 cp16(ring) pp16 ...".
  std::string describe() const;
};

struct Memory {
  double parameters = 0, gradients = 0, optimizer = 0, activations = 0, reserved = 0;
  double total() const { return parameters + gradients + optimizer + activations + reserved; }
};

struct Prediction {
  Layout layout;
  Memory memory;
  bool fits = false;
  int peak_in_flight = 0;      // (microbatch, chunk) pairs on the busiest rank
  double step_time = 0;        // seconds
  double pipeline_time = 0;    // simulated forward/backward makespan
  double bubble_fraction = 0;  // from simulate()
  double tp_comm_time = 0;     // exposed, per step (inside the pipeline time)
  double cp_comm_time = 0;     // context-parallel exchange exposed, per step (inside the pipeline time)
  double p2p_time = 0;         // per step, per rank, total transfer time
  double dp_exposed_time = 0;  // after the pipeline
  double optimizer_time = 0;
  double exposed_comm_fraction = 0;  // (exposed TP + p2p + DP) / step
  double tokens_per_s = 0;
  double mfu = 0, hfu = 0;
  // What the simulation ran on, for predict_stragglers(): one microbatch's forward and backward of
  // one chunk, one pipeline transfer, the head and loss per microbatch (last stage), and what follows
  // the pipeline (exposed DP communication and the optimizer).
  double chunk_forward = 0, chunk_backward = 0, p2p_transfer = 0, head_per_microbatch = 0, after_pipeline = 0;
};

// Collectives: time for a group of n GPUs with k members per node, on `bytes` per rank (the larger
// buffer, nccl-tests' "size"). Bus bandwidth min(intra, k x inter) x link_efficiency when the group
// spans nodes, intra x link_efficiency inside one. Latency: 2(n-1) alpha for a ring all-reduce
// ((n-1) alpha for all-gather / reduce-scatter) inside a node; across nodes 2(k-1) alpha_intra +
// 2 ceil(log2 nodes) alpha_inter (NCCL's tree / ring mix; the ring's n alpha would dominate at 16k).
double all_reduce_time(const ClusterSpec& c, double bytes, int n, int per_node);
double all_gather_time(const ClusterSpec& c, double bytes, int n, int per_node);  // = reduce-scatter
double p2p_time(const ClusterSpec& c, double bytes, bool inter_node);
// All-to-all over n GPUs (k per node) of `bytes` per rank: (n-1)/n of it leaves each rank.
double all_to_all_time(const ClusterSpec& c, double bytes, int n, int per_node);

// Matmul efficiency of an (M x K) @ (K x N) GEMM on this GPU (fraction of peak) writing output_bytes
// per output element (2: bf16; 8: accumulating into fp32 gradients; 0: output traffic counted apart).
double gemm_efficiency(const ClusterSpec& c, double m, double n, double k, double output_bytes = 2);

// Activation bytes of one layer for one microbatch (b sequences), Korthikanti et al. 2022 generalised.
double layer_activation_bytes(const ModelShape& m, const Layout& l, const SoftwareSpec& sw);
// Everything but the activations in flight, then those from simulate().
Memory memory_per_gpu(const ModelShape& m, const ClusterSpec& c, const Layout& l, const SoftwareSpec& sw,
                      int peak_in_flight);

// Predicts one layout (no validity check beyond what it needs; see enumerate_layouts).
Prediction predict(const ModelShape& m, const ClusterSpec& c, const Layout& l, int global_batch,
                   const SoftwareSpec& sw = {});

constexpr int kMaxGlobalBatch = 1 << 24;  // sequences; more is a typo (or an overflowed product)

struct PlanOptions {
  std::vector<int> micro_batches = {1, 2, 4, 8};
  int max_virtual_stages = 24;        // interleaved: 2..this many chunks per stage
  int max_zero = 2;                   // ZeRO stages 0..this (and the software's SoftwareSpec::max_zero)
  bool allow_uneven_pipeline = true;  // pp x v need not divide the layers (and SoftwareSpec::uneven_chunks)
  bool allow_short_stages = true;     // pp x v may exceed the layers by < pp (and SoftwareSpec::short_stages)
  int max_cp = 32;                    // context parallelism 2, 4, ... up to this (and the software's variants)
  int64_t min_cp_tokens = 2048;       // tokens of a sequence each cp rank keeps at least
  // When set, only layouts for which it returns true are predicted (e.g. a stated tp, cp, pp).
  std::function<bool(const Layout&)> only;
};

// Every valid layout: tp within a node dividing heads and kv heads, cp (a power of two, 2cp dividing
// the sequence for the causal load balance, all-to-all also dividing the heads per tp rank), pp x v <=
// layers (or < layers + pp with short stages), dp = N/(tp cp pp),
// dp dividing the global batch, micro batch dividing the per-rank batch, interleaved needing m % pp == 0.
// context_parallel: the ContextParallel variants to try (SoftwareSpec::context_parallel; 0: none).
std::vector<Layout> enumerate_layouts(const ModelShape& m, const ClusterSpec& c, int global_batch,
                                      const PlanOptions& o = {}, unsigned context_parallel = 0);

struct PlanResult {
  std::vector<Prediction> ranked;  // fitting layouts, fastest first
  std::string software;            // SoftwareSpec::name
  unsigned context_parallel = 0;   // SoftwareSpec::context_parallel
  int64_t layouts_considered = 0, layouts_fitting = 0, simulations = 0;
  double seconds = 0;              // planning time
};
PlanResult plan(const ModelShape& m, const ClusterSpec& c, int global_batch, const SoftwareSpec& sw = {},
                const PlanOptions& o = {});

// The chosen layout as tessera-train flags, e.g. "mpirun -np 1024 tessera-train --model gpt2-xl
// --seq-len 1024 --batch-size 4 --tp 2 --pp 1 --dp 512 --sp --zero 1 --microbatches 1 --schedule 1f1b
// --virtual-stages 1 --recompute none", with notes for what tessera-train lacks. A layout with context
// parallelism gets no command at all (tessera-train has no --cp), only a sentence saying so.
std::string train_command(const ModelShape& m, const Prediction& p);
// A ranked table (top rows) with a header naming the MFU convention.
std::string format_table(const ModelShape& m, const ClusterSpec& c, int global_batch, const PlanResult& r, int top);
std::string to_json(const ModelShape& m, const ClusterSpec& c, int global_batch, const PlanResult& r, int top);

// Synchronous training's "short board": every step waits for its slowest GPU. A stage of the pipeline
// runs at the pace of the slowest of its tp x dp GPUs (tensor-parallel collectives every layer, the
// data-parallel reduction every step), and the stages through the same discrete-event simulation of
// the schedule as predict().
struct StragglerModel {
  double slowdown = 0;  // one GPU (of the first stage) this much slower: 0.05 = 5%
  double jitter = 0;    // per step and GPU, computation time x (1 + jitter x N(0, 1))
  int samples = 32;     // steps sampled (fixed seed) for the expected step time
  uint64_t seed = 1;
};
struct StragglerEstimate {
  double base_step_time = 0, step_time = 0;  // without and with the disturbance (same simulation)
  double loss() const { return base_step_time > 0 ? step_time / base_step_time - 1 : 0; }
};
StragglerEstimate predict_stragglers(const Prediction& p, const StragglerModel& s);

// Failures and checkpoints (Young 1974 / Daly 2006).
struct FailureModel {
  double gpu_hours_per_failure = 50000;  // Llama 3: 419 interruptions in 54 days on 16,384 GPUs
  double checkpoint_blocking_s = 10;     // training stalls this long per checkpoint
  double checkpoint_total_s = 60;        // until the checkpoint is durable (the interval is at least this)
  double restart_s = 600;                // detect, restart, reload
};
struct FailureEstimate {
  int gpus = 0;
  double mtbf_s = 0;       // of the whole job
  double interval_s = 0;   // optimal checkpoint interval: max(sqrt(2 delta M), total save time)
  double effective_ratio = 0;  // useful training time / wall time
};
double young_daly_interval(double blocking_s, double mtbf_s);  // sqrt(2 delta M)
FailureEstimate estimate_failures(const FailureModel& f, int gpus);

}  // namespace tessera::plan
