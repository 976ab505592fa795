#include "tessera/context.h"

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <cstring>
#include <thread>

#include "core/device_api.h"
#include "tessera/error.h"

extern "C" void openblas_set_num_threads(int num_threads);

namespace tessera {

Context::Context(const ContextOptions& options)
    : options_(options), cuda_(nullptr, &detail::close_cuda), host_scratch_(nullptr, &std::free) {
  int hw = int(std::thread::hardware_concurrency());
  const int cores = hw > 0 ? hw : 1;
  cpu_threads_ = options.cpu_threads > 0 ? options.cpu_threads : std::max(1, cores / std::max(1, options.local_size));
  // One thread pool: the CPU kernels call the BLAS from inside their own OpenMP team, one tile of
  // the output per thread (src/kernels/cpu/gemm.h says why), so the BLAS itself runs on one thread.
  // First: OpenBLAS built for OpenMP sets the OpenMP default to its own count here.
  openblas_set_num_threads(1);
  omp_set_num_threads(cpu_threads_);

  if (options.device != DevicePreference::cpu) {
    detail::CudaProbe probe = detail::open_cuda(options);
    if (probe.resources) {
      cuda_.reset(probe.resources);
      device_ = Device::cuda;
      description_ = probe.description;
      peak_flops_ = probe.peak_flops;
      gpu_ordinal_ = probe.ordinal;
    } else if (options.device == DevicePreference::cuda) {
      throw config_error("--device cuda requested but no GPU can be used: " + probe.failure,
                         "run on a GPU node, or use --device cpu");
    } else {
      fallback_reason_ = probe.failure;
    }
  }
  if (options.profile_ops) op_profile_ = std::make_unique<OpProfile>();
  if (device_ == Device::cpu) {
    description_ = "CPU (" + std::to_string(cpu_threads_) + " threads)";
  }
  const char* report = std::getenv("TESSERA_REPORT_FAST_PATHS");
  report_fast_paths_ = options.report_fast_paths || (report != nullptr && std::strcmp(report, "1") == 0);
  if (options.announce) {
    if (!fallback_reason_.empty())
      std::fprintf(stderr, "tessera: %s; using the CPU backend\n", fallback_reason_.c_str());
    std::fprintf(stderr, "tessera: backend %s, %s\n", device_name(device_), description_.c_str());
  }
}

Context::~Context() {
  if (report_fast_paths_ && device_ == Device::cuda)
    std::fprintf(stderr, "tessera: fast paths on %s: %s\n", description_.c_str(), fast_paths_.describe().c_str());
}

namespace {

struct NamedPath {
  const char* name;
  const FastPathCount* count;
};

std::vector<NamedPath> named_paths(const FastPathCounts& c) {
  return {{"matmul bias epilogue", &c.matmul_bias_epilogue},
          {"matmul GELU epilogue", &c.matmul_gelu_epilogue},
          {"cuDNN attention forward", &c.cudnn_attention_forward},
          {"cuDNN attention backward", &c.cudnn_attention_backward}};
}

}  // namespace

std::string FastPathCounts::describe() const {
  std::string out;
  for (const NamedPath& p : named_paths(*this)) {
    if (!out.empty()) out += "; ";
    out += std::string(p.name) + " " + std::to_string(p.count->ran) + " ran, " + std::to_string(p.count->fell_back) +
           " fell back";
  }
  return out;
}

std::vector<std::string> FastPathCounts::fallbacks() const {
  std::vector<std::string> out;
  for (const NamedPath& p : named_paths(*this))
    if (p.count->fell_back > 0)
      out.push_back(std::string(p.name) + ": " + std::to_string(p.count->fell_back) + " of " +
                    std::to_string(p.count->ran + p.count->fell_back) + " calls fell back");
  return out;
}

void* Context::host_scratch(size_t bytes) {
  if (bytes > host_scratch_bytes_) {
    constexpr size_t kAlign = 64;
    const size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
    host_scratch_bytes_ = 0;
    host_scratch_.reset(std::aligned_alloc(kAlign, rounded));
    if (!host_scratch_) throw std::bad_alloc();
    host_scratch_bytes_ = rounded;
  }
  return host_scratch_.get();
}

void Context::synchronize() const {
  if (cuda_) detail::cuda_synchronize(cuda_.get());
}

uint64_t Context::available_host_memory() const {
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  unsigned long long kib = 0;
  while (std::fgets(line, sizeof(line), f))
    if (std::sscanf(line, "MemAvailable: %llu kB", &kib) == 1) break;
  std::fclose(f);
  return uint64_t(kib) * 1024 / uint64_t(std::max(1, options_.local_size));
}

uint64_t Context::available_memory() const {
  return cuda_ ? uint64_t(detail::cuda_free_memory(cuda_.get())) : available_host_memory();
}

}  // namespace tessera
