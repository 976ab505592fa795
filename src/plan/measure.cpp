// tessera-calibrate's measurements (calibration.h): the Trainer's kernels at the model's shapes (their
// arguments from the op registry) and the Communicator's collectives, timed on every rank at once.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <random>
#include <thread>

#include "kernels/ops.h"
#include "kernels/registry.h"
#include "tessera/buffer.h"
#include "tessera/calibration.h"
#include "tessera/communicator.h"
#include "tessera/context.h"
#include "tessera/error.h"

namespace tessera::plan {

namespace {

using Clock = std::chrono::steady_clock;

float all_ranks(Context& ctx, Communicator& world, float value, ReduceOp op) {
  Buffer b(ctx, sizeof(float), ctx.device());
  Tensor x = b.view({1}, DType::f32);
  copy_tensor(ctx, x, Tensor(&value, {1}, DType::f32, Device::cpu));
  world.all_reduce(x, op).wait();
  copy_tensor(ctx, Tensor(&value, {1}, DType::f32, Device::cpu), x);
  return value;
}

// Calls of `fn` in a row that last about 10 ms, the same number on every rank (the most any rank
// needs, so that all of them stay busy while timed). Back to back, as the Trainer runs its kernels:
// one call timed alone would include waking the CPU threads, and with more ranks than cores the
// ranks would not contend for the cores as they do in training.
int calls_per_timing(Context& ctx, Communicator& world, const std::function<void()>& fn) {
  constexpr double kWindow = 0.01;
  world.barrier();
  fn();
  ctx.synchronize();
  const auto w0 = Clock::now();
  fn();
  ctx.synchronize();
  const double once = std::chrono::duration<double>(Clock::now() - w0).count();
  const float wanted = float(std::min(1000.0, std::ceil(kWindow / std::max(once, 1e-7))));
  return std::max(1, int(all_ranks(ctx, world, wanted, ReduceOp::max)));
}

// Seconds per call of `calls` calls in a row, started together on every rank.
double time_calls(Context& ctx, Communicator& world, int calls, const std::function<void()>& fn) {
  world.barrier();
  const auto t0 = Clock::now();
  for (int k = 0; k < calls; ++k) fn();
  ctx.synchronize();
  return std::chrono::duration<double>(Clock::now() - t0).count() / calls;
}

double median_of(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Seconds per call of each of `fns`: the median of `reps` timings, averaged over the ranks of
// `world`. The repetitions are taken in turns (one timing of each call, then the next round): a
// shared VM's speed drifts by tens of percent over seconds, and with each call's repetitions taken
// together a slow spell fell on a few kernels only (one kernel's time differed by up to 2x between
// three calibrations in a row).
std::vector<double> time_on_all_in_turns(Context& ctx, Communicator& world, int reps,
                                         const std::vector<std::function<void()>>& fns) {
  std::vector<int> calls;
  for (const auto& fn : fns) calls.push_back(calls_per_timing(ctx, world, fn));
  std::vector<std::vector<double>> t(fns.size());
  for (int r = 0; r < reps; ++r)
    for (size_t i = 0; i < fns.size(); ++i) t[i].push_back(time_calls(ctx, world, calls[i], fns[i]));
  std::vector<double> out;
  for (const auto& ti : t) out.push_back(double(all_ranks(ctx, world, float(median_of(ti)), ReduceOp::avg)));
  return out;
}

double time_on_all(Context& ctx, Communicator& world, int reps, const std::function<void()>& fn) {
  return time_on_all_in_turns(ctx, world, reps, {fn})[0];
}

// Buffers with small random values (never zeros: denormal-free, realistic softmax inputs).
class Arena {
 public:
  explicit Arena(Context& ctx) : ctx_(ctx) {}
  Tensor f32(std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> host(static_cast<size_t>(n));
    std::uniform_real_distribution<float> u(-0.5f, 0.5f);
    for (float& v : host) v = u(rng_);
    return upload(shape, DType::f32, host.data(), size_t(n) * 4);
  }

 private:
  Tensor upload(const std::vector<int64_t>& shape, DType dtype, const void* data, size_t bytes) {
    buffers_.emplace_back(ctx_, bytes, ctx_.device());
    Tensor flat = buffers_.back().view({int64_t(bytes / 4)}, dtype);
    copy_tensor(ctx_, flat, Tensor(const_cast<void*>(data), {int64_t(bytes / 4)}, dtype, Device::cpu));
    Tensor t = flat;  // same memory, the requested shape
    t.ndim = int(shape.size());
    for (size_t i = 0; i < shape.size(); ++i) t.dims[i] = shape[i];
    return t;
  }
  Context& ctx_;
  std::mt19937 rng_{7};
  std::vector<Buffer> buffers_;
};

// One op sample (trainer_op_shapes' name and dims) as the op registry's entry and sizes.
std::pair<std::string, kernels::Dims> registry_case(const OpSample& s, const ModelConfig& cfg) {
  const std::vector<int64_t>& d = s.dims;
  if (s.op == "matmul_forward") return {s.op, {d[0], d[1], d[2], d[3], 1}};  // {N, K, OC, gelu}, with bias
  if (s.op == "matmul_backward") return {s.op, {d[0], d[1], d[2], 1, d[3]}};  // {N, K, OC, dbias}, with dinp
  if (s.op == "attention_forward" || s.op == "attention_backward")
    return {s.op, {d[0], d[1], d[2], d[2], d[3]}};  // {B, T, NH, HS}, multi-head
  if (s.op == "gelu_backward" || s.op == "residual_forward") return {s.op, {d[0] * d[1], 0}};
  if (s.op == "crossentropy_forward" || s.op == "crossentropy_backward")
    return {"crossentropy_forward_backward", {d[0], d[1], d[1], s.op == "crossentropy_backward" ? 1 : 0}};
  if (s.op == "embedding_forward" || s.op == "embedding_backward")
    return {s.op, {d[0], d[1], d[2], d[3], cfg.max_seq_len, 0}};
  if (s.op == "adamw") return {"adamw_update", {d[0], 1}};
  return {s.op, d};  // named and sized as in the registry (layernorm, sum_of_squares, LLaMA's ops)
}

// Places one op sample's arguments (float32, from the registry) on ctx's device, kept in `args`,
// and returns the call to time.
std::function<void()> make_op(Context& ctx, std::vector<kernels::Materialized>& args, const OpSample& s,
                              const ModelConfig& cfg) {
  const auto [name, dims] = registry_case(s, cfg);
  const kernels::OpEntry& entry = kernels::find_op(name);
  if (kernels::dim_names(entry).size() != dims.size())
    throw internal_error("measure_calibration: op sample " + s.op + " has " + std::to_string(dims.size()) +
                             " dims, the registry's " + name + " takes " + entry.dims,
                         TESSERA_HERE);
  const kernels::OpCall call = entry.make(dims, DType::f32, 7);
  args.push_back(kernels::materialize(ctx, call, {DType::f32}));
  const std::vector<Tensor> tensors = args.back().tensors;
  if (call.prepare) call.prepare(kernels::Via::dispatch, ctx, tensors);
  return [&ctx, run = call.run, tensors] { run(kernels::Via::dispatch, ctx, tensors); };
}

// What a blocking collective costs between computations, beyond its idle time, with every group
// doing the same at once (as tensor-parallel layers do): rounds of [the layer's largest matmul, a
// all-reduce of one activation (the Trainer's tensor-parallel reduction)] against the matmuls alone and
// the all-reduces alone. On a machine
// with a core per rank this is about zero; with more ranks than cores a rank reaching the collective
// waits for its partner's next time slice.
double measure_sync(Context& ctx, Communicator& world, Communicator& group, const ModelConfig& cfg, int B, int T, int reps) {
  constexpr int kRounds = 8;
  Arena a(ctx);
  const int64_t N = int64_t(B) * T, C = cfg.n_embd, OC = 4 * C / group.size();
  Tensor out = a.f32({N, OC}), inp = a.f32({N, C}), w = a.f32({OC, C}), bias = a.f32({OC}), activation = a.f32({N, C});
  Communicator* g = &group;
  auto compute = [&ctx, out, inp, w, bias] { ops::matmul_forward(ctx, out, Tensor(), inp, w, bias, Epilogue::none); };
  auto reduce = [g, activation] { g->all_reduce(activation, ReduceOp::sum).wait(); };
  const double alone = time_on_all(ctx, world, reps, [&] { for (int k = 0; k < kRounds; ++k) compute(); });
  const double idle = time_on_all(ctx, world, reps, [&] { for (int k = 0; k < kRounds; ++k) reduce(); });
  const double both = time_on_all(ctx, world, reps, [&] {
    for (int k = 0; k < kRounds; ++k) compute(), reduce();
  });
  return std::max(0.0, (both - alone - idle) / kRounds);
}

// How much faster a rank computes while half of the ranks wait in a blocking receive (as pipeline
// stages wait in their bubble) than while all of them compute, timed on the computing half: 1 with a
// core per thread, up to 2 when waiting ranks give their cores up completely, less when they keep
// spinning on them. The two cases alternate round by round (slow drifts of the machine cancel), and
// the ratio of the medians counts only with more threads than cores.
double measure_idle_speedup(Context& ctx, Communicator& world, const ModelConfig& cfg, int B, int T, int reps) {
  const int cores = int(std::thread::hardware_concurrency());
  if (world.size() < 2 || world.size() % 2 || cores <= 0 || world.size() * ctx.cpu_threads() <= cores) return 1.0;
  Arena a(ctx);
  const int64_t N = int64_t(B) * T, C = cfg.n_embd;
  Tensor out = a.f32({N, 4 * C}), inp = a.f32({N, C}), w = a.f32({4 * C, C}), bias = a.f32({4 * C}), token = a.f32({1});
  auto compute = [&] { ops::matmul_forward(ctx, out, Tensor(), inp, w, bias, Epilogue::none); };
  const double once = time_on_all(ctx, world, 3, compute);
  const int calls = std::max(1, int(all_ranks(ctx, world, float(std::ceil(0.03 / std::max(once, 1e-7))), ReduceOp::max)));
  // The first half computes, the second waits: as a pipeline's first stage runs while the rest wait
  // (stages are blocks of consecutive ranks).
  const int halfway = world.size() / 2;
  const bool computing = world.rank() < halfway;
  const int peer = computing ? world.rank() + halfway : world.rank() - halfway;
  auto timed = [&] {
    const auto t0 = Clock::now();
    for (int k = 0; k < calls; ++k) compute();
    ctx.synchronize();
    return std::chrono::duration<double>(Clock::now() - t0).count() / calls;
  };
  std::vector<double> all, half;
  for (int r = 0; r < std::max(reps, 5); ++r) {
    world.barrier();
    const double t = timed();
    if (computing) all.push_back(t);
    world.barrier();
    if (computing) {
      half.push_back(timed());
      world.exchange({{PeerTransfer::Kind::send, token, peer}}).wait();
    } else {
      world.exchange({{PeerTransfer::Kind::recv, token, peer}}).wait();
    }
  }
  double ratio = 0;
  if (computing) {
    std::sort(all.begin(), all.end());
    std::sort(half.begin(), half.end());
    ratio = all[all.size() / 2] / half[half.size() / 2];
  }
  ratio = double(all_ranks(ctx, world, float(ratio), ReduceOp::sum)) / (world.size() / 2);
  const double most = 2.0;  // half of the ranks computing get at most twice the share
  return std::min(most, std::max(1.0, ratio));
}

}  // namespace

Calibration measure_calibration(Context& ctx, Communicator& world, const ModelConfig& cfg, int B, int T,
                                const CalibrateOptions& o) {
  cfg.validate();
  require_calibrated_pieces(cfg);
  Calibration cal;
  cal.ranks = world.size(), cal.threads = ctx.cpu_threads(), cal.device = ctx.device_description();
  cal.cores = int(std::thread::hardware_concurrency());
  cal.idle_speedup = measure_idle_speedup(ctx, world, cfg, B, T, o.reps);
  cal.batch_size = B, cal.seq_len = T;
  std::vector<int> degrees = o.tp_degrees;
  if (degrees.empty())
    for (int tp = 1; tp <= world.size(); tp *= 2)
      if (cfg.n_head % tp == 0 && T % tp == 0) degrees.push_back(tp);
  std::vector<OpSample> samples;
  for (int tp : degrees)
    for (OpSample& s : trainer_op_shapes(cfg, B, T, tp))
      if (std::none_of(samples.begin(), samples.end(), [&](const OpSample& x) { return x.op == s.op && x.dims == s.dims; }))
        samples.push_back(std::move(s));
  for (int64_t n : {int64_t(1) << 14, int64_t(1) << 17, int64_t(1) << 20}) {
    samples.push_back({"adamw", {n}, 20.0 * n, 0});
    samples.push_back({"sum_of_squares", {n}, 4.0 * n, 0});
  }
  {
    std::vector<kernels::Materialized> args;
    args.reserve(samples.size());
    std::vector<std::function<void()>> runs;
    for (const OpSample& s : samples) runs.push_back(make_op(ctx, args, s, cfg));
    // Warm up first (thread pools started, clocks up, pages touched): the first samples otherwise
    // measured several times slower than the same kernels later.
    const auto t0 = Clock::now();
    while (std::chrono::duration<double>(Clock::now() - t0).count() < 0.3)
      for (const auto& run : runs) run();
    ctx.synchronize();
    const std::vector<double> seconds = time_on_all_in_turns(ctx, world, o.reps, runs);
    for (size_t i = 0; i < samples.size(); ++i) {
      samples[i].seconds = seconds[i];
      cal.ops.push_back(samples[i]);
    }
  }

  // Collectives on groups of 2, 4, ... consecutive ranks, all groups at once (as TP and DP groups run).
  for (int g = 2; g <= world.size(); g *= 2) {
    if (world.size() % g) continue;
    std::unique_ptr<Communicator> group = world.split(world.rank() / g, world.rank());
    for (double bytes : o.collective_bytes) {
      for (const char* op : {"all_reduce", "all_gather", "reduce_scatter", "sendrecv"}) {
        const std::string name = op;
        if (name == "sendrecv" && g != 2) continue;
        Buffer big(ctx, size_t(bytes), ctx.device()), small(ctx, size_t(bytes), ctx.device());
        const int64_t n = int64_t(bytes / 4), part = n / g;
        Tensor tb = big.view({n}, DType::f32), ts = small.view({n}, DType::f32);
        zero_tensor(ctx, tb), zero_tensor(ctx, ts);
        Communicator* c = group.get();
        const int peer = 1 - c->rank();
        std::function<void()> run;
        if (name == "all_reduce") run = [c, tb] { c->all_reduce(tb, ReduceOp::sum).wait(); };
        if (name == "all_gather") run = [c, tb, ts, part] { c->all_gather(tb, ts.flat_range(0, part)).wait(); };
        if (name == "reduce_scatter") run = [c, tb, ts, part] { c->reduce_scatter(ts.flat_range(0, part), tb, ReduceOp::sum).wait(); };
        if (name == "sendrecv")
          run = [c, tb, ts, peer] {
            c->exchange({{PeerTransfer::Kind::send, tb, peer}, {PeerTransfer::Kind::recv, ts, peer}}).wait();
          };
        cal.collectives.push_back({name, g, bytes, time_on_all(ctx, world, o.reps, run)});
      }
    }
    cal.collectives.push_back({"sync", g, 0, measure_sync(ctx, world, *group, cfg, B, T, o.reps)});
  }
  return cal;
}

}  // namespace tessera::plan
