// Element types and the host-side bfloat16 conversions used by references, tests and io.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace tessera {

enum class DType : uint8_t { f32, bf16, i32 };
enum class Device : uint8_t { cpu, cuda };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
const char* device_name(Device d);
DType parse_dtype(const std::string& s);  // "f32"/"float32", "bf16"/"bfloat16"

// bfloat16 stored as its raw 16 bits on the host.
struct bf16 {
  uint16_t bits;
};

// Round to nearest even, NaN kept quiet; the same rounding the CUDA intrinsics use.
inline bf16 float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40u)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{uint16_t(u >> 16)};
}

inline float bf16_to_float(bf16 h) {
  uint32_t u = uint32_t(h.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace tessera
