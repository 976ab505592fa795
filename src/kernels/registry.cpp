// The registry's list and its helpers: argument constructors, placement on a device, random values.
#include "kernels/registry.h"

#include <cmath>
#include <iterator>
#include <sstream>

#include "kernels/registry/families.h"
#include "tessera/error.h"

namespace tessera::kernels {

int64_t numel(const Dims& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t Arg::numel() const { return kernels::numel(shape); }

Arg input(std::string name, Dims shape, std::vector<float> values, ArgKind kind) {
  Arg a;
  a.name = std::move(name), a.shape = std::move(shape), a.kind = kind, a.values = std::move(values);
  TESSERA_CHECK(int64_t(a.values.size()) == a.numel(), "registry: values of " + a.name + " do not fill its shape");
  return a;
}

Arg output(std::string name, Dims shape, ArgKind kind) {
  Arg a;
  a.name = std::move(name), a.shape = std::move(shape), a.kind = kind, a.role = ArgRole::output;
  return a;
}

Arg accumulate(std::string name, Dims shape, std::vector<float> values, ArgKind kind) {
  Arg a = input(std::move(name), std::move(shape), std::move(values), kind);
  a.role = ArgRole::accumulate;
  return a;
}

Arg in_place(std::string name, int input_index) {
  Arg a;
  a.name = std::move(name), a.role = ArgRole::output, a.alias = input_index;
  return a;
}

Arg absent(std::string name) {
  Arg a;
  a.name = std::move(name), a.role = ArgRole::absent;
  return a;
}

Arg derived(std::string name, Dims shape, ArgKind kind) {
  const int64_t n = kernels::numel(shape);
  Arg a = input(std::move(name), std::move(shape), std::vector<float>(size_t(n), 0.5f), kind);
  a.derived = true;
  return a;
}

const std::vector<OpEntry>& op_registry() {
  static const std::vector<OpEntry> entries = [] {
    std::vector<OpEntry> all;
    for (auto family :
         {embedding_ops, layernorm_ops, rmsnorm_ops, matmul_ops, gelu_ops, residual_ops, swiglu_ops, rope_ops,
          attention_ops, crossentropy_ops, crossentropy_vp_ops, adamw_ops, reduce_ops, convert_ops})
      for (OpEntry& e : family()) all.push_back(std::move(e));
    return all;
  }();
  return entries;
}

std::vector<std::string> dim_names(const OpEntry& entry) {
  std::istringstream in(entry.dims);
  return {std::istream_iterator<std::string>(in), std::istream_iterator<std::string>()};
}

const OpEntry& find_op(const std::string& name) {
  for (const OpEntry& e : op_registry())
    if (e.name == name) return e;
  throw internal_error("no op named '" + name + "' in the op registry", "src/kernels/registry.cpp");
}

namespace {

DType dtype_of(ArgKind kind, DType activations) {
  switch (kind) {
    case ArgKind::activation:
      return activations;
    case ArgKind::f32:
      return DType::f32;
    case ArgKind::bf16:
      return DType::bf16;
    case ArgKind::i32:
      return DType::i32;
  }
  return DType::f32;
}

// Copies host floats into t (converted to t's dtype).
void write_values(Context& ctx, const Tensor& t, const std::vector<float>& values) {
  const int64_t n = t.numel();
  if (t.dtype == DType::f32) {
    copy_tensor(ctx, t, Tensor(const_cast<float*>(values.data()), {n}, DType::f32, Device::cpu));
  } else if (t.dtype == DType::bf16) {
    std::vector<bf16> h(values.size());
    for (size_t i = 0; i < h.size(); ++i) h[i] = float_to_bf16(values[i]);
    copy_tensor(ctx, t, Tensor(h.data(), {n}, DType::bf16, Device::cpu));
  } else {
    std::vector<int32_t> h(values.size());
    for (size_t i = 0; i < h.size(); ++i) h[i] = int32_t(values[i]);
    copy_tensor(ctx, t, Tensor(h.data(), {n}, DType::i32, Device::cpu));
  }
}

Tensor shaped(Tensor flat, const Dims& shape) {
  flat.ndim = int(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) flat.dims[i] = shape[i];
  return flat;
}

}  // namespace

Materialized materialize(Context& ctx, const OpCall& call, const Placement& p) {
  Materialized m;
  m.whole.resize(call.args.size());
  m.tensors.resize(call.args.size());
  for (size_t i = 0; i < call.args.size(); ++i) {
    const Arg& a = call.args[i];
    if (a.role == ArgRole::absent || a.alias >= 0) continue;
    TESSERA_CHECK(a.shape.size() <= size_t(Tensor::kMaxDims), "registry: " + a.name + " has too many dims");
    const DType dtype = dtype_of(a.kind, p.activations);
    const int64_t n = a.numel(), total = p.offset + n + p.guard;
    m.buffers.emplace_back(ctx, size_t(total) * dtype_size(dtype), ctx.device());
    m.whole[i] = Tensor(m.buffers.back().data(), {total}, dtype, ctx.device());
    poison_tensor(ctx, m.whole[i]);
    m.tensors[i] = shaped(m.whole[i].flat_range(p.offset, n), a.shape);
    if (a.role != ArgRole::output) write_values(ctx, m.tensors[i].flat_range(0, n), a.values);
  }
  for (size_t i = 0; i < call.args.size(); ++i)
    if (call.args[i].alias >= 0) m.tensors[i] = m.tensors[size_t(call.args[i].alias)];
  return m;
}

std::vector<float> read_back(Context& ctx, const Tensor& t) {
  const int64_t n = t.numel();
  std::vector<float> out(static_cast<size_t>(n));
  if (n == 0) return out;
  const Tensor flat = t.flat_range(0, n);
  if (t.dtype == DType::f32) {
    copy_tensor(ctx, Tensor(out.data(), {n}, DType::f32, Device::cpu), flat);
  } else if (t.dtype == DType::bf16) {
    std::vector<bf16> h(out.size());
    copy_tensor(ctx, Tensor(h.data(), {n}, DType::bf16, Device::cpu), flat);
    for (size_t i = 0; i < h.size(); ++i) out[i] = bf16_to_float(h[i]);
  } else {
    std::vector<int32_t> h(out.size());
    copy_tensor(ctx, Tensor(h.data(), {n}, DType::i32, Device::cpu), flat);
    for (size_t i = 0; i < h.size(); ++i) out[i] = float(h[i]);
  }
  return out;
}

namespace {

// splitmix64: a fixed, platform-independent stream (std:: distributions differ between libraries).
struct Stream {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double unit() { return double(next() >> 11) * 0x1.0p-53; }  // [0, 1)
};

}  // namespace

std::vector<float> uniform(int64_t n, uint64_t seed, float lo, float hi) {
  Stream s{seed};
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = float(lo + (hi - lo) * s.unit());
  return v;
}

std::vector<float> normal(int64_t n, uint64_t seed, float stddev) {
  Stream s{seed};
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) {  // Box-Muller, one value per pair
    const double u1 = 1.0 - s.unit(), u2 = s.unit();
    x = float(stddev * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
  }
  return v;
}

std::vector<float> integers(int64_t n, uint64_t seed, int64_t lo, int64_t hi_exclusive) {
  Stream s{seed};
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = float(lo + int64_t(s.next() % uint64_t(hi_exclusive - lo)));
  return v;
}

}  // namespace tessera::kernels
