// tessera-cpu-peak: the single-precision peak of this machine's cores, measured, for MFU and the
// share of the peak a CPU run's GEMMs reach (tessera-bench-training --profile-ops, compare_peers.py).
//   tessera-cpu-peak [--threads N] [--seconds S] [--json FILE]
// Peak = cores x FMA instructions per cycle x vector width x 2 FLOPs x clock. The vector width and
// FMA support come from the CPU's flags; the product of FMA pipes and clock is measured: every
// thread runs 12 independent chains of vector FMAs (enough to cover the FMA latency), all threads
// at once, best of several runs, each thread timed by its own CPU time (a wall-clock timing of the
// whole team read 100 GFLOP/s on two cores that run OpenBLAS's SGEMM at 180, while each thread ran
// at 100 GFLOP/s of its own CPU time: each had a core only half the time). A chain of dependent adds measures the clock the cores
// actually run at, from which the FMAs per cycle follow (2 per core on Zen 2 and later and on Intel
// since Haswell).
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <time.h>

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

// Seconds of CPU time the calling thread has used: a thread that another process pushes off its core
// for a while is not counted as slow, so the figure is the cores' peak, not the machine's load.
double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// Cycles per second of the calling thread: a chain of dependent integer adds retires one per cycle
// on every x86 core since the Pentium Pro, so it counts the clock the core actually runs at (boost
// included), where /proc/cpuinfo gives only the nominal one. 0 elsewhere.
double chained_add_rate(int64_t iterations) {
#if defined(__x86_64__)
  int64_t x = 0;
  const double t0 = thread_cpu_seconds();
  for (int64_t i = 0; i < iterations; ++i)
    asm volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                 "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
                 : "+r"(x));
  return 8.0 * double(iterations) / (thread_cpu_seconds() - t0);
#else
  (void)iterations;
  return 0.0;
#endif
}

struct CoreRates {
  double flops = 0.0;  // FLOP/s of the FMA chains
  double hz = 0.0;     // clock, while the FMA chains run on the other threads too
};

// Each of `threads` threads at once: its FMA rate and its clock over its own CPU time; per thread,
// the best of `runs`.
std::vector<CoreRates> measure(const Isa& isa, int threads, double seconds, int runs) {
  // Calibrate the iterations to about `seconds` per run on one thread.
  int64_t iterations = 1 << 16;
  for (;;) {
    const double t0 = thread_cpu_seconds();
    run_kernel(isa, iterations);
    const double dt = thread_cpu_seconds() - t0;
    if (dt > seconds / 4) {
      iterations = int64_t(double(iterations) * seconds / dt);
      break;
    }
    iterations *= 4;
  }
  // About a tenth of a run's time in adds, at a guessed 3 GHz.
  const int64_t add_iterations = int64_t(3e9 * seconds / 10 / 8);
  std::vector<CoreRates> best(static_cast<size_t>(threads));
#pragma omp parallel num_threads(threads)
  {
    CoreRates& mine = best[size_t(omp_get_thread_num())];
    for (int r = 0; r < runs; ++r) {
#pragma omp barrier
      const double t0 = thread_cpu_seconds();
      const double flops = run_kernel(isa, iterations);
      mine.flops = std::max(mine.flops, flops / (thread_cpu_seconds() - t0));
      mine.hz = std::max(mine.hz, chained_add_rate(add_iterations));
    }
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
  const std::vector<CoreRates> alone = measure(isa, 1, seconds, runs);
  const std::vector<CoreRates> together = measure(isa, threads, seconds, runs);
  double all = 0.0, slowest = 0.0, hz = 0.0;
  for (const CoreRates& c : together) {
    all += c.flops;
    slowest = slowest == 0.0 ? c.flops : std::min(slowest, c.flops);
    hz += c.hz / double(threads);
  }
  const double one = alone[0].flops;
  const double flops_per_instruction = 2.0 * isa.lanes / (isa.fma ? 1.0 : 2.0);  // mul + add: two instructions
  std::printf("# tessera-cpu-peak: single-precision peak = cores x FMA/cycle x lanes x 2 x clock\n");
  std::printf("cpu:        %s, %u logical CPUs, nominal clock %.0f MHz (/proc/cpuinfo)\n", model.c_str(),
              std::thread::hardware_concurrency(), mhz);
  std::printf("vector:     %s: %d floats per instruction (CPU flags)\n", isa.name, isa.lanes);
  std::printf("measured:   %.1f GFLOP/s on 1 thread; on %d threads at once %.1f GFLOP/s in all, the slowest %.1f "
              "(each thread's FLOPs over its own CPU time, best of %d runs of %.2f s)\n",
              one / 1e9, threads, all / 1e9, slowest / 1e9, runs, seconds);
  if (hz > 0)
    std::printf("clock:      %.0f MHz with all threads busy (dependent integer adds, one per cycle)\n", hz / 1e6);
  const double clock_hz = hz > 0 ? hz : mhz * 1e6;
  if (clock_hz > 0)
    std::printf("implied:    %.2f %s per cycle per core at %s clock\n",
                all / threads / clock_hz / flops_per_instruction, isa.fma ? "FMA instructions" : "multiply-add pairs",
                hz > 0 ? "the measured" : "the nominal");
  std::printf("peak:       %.4f TFLOP/s (%d threads; pass to --peak-tflops)\n", all / 1e12, threads);
  if (!json.empty()) {
    std::ofstream out(json);
    out << "{\"threads\":" << threads << ",\"isa\":\"" << isa.name << "\",\"lanes\":" << isa.lanes
        << ",\"nominal_mhz\":" << mhz << ",\"measured_mhz\":" << hz / 1e6 << ",\"gflops_one_thread\":" << one / 1e9
        << ",\"gflops\":" << all / 1e9
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
