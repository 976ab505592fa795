// convert (dims: n from to, dtypes 0 = f32, 1 = bf16) and scale (dims: n), bit for bit.
#include <cstring>

#include "kernels/registry/families.h"

namespace tessera::kernels {

namespace {

constexpr float kFactor = 0.3f;

ArgKind kind(int64_t code) { return code ? ArgKind::bf16 : ArgKind::f32; }

// Large values, and one exactly half way between two bf16 values (it rounds to even).
std::vector<float> values_for(int64_t n, uint64_t seed) {
  std::vector<float> x = normal(n, seed, 10.0f);
  const uint32_t tie = 0x3f818000u;
  if (n > 7) std::memcpy(&x[7], &tie, 4);
  return x;
}

OpEntry convert_entry() {
  OpEntry e;
  e.name = "convert";
  e.dims = "n from to";
  e.cases = {{100003, 0, 1}, {100003, 1, 0}, {100003, 0, 0}, {100003, 1, 1}, {5, 0, 1}};
  e.small = {{37, 0, 1}, {37, 1, 0}};
  e.dtypes = {DType::f32};  // the dtypes are in the dims
  e.make = [](const Dims& d, DType, uint64_t seed) {
    OpCall c;
    c.args = {output("dst", {d[0]}, kind(d[2])), input("src", {d[0]}, values_for(d[0], seed_of(seed, 1)), kind(d[1]))};
    c.run = [](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::convert, cpu::convert)(ctx, t[0], t[1]);
      return 0.0;
    };
    return c;
  };
  // The source values (bf16 ones already rounded), rounded to nearest even when the destination is bf16.
  e.math = [](const Dims& d, Values& v) {
    v[0] = v[1];
    if (d[2])
      for (double& x : v[0]) x = bf16_to_float(float_to_bf16(float(x)));
    return 0.0;
  };
  e.math_tolerance = e.f32_tolerance = 0.0;
  return e;
}

OpEntry scale_entry() {
  OpEntry e;
  e.name = "scale";
  e.dims = "n";
  e.cases = {{100003}, {5}};
  e.small = {{37}};
  e.reference_takes_bf16 = true;
  e.make = [](const Dims& d, DType, uint64_t seed) {
    OpCall c;
    c.args = {accumulate("t", {d[0]}, normal(d[0], seed_of(seed, 0)), ArgKind::activation)};
    c.run = [](Via via, Context& ctx, const std::vector<Tensor>& t) {
      pick(via, ops::scale, cpu::scale)(ctx, t[0], kFactor);
      return 0.0;
    };
    return c;
  };
  e.math = [](const Dims&, Values& v) {
    for (double& x : v[0]) x = double(float(x) * kFactor);  // one float multiplication, as specified
    return 0.0;
  };
  e.math_tolerance = e.f32_tolerance = e.bf16_tolerance = 0.0;
  return e;
}

}  // namespace

std::vector<OpEntry> convert_ops() { return {convert_entry(), scale_entry()}; }

}  // namespace tessera::kernels
