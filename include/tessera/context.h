// Context: owns the device, streams, library handles and workspaces one rank uses.
// There is no global state in tessera: everything that would be global hangs off a Context.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tessera/dtype.h"
#include "tessera/op_profile.h"

namespace tessera {

enum class DevicePreference { automatic, cpu, cuda };

struct ContextOptions {
  DevicePreference device = DevicePreference::automatic;
  // GPU ordinal; -1 picks local_rank modulo the visible GPUs.
  int gpu_index = -1;
  int local_rank = 0;
  // Ranks sharing this node (from the launcher): the default thread count divides the cores
  // among them, since oversubscribed OpenMP teams stall each other and every collective.
  int local_size = 1;
  // CPU worker threads for the CPU backend (OpenMP and OpenBLAS); 0 = cores / local_size.
  int cpu_threads = 0;
  // Print the backend choice (and a CPU fallback's reason) once, when the context is made.
  bool announce = true;
  // CUDA attention: use cuDNN's fused flash attention where it applies (bf16, head size
  // a multiple of 8 up to 128); false forces the plain CUDA kernels.
  bool use_cudnn_attention = true;
  // Time every kernel call (ops::) into op_profile(): the per-op breakdown of a step.
  bool profile_ops = false;
  // Print the fast-path counts (below) to stderr when the context is destroyed, if it ran on a
  // GPU. The environment variable TESSERA_REPORT_FAST_PATHS=1 turns this on too.
  bool report_fast_paths = false;
};

// How often each GPU fast path ran, and how often it applied but fell back to a slower path
// (cuBLASLt refusing an epilogue, cuDNN unable to build an attention graph). Paths that do not
// apply (float32 where the fast path is bf16-only, a head size cuDNN does not take, the fused
// attention turned off) are not counted either way. Tests and the GPU check read them to prove
// that the fast paths ran.
struct FastPathCount {
  int64_t ran = 0;
  int64_t fell_back = 0;
};
struct FastPathCounts {
  FastPathCount matmul_bias_epilogue;     // cuBLASLt's bias epilogue, else a separate bias kernel
  FastPathCount matmul_gelu_epilogue;     // cuBLASLt's GELU(+bias) epilogue (bf16), else matmul then GELU
  FastPathCount cudnn_attention_forward;  // cuDNN's fused flash attention (bf16), else the plain kernels
  FastPathCount cudnn_attention_backward; // its deterministic backward, else the plain kernels
  // One line: "matmul bias epilogue 96 ran, 0 fell back; ...".
  std::string describe() const;
  // "<path>: N of M calls fell back" for every path that fell back at least once.
  std::vector<std::string> fallbacks() const;
};

namespace detail {
struct CudaResources;  // streams, cuBLASLt and cuDNN handles, workspaces (src/core)
}

class Context {
 public:
  explicit Context(const ContextOptions& options = {});
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Device device() const { return device_; }
  bool on_gpu() const { return device_ == Device::cuda; }
  const ContextOptions& options() const { return options_; }
  int cpu_threads() const { return cpu_threads_; }
  // Human-readable device, e.g. "NVIDIA H100 80GB HBM3" or "CPU (2 threads)".
  const std::string& device_description() const { return description_; }
  // Why the GPU was not used when the preference was automatic (empty when on GPU).
  const std::string& fallback_reason() const { return fallback_reason_; }
  // Peak dense bf16 FLOP/s of the GPU for MFU (0 when unknown or on CPU).
  double peak_flops() const { return peak_flops_; }
  // The CUDA device ordinal in use, or -1 on the CPU backend.
  int gpu_ordinal() const { return gpu_ordinal_; }
  // Bytes this rank can still allocate on its device: the GPU's free memory, or on the CPU its share
  // of the host's available memory (MemAvailable / ranks on this node). 0 when unknown.
  uint64_t available_memory() const;
  // This rank's share of the host's available memory (0 when unknown).
  uint64_t available_host_memory() const;

  // The per-op wall times since the last clear(); null unless ContextOptions::profile_ops.
  OpProfile* op_profile() const { return op_profile_.get(); }

  // Waits for all work queued on this context's streams.
  void synchronize() const;

  // Which GPU fast paths ran on this context (the CUDA kernels count them).
  FastPathCounts& fast_paths() { return fast_paths_; }
  const FastPathCounts& fast_paths() const { return fast_paths_; }

  // CUDA-side resources; null on the CPU backend. Used by src/ only.
  detail::CudaResources* cuda() const { return cuda_.get(); }
  // Host scratch memory for the CPU kernels: at least `bytes` bytes, 64-byte aligned, valid until
  // the next call. It grows to the largest request and stays, so steps do not allocate.
  // Used by src/ only.
  void* host_scratch(size_t bytes);

 private:
  ContextOptions options_;
  Device device_ = Device::cpu;
  int cpu_threads_ = 1;
  std::string description_;
  std::string fallback_reason_;
  double peak_flops_ = 0.0;
  int gpu_ordinal_ = -1;
  bool report_fast_paths_ = false;
  FastPathCounts fast_paths_;
  std::unique_ptr<detail::CudaResources, void (*)(detail::CudaResources*)> cuda_;
  std::unique_ptr<OpProfile> op_profile_;
  std::unique_ptr<void, void (*)(void*)> host_scratch_;
  size_t host_scratch_bytes_ = 0;
};

}  // namespace tessera
