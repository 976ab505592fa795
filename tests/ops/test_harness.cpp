// The test-backend-ops harness catches broken ops: a made-up op (out = 2 * inp, and its backward
// dinp = 2 * dout) passes as written, and each defect planted in its "dispatched" version makes the
// harness fail ([!shouldfail]: these tests pass only when the harness reports the defect).
#include <cmath>

#include "support/op_harness.h"

using namespace tessera;
using kernels::OpCall;
using kernels::OpEntry;
using kernels::Via;

namespace {

enum class Defect {
  none,
  unwritten,
  out_of_bounds,
  writes_input,
  inexact,
  nondeterministic,
  thread_dependent,
  wrong_gradient,
  wrong_maths
};

// out (n) = 2 * inp; the defect changes what runs through Via::dispatch (or, for the float64
// checks, the reference itself).
OpEntry doubling(Defect defect) {
  OpEntry e;
  e.name = "doubling";
  e.dims = "n";
  e.cases = {{1000}};
  e.small = {{9}};
  e.dtypes = {DType::f32};
  e.make = [defect](const kernels::Dims& d, DType, uint64_t seed) {
    OpCall c;
    c.args = {kernels::output("out", {d[0]}), kernels::input("inp", {d[0]}, kernels::uniform(d[0], seed))};
    c.run = [defect](Via via, Context& ctx, const std::vector<Tensor>& t) {
      static int calls = 0;
      const bool broken = via == Via::dispatch || defect == Defect::wrong_maths;
      float* out = t[0].ptr<float>();
      float* inp = t[1].ptr<float>();
      int64_t n = t[0].numel();
      if (broken && defect == Defect::unwritten) n -= 1;
      for (int64_t i = 0; i < n; ++i) out[i] = 2.0f * inp[i];
      if (!broken) return 0.0;
      if (defect == Defect::out_of_bounds) out[n] = 0.0f;
      if (defect == Defect::writes_input) inp[0] += 1.0f;
      if (defect == Defect::inexact || defect == Defect::wrong_maths) out[3] *= 1.001f;
      // One ulp on every second call, or with other than the tests' two threads: within tolerance.
      if (defect == Defect::nondeterministic && ++calls % 2 == 0) out[3] = std::nextafter(out[3], 10.0f);
      if (defect == Defect::thread_dependent && ctx.cpu_threads() != 2) out[3] = std::nextafter(out[3], 10.0f);
      return 0.0;
    };
    return c;
  };
  e.math = [](const kernels::Dims&, kernels::Values& v) {
    for (size_t i = 0; i < v[0].size(); ++i) v[0][i] = 2.0 * v[1][i];
    return 0.0;
  };
  return e;
}

// dinp (n) = 2 * dout, the gradient of sum(2 * inp * dout); wrong by 1% with Defect::wrong_gradient.
OpEntry doubling_backward(Defect defect) {
  OpEntry e = doubling(Defect::none);
  e.name = "doubling_backward";
  e.math = nullptr;
  e.make = [defect](const kernels::Dims& d, DType, uint64_t seed) {
    OpCall c;
    c.args = {kernels::output("dinp", {d[0]}), kernels::input("dout", {d[0]}, kernels::uniform(d[0], seed)),
              kernels::input("inp", {d[0]}, kernels::uniform(d[0], seed + 1))};
    c.run = [defect](Via, Context&, const std::vector<Tensor>& t) {
      const float factor = defect == Defect::wrong_gradient ? 2.02f : 2.0f;
      for (int64_t i = 0; i < t[0].numel(); ++i) t[0].ptr<float>()[i] = factor * t[1].ptr<float>()[i];
      return 0.0;
    };
    return c;
  };
  e.gradient.loss = [](const kernels::Dims&, const kernels::Values& v, const kernels::Values&) {
    double s = 0.0;
    for (size_t i = 0; i < v[2].size(); ++i) s += 2.0 * v[2][i] * v[1][i];
    return s;
  };
  e.gradient.pairs = {{2, 0}};
  return e;
}

void check_everything(const OpEntry& e) {
  test::check_op_on_backend(test::cpu_context(), e);
  test::check_op_float64(e);
}

// One case on the CPU backend through ops::'s stand-in, against the reference.
void check_one_case(const OpEntry& e) { test::check_case(test::cpu_context(), e, {1000}, DType::f32, 1); }

}  // namespace

TEST_CASE("backend-ops harness: a correct op passes", "[backend-ops]") {
  check_everything(doubling(Defect::none));
  check_everything(doubling_backward(Defect::none));
}

TEST_CASE("backend-ops harness: catches an output element left unwritten", "[backend-ops][!shouldfail]") {
  check_one_case(doubling(Defect::unwritten));
}

TEST_CASE("backend-ops harness: catches a write past the end of an output", "[backend-ops][!shouldfail]") {
  check_one_case(doubling(Defect::out_of_bounds));
}

TEST_CASE("backend-ops harness: catches a write into an input", "[backend-ops][!shouldfail]") {
  check_one_case(doubling(Defect::writes_input));
}

TEST_CASE("backend-ops harness: catches a 1e-3 error against the reference", "[backend-ops][!shouldfail]") {
  check_one_case(doubling(Defect::inexact));
}

TEST_CASE("backend-ops harness: catches a second run one ulp off the first", "[backend-ops][!shouldfail]") {
  check_one_case(doubling(Defect::nondeterministic));
}

TEST_CASE("backend-ops harness: catches a result that depends on the thread count", "[backend-ops][!shouldfail]") {
  test::check_op_float64(doubling(Defect::thread_dependent));
}

TEST_CASE("backend-ops harness: catches a reference that disagrees with its float64 maths",
          "[backend-ops][!shouldfail]") {
  test::check_op_float64(doubling(Defect::wrong_maths));
}

TEST_CASE("backend-ops harness: catches a backward 1% off the finite differences", "[backend-ops][!shouldfail]") {
  test::check_op_float64(doubling_backward(Defect::wrong_gradient));
}
