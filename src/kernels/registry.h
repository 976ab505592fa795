// The op registry: every op of ops.h registered once (src/kernels/registry/<op>.cpp), with what it
// takes to run it at given sizes (its arguments as host data, and the call through ops:: or the CPU
// reference), how it is checked (float64 maths, the loss a backward differentiates, tolerances) and
// the sizes the tests use. Two users: the test-backend-ops harness (tests/support/op_harness.*),
// which runs every entry on every backend against the CPU reference, and the planner's calibration
// (src/plan/measure.cpp), which times entries at a model's sizes.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "tessera/buffer.h"

namespace tessera::kernels {

using Dims = std::vector<int64_t>;
// Host values of a call's arguments in float64, one vector per argument, in argument order.
using Values = std::vector<std::vector<double>>;

// Which implementation a call runs: the public entry point (ops::, with its boundary checks, on the
// context's backend) or the plain CPU reference (cpu::, called directly, so that it also takes the
// bf16 arguments some ops accept on the CPU only through it, e.g. a bf16 AdamW parameter).
enum class Via : uint8_t { dispatch, reference };

// pick(via, ops::gelu_forward, cpu::gelu_forward)(ctx, ...): the two have the same signature.
template <class F>
F* pick(Via via, F* dispatched, F* reference) {
  return via == Via::reference ? reference : dispatched;
}

enum class ArgKind : uint8_t {
  activation,  // f32, or bf16 in a bf16 case
  f32,         // always f32: statistics, parameter gradients, optimizer state, losses
  bf16,        // always bf16
  i32,         // tokens, targets
};

enum class ArgRole : uint8_t {
  input,       // read only: unchanged by the call
  output,      // overwritten: poisoned before the call
  accumulate,  // "+=": starts from its values
  absent,      // an optional argument not given: an empty Tensor
};

struct Arg {
  std::string name;
  Dims shape;
  ArgKind kind = ArgKind::activation;
  ArgRole role = ArgRole::input;
  std::vector<float> values;  // inputs and accumulators (integers for i32)
  int alias = -1;             // an output written in place over input `alias`: the same tensor
  bool derived = false;       // an input that OpCall::prepare computes (e.g. a forward's statistics)

  int64_t numel() const;
  bool written() const { return role == ArgRole::output || role == ArgRole::accumulate; }
};

Arg input(std::string name, Dims shape, std::vector<float> values, ArgKind kind = ArgKind::activation);
Arg output(std::string name, Dims shape, ArgKind kind = ArgKind::activation);
Arg accumulate(std::string name, Dims shape, std::vector<float> values, ArgKind kind = ArgKind::f32);
Arg in_place(std::string name, int input_index);
Arg absent(std::string name);
// An input the call's prepare step fills (with placeholder values until then).
Arg derived(std::string name, Dims shape, ArgKind kind = ArgKind::activation);

// Runs the op (or, for prepare, the ops that compute the derived inputs) on tensors in argument
// order; returns the op's value (sum_of_squares) or 0.
using Call = std::function<double(Via, Context&, const std::vector<Tensor>&)>;

struct OpCall {
  std::vector<Arg> args;
  Call run;
  Call prepare;                // optional
  bool returns_value = false;  // run's result is the op's output (compared too)
  // Variables beyond the arguments that Gradient::loss depends on: a parameter the backward
  // accumulates a gradient for without reading it (a bias, an embedding table).
  std::vector<Arg> loss_variables;
};

// The gradient a backward op computes: the float64 loss whose gradient it is, and which argument
// receives the gradient of which variable. Checked against central finite differences on the CPU.
struct Gradient {
  // L(args, loss_variables) in float64 for the call made at `dims`; args hold the call's inputs
  // (its outputs as zeros).
  std::function<double(const Dims& dims, const Values& args, const Values& variables)> loss;
  // Pairs whose gradient argument is absent in a call (an optional gradient not asked for) are
  // skipped there.
  struct Pair {
    int variable;  // an argument index, or args.size() + i for loss_variables[i]
    int gradient;  // the argument (output or accumulator) holding dL/dvariable
  };
  std::vector<Pair> pairs;
  double tolerance = 1e-4;  // relative error, floor 1e-2 (float32 kernel against float64 differences)
};

struct OpEntry {
  std::string name;  // exactly as in ops.h
  std::string dims;  // what make()'s dims mean, e.g. "B T NH NKV HS"
  // Sizes the harness runs on every backend: odd sizes and every kernel path (vector and scalar,
  // cuDNN and plain), in place where the op allows it.
  std::vector<Dims> cases;
  // Small sizes for the float64 checks on the CPU (maths and finite differences).
  std::vector<Dims> small;
  std::vector<DType> dtypes = {DType::f32, DType::bf16};  // activation dtypes on CUDA
  // The CPU reference runs on the case's dtype too (ops whose bf16 behaviour is their subject:
  // convert, scale, AdamW's bf16 parameter); otherwise it runs in f32 on the bf16-rounded values.
  bool reference_takes_bf16 = false;
  // The call at these sizes with these activations, values from `seed`.
  std::function<OpCall(const Dims& dims, DType activations, uint64_t seed)> make;
  // Optional float64 maths of the op at `dims`: fills the outputs (adds to accumulators) of `args`,
  // whose outputs arrive as zeros; returns the op's value when it has one.
  std::function<double(const Dims& dims, Values& args)> math;
  double math_tolerance = 1e-5;  // relative error of the f32 CPU reference, floor 1e-2
  // The CPU kernel gives the same bits whatever its thread count (false: it does not promise it,
  // e.g. OpenBLAS splits a GEMM's sums by thread count).
  bool same_bits_any_threads = true;
  Gradient gradient;  // empty loss: not a backward op
  // Another backend against the CPU reference, per element of each output:
  // |got - ref| / max(|ref|, floor * max|ref| of that output), and exact where ref is exactly 0
  // unless zeros_exact is false (then a zero is judged against the floor like any small value).
  double f32_tolerance = 1e-5;
  double bf16_tolerance = 1e-2;
  double floor = 0.1;
  double bf16_floor = 0.1;
  bool zeros_exact = true;
};

// The names of an entry's dims ("B T NH" -> {"B", "T", "NH"}): make() takes exactly as many.
std::vector<std::string> dim_names(const OpEntry& entry);

// Every op.
const std::vector<OpEntry>& op_registry();
// The entry named `name`; an internal error when there is none.
const OpEntry& find_op(const std::string& name);

// A call's arguments placed on a context's device.
struct Materialized {
  std::vector<Buffer> buffers;  // one per argument (none for absent and in-place ones)
  std::vector<Tensor> whole;    // each argument's whole buffer, guards included
  std::vector<Tensor> tensors;  // the arguments, in order
};

struct Placement {
  DType activations = DType::f32;
  int64_t offset = 0;  // elements of poison before each argument (a view that starts mid-buffer)
  int64_t guard = 0;   // elements of poison after it
};

// Allocates every argument on ctx's device with the placement's dtype and poison margins, poisons
// each buffer, then copies inputs and accumulators in (bf16 arguments are rounded to nearest even).
Materialized materialize(Context& ctx, const OpCall& call, const Placement& placement);
// A tensor's elements on the host as floats (any device; f32, bf16 or i32).
std::vector<float> read_back(Context& ctx, const Tensor& t);

// Random values from a fixed seed, never zeros in bulk (every check runs on real data).
std::vector<float> uniform(int64_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f);
std::vector<float> normal(int64_t n, uint64_t seed, float stddev = 1.0f);
std::vector<float> integers(int64_t n, uint64_t seed, int64_t lo, int64_t hi_exclusive);
int64_t numel(const Dims& shape);

}  // namespace tessera::kernels
