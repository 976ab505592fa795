// tessera-cpu-peak: the single-precision peak of this machine's cores, measured, for MFU and the
// share of the peak a CPU run's GEMMs reach (tessera-bench-training --profile-ops, compare_peers.py).
//   tessera-cpu-peak [--threads N] [--seconds S] [--json FILE]
// Peak = cores x FMA instructions per cycle x vector width x 2 FLOPs x clock. The vector width and
// FMA support come from the CPU's flags; the product of FMA pipes and clock is measured: every
// thread runs 12 independent chains of vector FMAs (enough to cover the FMA latency), all threads
// at once, best of several runs. The nominal clock (/proc/cpuinfo) gives the FMAs per cycle that
// the measurement implies (2 per core on Zen 3 and Intel since Haswell; more when the clock boosts).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "common/flags.h"
#include "common/output_checks.h"
#include "tessera/error.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace tessera::program {
namespace {

constexpr int kChains = 12;

struct Isa {
  const char* name;
  int lanes;  // floats per vector instruction
  bool fma;
};

#if defined(__x86_64__)
// Each returns the FLOPs it did: iterations x chains x lanes x 2.
__attribute__((target("avx512f"))) double fma_avx512(int64_t iterations) {
  __m512 acc[kChains];
  const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(float(i));
  for (int64_t it = 0; it < iterations; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
  volatile float sink = _mm512_reduce_add_ps(s);
  (void)sink;
  return 2.0 * 16 * kChains * double(iterations);
}

__attribute__((target("avx2,fma"))) double fma_avx2(int64_t iterations) {
  __m256 acc[kChains];
  const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(float(i));
  for (int64_t it = 0; it < iterations; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], x, y);
  __m256 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm256_add_ps(s, acc[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  volatile float sink = out[0];
  (void)sink;
  return 2.0 * 8 * kChains * double(iterations);
}
#endif

// Without FMA: a multiply and an add per element (what such a core's GEMM does), 4 lanes (SSE).
double mul_add_baseline(int64_t iterations) {
  typedef float v4 __attribute__((vector_size(16)));
  v4 acc[kChains];
  const v4 x = {0.999999f, 0.999999f, 0.999999f, 0.999999f}, y = {1e-7f, 1e-7f, 1e-7f, 1e-7f};
  for (int i = 0; i < kChains; ++i) acc[i] = v4{} + float(i);
  for (int64_t it = 0; it < iterations; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = acc[i] * x + y;
  v4 s = acc[0];
  for (int i = 1; i < kChains; ++i) s += acc[i];
  volatile float sink = s[0];
  (void)sink;
  return 2.0 * 4 * kChains * double(iterations);
}

Isa detect_isa() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f")) return {"AVX-512 with FMA", 16, true};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return {"AVX2 with FMA", 8, true};
#endif
  return {"SSE, no FMA", 4, false};
}

double run_kernel(const Isa& isa, int64_t iterations) {
#if defined(__x86_64__)
  if (isa.lanes == 16) return fma_avx512(iterations);
  if (isa.lanes == 8) return fma_avx2(iterations);
#endif
  return mul_add_baseline(iterations);
}

// FLOP/s of `threads` threads running the kernel at once: the best of `runs`.
double measure(const Isa& isa, int threads, double seconds, int runs) {
  // Calibrate the iterations to about `seconds` per run on one thread.
  int64_t iterations = 1 << 16;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    run_kernel(isa, iterations);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt > seconds / 4) {
      iterations = int64_t(double(iterations) * seconds / dt);
      break;
    }
    iterations *= 4;
  }
  double best = 0.0;
  for (int r = 0; r < runs; ++r) {
    double flops = 0.0;
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : flops)
    flops += run_kernel(isa, iterations);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, flops / dt);
  }
  return best;
}

// The first "cpu MHz" and "model name" of /proc/cpuinfo (0 and "unknown" elsewhere).
void cpuinfo(double* mhz, std::string* model) {
  *mhz = 0.0;
  *model = "unknown";
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    const std::string value = line.substr(std::min(line.size(), colon + 2));
    if (key == "cpu MHz" && *mhz == 0.0) *mhz = std::atof(value.c_str());
    if (key == "model name" && *model == "unknown") *model = value;
  }
}

int cpu_peak(int argc, char** argv) {
  int threads = int(std::max(1u, std::thread::hardware_concurrency()));
  double seconds = 0.2;
  int runs = 5;
  std::string json;
  FlagParser p("tessera-cpu-peak", "tessera-cpu-peak [flags]");
  p.add("threads", &threads, "threads (cores) to measure at once").at_least(1);
  p.add("seconds", &seconds, "length of one run").above(0);
  p.add("runs", &runs, "runs; the best counts").at_least(1);
  p.add("json", &json, "also write the result as one JSON object here");
  if (!p.parse(argc, argv)) return 0;
  if (!p.positional().empty()) throw config_error("unexpected argument '" + p.positional()[0] + "'", "see --help");
  if (!json.empty()) check_output_file("--json", json);  // before the measurement

  const Isa isa = detect_isa();
  double mhz = 0.0;
  std::string model;
  cpuinfo(&mhz, &model);
  const double one = measure(isa, 1, seconds, runs);
  const double all = measure(isa, threads, seconds, runs);
  const double flops_per_instruction = 2.0 * isa.lanes / (isa.fma ? 1.0 : 2.0);  // mul + add: two instructions
  std::printf("# tessera-cpu-peak: single-precision peak = cores x FMA/cycle x lanes x 2 x clock\n");
  std::printf("cpu:        %s, %u logical CPUs, nominal clock %.0f MHz (/proc/cpuinfo)\n", model.c_str(),
              std::thread::hardware_concurrency(), mhz);
  std::printf("vector:     %s: %d floats per instruction (CPU flags)\n", isa.name, isa.lanes);
  std::printf("measured:   %.1f GFLOP/s on 1 thread, %.1f GFLOP/s on %d threads at once (best of %d runs of %.2f s)\n",
              one / 1e9, all / 1e9, threads, runs, seconds);
  if (mhz > 0)
    std::printf("implied:    %.2f %s per cycle per core at the nominal clock\n",
                all / threads / (mhz * 1e6) / flops_per_instruction, isa.fma ? "FMA instructions" : "multiply-add pairs");
  std::printf("peak:       %.4f TFLOP/s (%d threads; pass to --peak-tflops)\n", all / 1e12, threads);
  if (!json.empty()) {
    std::ofstream out(json);
    out << "{\"threads\":" << threads << ",\"isa\":\"" << isa.name << "\",\"lanes\":" << isa.lanes
        << ",\"nominal_mhz\":" << mhz << ",\"gflops_one_thread\":" << one / 1e9 << ",\"gflops\":" << all / 1e9
        << ",\"peak_tflops\":" << all / 1e12 << "}\n";
    if (!out) throw config_error("cannot write " + json, "give --json a writable path");
  }
  return 0;
}

}  // namespace
}  // namespace tessera::program

int main(int argc, char** argv) {
  return tessera::program::run_program("tessera-cpu-peak", [&] { return tessera::program::cpu_peak(argc, argv); });
}
