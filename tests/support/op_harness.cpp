#include "support/op_harness.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <regex>
#include <sstream>

namespace tessera::test {

using namespace kernels;

namespace {

constexpr int64_t kGuard = 5;  // poisoned elements after every argument on the backend under test

// "B=2 T=37 NH=3 NKV=3 HS=64" from the entry's dim names.
std::string describe(const OpEntry& e, const Dims& dims) {
  const std::vector<std::string> names = dim_names(e);
  std::ostringstream out;
  for (size_t i = 0; i < dims.size(); ++i)
    out << (i ? " " : "") << (i < names.size() ? names[i] : "d" + std::to_string(i)) << "=" << dims[i];
  return out.str();
}

// A fixed seed per op and size (FNV-1a).
uint64_t seed_for(const OpEntry& e, const Dims& dims) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](uint64_t x) { h = (h ^ x) * 1099511628211ull; };
  for (char c : e.name) mix(uint64_t(uint8_t(c)));
  for (int64_t d : dims) mix(uint64_t(d));
  return h;
}

DType reference_dtype(const OpEntry& e, DType activations) { return e.reference_takes_bf16 ? activations : DType::f32; }

bool held_as_bf16(const Arg& a, DType activations) {
  return a.kind == ArgKind::bf16 || (a.kind == ArgKind::activation && activations == DType::bf16);
}

void round_to_device(std::vector<Arg>& args, DType activations) {
  for (Arg& a : args)
    if (held_as_bf16(a, activations))
      for (float& x : a.values) x = bf16_to_float(float_to_bf16(x));
}

// The call every backend receives: make() at these sizes, values rounded to what the device holds,
// and the derived inputs computed by the CPU reference (then rounded in turn).
OpCall prepared_call(const OpEntry& e, const Dims& dims, DType activations) {
  OpCall call = e.make(dims, activations, seed_for(e, dims));
  round_to_device(call.args, activations);
  round_to_device(call.loss_variables, activations);
  if (call.prepare) {
    Context& cpu = cpu_context();
    Materialized m = materialize(cpu, call, {reference_dtype(e, activations)});
    call.prepare(Via::reference, cpu, m.tensors);
    for (size_t i = 0; i < call.args.size(); ++i)
      if (call.args[i].derived) call.args[i].values = read_back(cpu, m.tensors[i]);
    round_to_device(call.args, activations);
  }
  return call;
}

struct Run {
  std::vector<std::vector<float>> outputs;  // per argument; empty unless it is written
  double value = 0.0;
};

bool is_poison(float x, DType dtype) { return dtype == DType::i32 ? x == -1.0f : std::isnan(x); }

bool aliased_by_output(const OpCall& call, size_t input) {
  for (const Arg& a : call.args)
    if (a.alias == int(input)) return true;
  return false;
}

// Runs the call on ctx and reads its outputs back; checks that the poison around every argument
// and every input it does not write in place are unchanged.
Run run_call(Context& ctx, const OpCall& call, Via via, const Placement& p) {
  Materialized m = materialize(ctx, call, p);
  Run r;
  r.value = call.run(via, ctx, m.tensors);
  ctx.synchronize();
  r.outputs.resize(call.args.size());
  for (size_t i = 0; i < call.args.size(); ++i) {
    const Arg& a = call.args[i];
    if (a.role == ArgRole::absent) continue;
    if (a.written()) r.outputs[i] = read_back(ctx, m.tensors[i]);
    if (a.alias >= 0) continue;  // its buffer is the input's, checked there
    INFO("argument " << a.name);
    const std::vector<float> whole = read_back(ctx, m.whole[i]);
    bool guards_intact = true;
    for (int64_t k = 0; k < int64_t(whole.size()); ++k)
      if (k < p.offset || k >= p.offset + a.numel())
        guards_intact = guards_intact && is_poison(whole[size_t(k)], m.whole[i].dtype);
    CHECK(guards_intact);  // nothing written outside the argument
    if (a.role == ArgRole::input && !aliased_by_output(call, i)) {
      const std::vector<float> now(whole.begin() + p.offset, whole.begin() + p.offset + a.numel());
      CHECK(bitwise_equal(now, a.values));  // inputs are read only
    }
  }
  return r;
}

// The largest per-element error of got against ref: |got - ref| / max(|ref|, floor * max|ref|);
// equal values (infinities included) count 0; a NaN, or any difference where ref is exactly 0 or
// infinite, counts infinite.
double max_error(const std::vector<float>& got, const std::vector<double>& ref, double floor_fraction,
                 bool zeros_exact = true) {
  REQUIRE(got.size() == ref.size());
  double largest = 0.0;
  for (double x : ref)
    if (std::isfinite(x)) largest = std::max(largest, std::fabs(x));
  const double floor = std::max(floor_fraction * largest, std::numeric_limits<double>::min());
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (double(got[i]) == ref[i]) continue;
    if (!std::isfinite(got[i]) || !std::isfinite(ref[i]) || (zeros_exact && ref[i] == 0.0))
      return std::numeric_limits<double>::infinity();
    worst = std::max(worst, std::fabs(double(got[i]) - ref[i]) / std::max(std::fabs(ref[i]), floor));
  }
  return worst;
}

std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// Every argument's values in float64; outputs as zeros of their size.
Values values_of(const std::vector<Arg>& args) {
  Values v(args.size());
  for (size_t i = 0; i < args.size(); ++i) {
    const Arg& a = args[i];
    if (a.role == ArgRole::output)
      v[i].assign(size_t(a.alias >= 0 ? args[size_t(a.alias)].numel() : a.numel()), 0.0);
    else
      v[i] = widen(a.values);
  }
  return v;
}

void check_math(const OpEntry& e, const Dims& dims) {
  const OpCall call = prepared_call(e, dims, DType::f32);
  const Run ref = run_call(cpu_context(), call, Via::reference, {DType::f32});
  Values v = values_of(call.args);
  const double value = e.math(dims, v);
  for (size_t i = 0; i < call.args.size(); ++i) {
    if (!call.args[i].written()) continue;
    INFO("output " << call.args[i].name << " against float64");
    CHECK(max_error(ref.outputs[i], v[i], 1e-2) <= e.math_tolerance);
  }
  if (call.returns_value) CHECK(std::fabs(ref.value - value) <= e.math_tolerance * std::fabs(value));
}

void check_gradient(const OpEntry& e, const Dims& dims) {
  const OpCall call = prepared_call(e, dims, DType::f32);
  const Run ref = run_call(cpu_context(), call, Via::reference, {DType::f32});
  Values args = values_of(call.args), variables = values_of(call.loss_variables);
  const size_t n_args = args.size();
  for (const Gradient::Pair& pair : e.gradient.pairs) {
    const Arg& g = call.args.at(size_t(pair.gradient));
    if (g.role == ArgRole::absent) continue;
    REQUIRE(size_t(pair.variable) < n_args + variables.size());
    std::vector<double>& x =
        size_t(pair.variable) < n_args ? args[size_t(pair.variable)] : variables[size_t(pair.variable) - n_args];
    INFO("gradient " << g.name << " against float64 central differences");
    std::vector<float> expected(x.size());
    auto loss = [&] { return e.gradient.loss(dims, args, variables); };
    for (size_t k = 0; k < x.size(); ++k) expected[k] = float(finite_difference(loss, x, k));
    std::vector<float> got = ref.outputs[size_t(pair.gradient)];
    REQUIRE(got.size() == expected.size());
    if (g.role == ArgRole::accumulate)
      for (size_t k = 0; k < got.size(); ++k) got[k] -= g.values[k];
    CHECK(max_relative_error(got, expected, 1e-2) < e.gradient.tolerance);
  }
}

// The CPU kernels give the same bits with one thread as with the tests' two.
void check_thread_count(const OpEntry& e, const Dims& dims) {
  INFO(e.name << " " << describe(e, dims) << ": one thread against two");
  const OpCall call = prepared_call(e, dims, DType::f32);
  const Run two = run_call(cpu_context(), call, Via::dispatch, {DType::f32});
  Run one;
  with_one_thread([&](Context& single) { one = run_call(single, call, Via::dispatch, {DType::f32}); });
  for (size_t i = 0; i < call.args.size(); ++i) CHECK(bitwise_equal(one.outputs[i], two.outputs[i]));
  CHECK(std::memcmp(&one.value, &two.value, sizeof(double)) == 0);
}

std::vector<Dims> all_sizes(const OpEntry& e) {
  std::vector<Dims> sizes = e.cases;
  sizes.insert(sizes.end(), e.small.begin(), e.small.end());
  return sizes;
}

}  // namespace

void check_case(Context& backend, const OpEntry& e, const Dims& dims, DType activations, int64_t offset) {
  INFO(e.name << " " << describe(e, dims) << ", " << dtype_name(activations) << ", offset " << offset << ", on "
              << backend.device_description());
  const OpCall call = prepared_call(e, dims, activations);
  const Run ref = run_call(cpu_context(), call, Via::reference, {reference_dtype(e, activations)});
  const Placement placement{activations, offset, kGuard};
  const Run got = run_call(backend, call, Via::dispatch, placement);
  const bool bf16 = activations == DType::bf16;
  for (size_t i = 0; i < call.args.size(); ++i) {
    if (!call.args[i].written()) continue;
    INFO("output " << call.args[i].name << " against the CPU reference");
    CHECK(max_error(got.outputs[i], widen(ref.outputs[i]), bf16 ? e.bf16_floor : e.floor, e.zeros_exact) <=
          (bf16 ? e.bf16_tolerance : e.f32_tolerance));
  }
  if (call.returns_value)
    CHECK(std::fabs(got.value - ref.value) <= (bf16 ? e.bf16_tolerance : e.f32_tolerance) * std::fabs(ref.value));
  const Run again = run_call(backend, call, Via::dispatch, placement);
  for (size_t i = 0; i < call.args.size(); ++i) {
    INFO("output " << call.args[i].name << ": a second run gives the same bits");
    CHECK(bitwise_equal(again.outputs[i], got.outputs[i]));
  }
  CHECK(std::memcmp(&again.value, &got.value, sizeof(double)) == 0);
}

void check_op_on_backend(Context& backend, const OpEntry& e) {
  const std::vector<DType> dtypes = backend.on_gpu() ? e.dtypes : std::vector<DType>{DType::f32};
  for (DType dtype : dtypes)
    for (const Dims& dims : all_sizes(e))
      for (int64_t offset : {int64_t(0), int64_t(1)}) check_case(backend, e, dims, dtype, offset);
}

void check_op_float64(const OpEntry& e) {
  for (const Dims& dims : e.small) {
    INFO(e.name << " " << describe(e, dims));
    if (e.math) check_math(e, dims);
    if (e.gradient.loss) check_gradient(e, dims);
  }
  if (e.same_bits_any_threads)
    for (const Dims& dims : all_sizes(e)) check_thread_count(e, dims);
}

void check_zero_rows(Context& backend, const OpEntry& e) {
  const std::vector<DType> dtypes = backend.on_gpu() ? e.dtypes : std::vector<DType>{DType::f32};
  for (DType dtype : dtypes)
    for (Dims dims : e.cases) {
      dims.at(0) = 0;
      INFO(e.name << " " << describe(e, dims) << ", " << dtype_name(dtype) << " on " << backend.device_description());
      const OpCall call = prepared_call(e, dims, dtype);
      // run_call checks the poison around every argument and the inputs.
      const Run got = run_call(backend, call, Via::dispatch, {dtype, 1, kGuard});
      for (size_t i = 0; i < call.args.size(); ++i) {
        const Arg& a = call.args[i];
        INFO("argument " << a.name);
        if (a.role == ArgRole::accumulate) CHECK(bitwise_equal(got.outputs[i], a.values));
      }
      if (call.returns_value) CHECK(got.value == 0.0);
    }
}

std::vector<std::string> ops_declared_in(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::string text, line;
  bool inside = false;
  while (std::getline(in, line)) {
    if (line.find("#define TESSERA_KERNEL_DECLARATIONS") != std::string::npos) inside = true;
    if (!inside) continue;
    text += line + "\n";
    if (line.empty() || line.back() != '\\') break;  // the macro's last line
  }
  std::vector<std::string> names;
  const std::regex declaration(R"((?:void|double)\s+(\w+)\s*\(\s*Context&)");
  for (std::sregex_iterator it(text.begin(), text.end(), declaration), end; it != end; ++it)
    names.push_back((*it)[1].str());
  return names;
}

}  // namespace tessera::test
