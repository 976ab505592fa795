#include "support/test_support.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>

namespace tessera::test {

std::vector<float> random_uniform(size_t n, uint64_t seed, float lo, float hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<float> random_normal(size_t n, uint64_t seed, float stddev) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<int32_t> random_ints(size_t n, uint64_t seed, int32_t lo, int32_t hi_exclusive) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(lo, hi_exclusive - 1);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<uint16_t> motif_tokens(size_t n) {
  std::vector<uint16_t> tokens(n);
  uint64_t state = 12345;
  for (size_t i = 0; i < tokens.size(); i += 8) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const uint64_t motif = (state >> 33) % 24;
    for (size_t k = 0; k < 8 && i + k < tokens.size(); ++k)
      tokens[i + k] = uint16_t((motif * 37 + k * k * 11 + (k == 7 ? (state >> 20) % 5 : 0)) % 257);
  }
  return tokens;
}

Context& cpu_context() {
  static Context ctx([] {
    ContextOptions o;
    o.device = DevicePreference::cpu;
    // Two threads, like CI; one per rank when several ranks share the node under mpirun.
    const char* local_size = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    o.cpu_threads = local_size && std::atoi(local_size) > 1 ? 1 : 2;
    o.announce = false;
    return o;
  }());
  return ctx;
}

void with_one_thread(const std::function<void(Context&)>& body) {
  ContextOptions o;
  o.device = DevicePreference::cpu;
  o.announce = false;
  o.cpu_threads = 1;
  {
    Context single(o);
    body(single);
  }
  o.cpu_threads = cpu_context().cpu_threads();
  Context restore(o);
}

Context* gpu_context(std::string* reason) {
  struct Probe {
    std::unique_ptr<Context> ctx;
    std::string reason;
  };
  static Probe probe = [] {
    Probe p;
    ContextOptions o;
    o.device = DevicePreference::automatic;
    o.announce = false;
    auto ctx = std::make_unique<Context>(o);
    if (ctx->on_gpu())
      p.ctx = std::move(ctx);
    else
      p.reason = "no GPU: " + ctx->fallback_reason();
    return p;
  }();
  if (reason) *reason = probe.reason;
  return probe.ctx.get();
}

bool gpu_required() {
  const char* v = std::getenv("TESSERA_REQUIRE_GPU");
  return v != nullptr && std::string(v) == "1";
}

DeviceTensor upload(Context& ctx, const std::vector<float>& host, std::initializer_list<int64_t> shape,
                    DType dtype) {
  DeviceTensor d;
  d.buffer = Buffer::for_tensor(ctx, shape, dtype);
  d.tensor = d.buffer.view(shape, dtype);
  REQUIRE(size_t(d.tensor.numel()) == host.size());
  if (dtype == DType::f32) {
    copy_tensor(ctx, d.tensor, Tensor(const_cast<float*>(host.data()), {int64_t(host.size())}, DType::f32, Device::cpu).reshape(shape));
  } else {
    std::vector<bf16> h(host.size());
    for (size_t i = 0; i < host.size(); ++i) h[i] = float_to_bf16(host[i]);
    copy_tensor(ctx, d.tensor, Tensor(h.data(), shape, DType::bf16, Device::cpu));
  }
  return d;
}

DeviceTensor upload_ints(Context& ctx, const std::vector<int32_t>& host, std::initializer_list<int64_t> shape) {
  DeviceTensor d;
  d.buffer = Buffer::for_tensor(ctx, shape, DType::i32);
  d.tensor = d.buffer.view(shape, DType::i32);
  REQUIRE(size_t(d.tensor.numel()) == host.size());
  copy_tensor(ctx, d.tensor, Tensor(const_cast<int32_t*>(host.data()), shape, DType::i32, Device::cpu));
  return d;
}

DeviceTensor poisoned(Context& ctx, std::initializer_list<int64_t> shape, DType dtype) {
  DeviceTensor d;
  d.buffer = Buffer::for_tensor(ctx, shape, dtype);
  d.tensor = d.buffer.view(shape, dtype);
  poison_tensor(ctx, d.tensor);
  return d;
}

std::vector<float> download(Context& ctx, const Tensor& t) {
  std::vector<float> out(size_t(t.numel()));
  if (t.dtype == DType::f32) {
    Tensor host(out.data(), {t.numel()}, DType::f32, Device::cpu);
    copy_tensor(ctx, host, t.flat_range(0, t.numel()));
  } else if (t.dtype == DType::bf16) {
    std::vector<bf16> h(out.size());
    copy_tensor(ctx, Tensor(h.data(), {t.numel()}, DType::bf16, Device::cpu), t.flat_range(0, t.numel()));
    for (size_t i = 0; i < h.size(); ++i) out[i] = bf16_to_float(h[i]);
  } else {
    std::vector<int32_t> h(out.size());
    copy_tensor(ctx, Tensor(h.data(), {t.numel()}, DType::i32, Device::cpu), t.flat_range(0, t.numel()));
    for (size_t i = 0; i < h.size(); ++i) out[i] = float(h[i]);
  }
  return out;
}

double max_relative_error(const std::vector<float>& a, const std::vector<float>& b, double floor) {
  REQUIRE(a.size() == b.size());
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return std::numeric_limits<double>::infinity();
    double err = std::fabs(double(a[i]) - double(b[i])) / std::max(std::fabs(double(b[i])), floor);
    worst = std::max(worst, err);
  }
  return worst;
}

double max_abs_error(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, std::fabs(double(a[i]) - double(b[i])));
  }
  return worst;
}

std::vector<float> round_to_bf16(std::vector<float> v) {
  for (float& x : v) x = bf16_to_float(float_to_bf16(x));
  return v;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

double finite_difference(const std::function<double()>& f, std::vector<double>& x, size_t i, double h) {
  double saved = x[i];
  x[i] = saved + h;
  double up = f();
  x[i] = saved - h;
  double down = f();
  x[i] = saved;
  return (up - down) / (2.0 * h);
}

}  // namespace tessera::test
