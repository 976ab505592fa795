// tessera-calibrate --card: what this device sustains (card_calibration.h), timed with the library's
// own kernels (bf16 on a GPU, f32 on the CPU) and communicator.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <functional>
#include <random>

#include "kernels/ops.h"
#include "tessera/buffer.h"
#include "tessera/card_calibration.h"
#include "tessera/communicator.h"
#include "tessera/context.h"
#include "tessera/dtype.h"

namespace tessera::plan {

namespace {

using Clock = std::chrono::steady_clock;

// Device tensors filled with small random values (never zeros, never timed on zeros).
class Tensors {
 public:
  Tensors(Context& ctx, DType dtype) : ctx_(ctx), dtype_(dtype) {}
  Tensor make(std::initializer_list<int64_t> shape, DType dtype) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::uniform_real_distribution<float> u(-0.5f, 0.5f);
    buffers_.emplace_back(ctx_, size_t(n) * dtype_size(dtype), ctx_.device());
    Tensor t = buffers_.back().view(shape, dtype);
    if (dtype == DType::bf16) {
      std::vector<bf16> host(static_cast<size_t>(n));
      for (bf16& x : host) x = float_to_bf16(u(rng_));
      copy_tensor(ctx_, t, Tensor(host.data(), shape, dtype, Device::cpu));
    } else {
      std::vector<float> host(static_cast<size_t>(n));
      for (float& x : host) x = u(rng_);
      copy_tensor(ctx_, t, Tensor(host.data(), shape, dtype, Device::cpu));
    }
    return t;
  }
  Tensor operator()(std::initializer_list<int64_t> shape) { return make(shape, dtype_); }

 private:
  Context& ctx_;
  DType dtype_;
  std::mt19937 rng_{11};
  std::vector<Buffer> buffers_;
};

// Seconds per call: the median of `reps` timings of back-to-back calls lasting about 20 ms each,
// after a warm-up call. With a communicator every rank times together (barrier first).
double seconds_per_call(Context& ctx, Communicator* world, int reps, const std::function<void()>& fn) {
  fn();
  ctx.synchronize();
  const auto w0 = Clock::now();
  fn();
  ctx.synchronize();
  const double once = std::chrono::duration<double>(Clock::now() - w0).count();
  const int calls = int(std::clamp(std::ceil(0.02 / std::max(once, 1e-7)), 1.0, 1000.0));
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    if (world) world->barrier();
    const auto t0 = Clock::now();
    for (int k = 0; k < calls; ++k) fn();
    ctx.synchronize();
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / calls);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Shapes {
  std::vector<std::array<int64_t, 3>> gemm;  // m, n, k
  int64_t copy_bytes;
  int64_t attention_batch, attention_seq, attention_heads, attention_head_dim;
  std::vector<double> collective_bytes;
};

// A GPU's sustained rates need large problems; the CPU (or a quick run) small ones. The GEMM shapes
// vary one dimension at a time (the small n of tensor-parallel splits, the small k of row-parallel
// layers) so that the shape terms can be fitted.
Shapes shapes_for(const Context& ctx, bool quick) {
  if (ctx.on_gpu() && !quick)
    return {{{8192, 8192, 8192}, {16384, 1024, 8192}, {16384, 8192, 1024}, {4096, 4096, 4096}},
            int64_t(1) << 30, 2, 8192, 32, 128, {262144.0, 67108864.0}};
  return {{{256, 256, 256}, {512, 64, 256}, {512, 256, 64}}, int64_t(16) << 20, 1, 128, 4, 32, {4096.0, 1048576.0}};
}

}  // namespace

CardCalibration measure_card(Context& ctx, Communicator* world, const CardMeasureOptions& o) {
  const DType dtype = ctx.on_gpu() ? DType::bf16 : DType::f32;
  const Shapes s = shapes_for(ctx, o.quick);
  CardCalibration cal;
  cal.card = ctx.device_description();
  cal.device = ctx.on_gpu() ? "cuda" : "cpu";
  Tensors make(ctx, dtype);

  for (const auto& [m, n, k] : s.gemm) {
    Tensor out = make({m, n}), inp = make({m, k}), w = make({n, k});
    const double t = seconds_per_call(ctx, world, o.reps, [&] {
      ops::matmul_forward(ctx, out, Tensor(), inp, w, Tensor(), Epilogue::none);
    });
    cal.gemm.push_back({m, n, k, dtype_name(dtype), 2.0 * m * n * k / t / 1e12});
  }

  {
    Tensor src = make.make({s.copy_bytes / 4}, DType::f32), dst = make.make({s.copy_bytes / 4}, DType::f32);
    const double t = seconds_per_call(ctx, world, o.reps, [&] { copy_tensor(ctx, dst, src); });
    cal.hbm_gbps = 2.0 * double(s.copy_bytes) / t / 1e9;  // read and written
  }

  {
    const int64_t B = s.attention_batch, T = s.attention_seq, NH = s.attention_heads, HS = s.attention_head_dim, C = NH * HS;
    Tensor qkv = make({B, T, 3 * C}), out = make({B, T, C}), dqkv = make({B, T, 3 * C}), dout = make({B, T, C});
    Tensor stats = make.make({B, NH, T}, DType::f32);
    const double fwd = seconds_per_call(ctx, world, o.reps, [&] { ops::attention_forward(ctx, out, stats, qkv, int(NH), int(NH)); });
    const double bwd = seconds_per_call(ctx, world, o.reps, [&] {
      ops::attention_backward(ctx, dqkv, dout, qkv, out, stats, int(NH), int(NH));
    });
    const double flops = 2.0 * B * double(T) * T * NH * HS;  // causal: half of 4 b s^2 h d
    cal.attention.push_back({B, T, NH, HS, dtype_name(dtype), flops / fwd / 1e12, 2.5 * flops / bwd / 1e12});
  }

  if (world && world->size() > 1) {
    const int n = world->size(), per_node = std::max(1, std::min(n, ctx.options().local_size));
    for (double bytes : s.collective_bytes) {
      const int64_t count = int64_t(bytes / 4) / n * n;
      Tensor full = make.make({count}, DType::f32), part = make.make({count / n}, DType::f32);
      const double ar = seconds_per_call(ctx, world, o.reps, [&] { world->all_reduce(full, ReduceOp::avg).wait(); });
      const double ag = seconds_per_call(ctx, world, o.reps, [&] { world->all_gather(full, part).wait(); });
      cal.collectives.push_back({"all_reduce", n, per_node, 4.0 * count, ar});
      cal.collectives.push_back({"all_gather", n, per_node, 4.0 * count, ag});
    }
  }
  return cal;
}

}  // namespace tessera::plan
