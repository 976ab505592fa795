// Building blocks of the CPU kernels' hot loops: a per-CPU function clone attribute and a
// vectorisable exp (libm's expf is a call, which stops the compiler from vectorising a loop).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

// TESSERA_CPU_CLONES on a function compiles it twice, for x86-64-v3 (AVX2, FMA) and for the
// baseline the build targets, and picks one when the library loads (GCC's target_clones, an
// ifunc). A default build therefore runs on any x86-64 and still uses AVX2 where there is one,
// without -march=native. The two clones may round differently (FMA contraction), so results are
// bitwise reproducible on one machine, and within float tolerance across machines. Put it on
// functions that do a whole row or tile of work: a clone is never inlined into its caller.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(TESSERA_NO_CPU_CLONES)
#define TESSERA_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define TESSERA_CPU_CLONES
#endif

namespace tessera::cpu {

// exp(x) in float without calls or branches, so loops around it vectorise: Cody-Waite range
// reduction x = n ln2 + r, |r| <= ln2/2, and Cephes' degree-6 polynomial for exp(r) (within 2 ulp
// of expf, checked by the tests). Below -86.9 (where expf < 2e-38) it returns 0; above ln(FLT_MAX),
// inf; NaN stays NaN. Needs -fno-trapping-math to vectorise (the selects are comparisons).
inline float exp_approx(float x) {
  constexpr float kMax = 88.7228391116729996f;  // ln(FLT_MAX): n <= 128
  constexpr float kMin = -86.9f;                // n >= -125
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float xc = x < kMin ? kMin : (x > kMax ? kMax : x);
  const float shifted = xc * kLog2e + kRound;  // n = round(x log2 e) in the low mantissa bits
  const float n = shifted - kRound;
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * (r * r) + r + 1.0f;
  uint32_t shifted_bits;
  std::memcpy(&shifted_bits, &shifted, sizeof shifted_bits);
  // 2^(n-1), a normal float for n in [-125, 128]; times 2 er, exact.
  const uint32_t scale_bits = (shifted_bits - 0x4B400000u + 126u) << 23;
  float half_scale;
  std::memcpy(&half_scale, &scale_bits, sizeof half_scale);
  const float y = (er + er) * half_scale;
  return x < kMin ? 0.0f : (x > kMax ? std::numeric_limits<float>::infinity() : y);
}

// Row sums that vectorise and do not depend on the instruction set's width or the thread count:
// element c goes to lane c % 8, and the lanes are added as a fixed tree.
constexpr int kSumLanes = 8;

inline float combine_lanes(const float (&lane)[kSumLanes]) {
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

// The sum over c < C of f(c), in lanes.
template <class F>
inline float lane_sum(int64_t C, F f) {
  float lane[kSumLanes] = {};
  const int64_t full = C / kSumLanes * kSumLanes;
  for (int64_t c = 0; c < full; c += kSumLanes)
    for (int i = 0; i < kSumLanes; ++i) lane[i] += f(c + i);
  for (int64_t c = full; c < C; ++c) lane[c - full] += f(c);
  return combine_lanes(lane);
}

}  // namespace tessera::cpu
