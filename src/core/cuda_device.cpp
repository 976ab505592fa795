// Device seam for CUDA builds: finds the GPU, owns its stream, cuBLASLt and cuDNN handles.
// Any failure to find a usable GPU is reported back (not thrown) so that the context can fall
// back to the CPU backend on machines without a GPU or driver.
#include <cudnn.h>

#include <string>

#include "core/cuda_check.h"
#include "core/cuda_resources.h"
#include "core/device_api.h"

namespace tessera::detail {

void throw_gpu_error(const char* library, const char* call, const std::string& message,
                     const char* file, int line) {
  throw Error(ExitCode::hang_or_peer, std::string(library) + " call failed: " + call + ": " + message,
              std::string(file) + ":" + std::to_string(line),
              "check the GPU (nvidia-smi), the driver and the CUDA libraries on this node");
}

namespace {

// Dense bf16 tensor-core peak by product name; 0 when the card is not known.
double dense_bf16_peak(const cudaDeviceProp& p) {
  std::string name = p.name;
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (has("H200")) return 989e12;
  if (has("H100")) {
    if (has("PCIe")) return 756e12;
    if (has("NVL")) return 835e12;
    return 989e12;  // SXM5 (HBM3)
  }
  if (has("H800")) return 989e12;
  if (has("GH200")) return 989e12;
  if (has("A100") || has("A800")) return 312e12;
  if (has("L40S")) return 362e12;
  if (has("A10G")) return 70e12;
  return 0.0;
}

}  // namespace

void* CudaResources::scratch(size_t bytes) {
  if (bytes <= scratch_bytes_) return scratch_;
  if (scratch_) {
    TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream));
    TESSERA_CUDA_CHECK(cudaFree(scratch_));
    scratch_ = nullptr;
  }
  size_t grown = bytes + bytes / 4;
  TESSERA_CUDA_CHECK(cudaMalloc(&scratch_, grown));
  scratch_bytes_ = grown;
  return scratch_;
}

CudaResources::~CudaResources() {
  // Destructors must not throw: release what we can, ignore errors (the process may be
  // tearing down after a device failure).
  if (stream) cudaStreamSynchronize(stream);
  kernel_state_.clear();  // cuDNN graphs and the like, before the handles they were built with
  if (scratch_) cudaFree(scratch_);
  if (cublaslt_workspace) cudaFree(cublaslt_workspace);
  if (cudnn) cudnnDestroy(cudnn);
  if (cublaslt) cublasLtDestroy(cublaslt);
  if (stream) cudaStreamDestroy(stream);
}

CudaProbe open_cuda(const ContextOptions& options) {
  CudaProbe probe;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    probe.failure = std::string("no usable CUDA driver or GPU (") + cudaGetErrorString(err) + ")";
    cudaGetLastError();  // clear the sticky error so later probes start clean
    return probe;
  }
  if (count == 0) {
    probe.failure = "no GPU visible (CUDA_VISIBLE_DEVICES?)";
    return probe;
  }
  int device = options.gpu_index >= 0 ? options.gpu_index : options.local_rank % count;
  if (device >= count) {
    probe.failure = "GPU " + std::to_string(device) + " requested but only " + std::to_string(count) +
                    " visible";
    return probe;
  }
  auto* r = new CudaResources();
  try {
    r->device = device;
    TESSERA_CUDA_CHECK(cudaSetDevice(device));
    TESSERA_CUDA_CHECK(cudaGetDeviceProperties(&r->properties, device));
    TESSERA_CUDA_CHECK(cudaStreamCreateWithFlags(&r->stream, cudaStreamNonBlocking));
    TESSERA_CUBLAS_CHECK(cublasLtCreate(&r->cublaslt));
    r->cublaslt_workspace_bytes = size_t(32) << 20;
    TESSERA_CUDA_CHECK(cudaMalloc(&r->cublaslt_workspace, r->cublaslt_workspace_bytes));
    if (cudnnCreate(&r->cudnn) == CUDNN_STATUS_SUCCESS) {
      cudnnSetStream(r->cudnn, r->stream);
    } else {
      r->cudnn = nullptr;  // attention falls back to the plain CUDA kernels
    }
  } catch (const Error& e) {
    delete r;
    probe.failure = std::string("GPU initialisation failed: ") + e.what();
    return probe;
  }
  probe.resources = r;
  probe.description = std::string(r->properties.name) + " (GPU " + std::to_string(device) + ")";
  probe.peak_flops = dense_bf16_peak(r->properties);
  probe.ordinal = device;
  return probe;
}

void close_cuda(CudaResources* resources) { delete resources; }

void cuda_synchronize(CudaResources* resources) {
  TESSERA_CUDA_CHECK(cudaStreamSynchronize(resources->stream));
}

size_t cuda_free_memory(CudaResources* resources) {
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaSetDevice(resources->device) != cudaSuccess || cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    cudaGetLastError();  // not knowing is not an error: the allocation will tell
    return 0;
  }
  return free_bytes;
}

void* cuda_malloc(size_t bytes) {
  void* p = nullptr;
  TESSERA_CUDA_CHECK(cudaMalloc(&p, bytes ? bytes : 1));
  return p;
}

void cuda_free(void* ptr) {
  if (ptr) cudaFree(ptr);
}

void* cuda_host_alloc(size_t bytes) {
  void* p = nullptr;
  TESSERA_CUDA_CHECK(cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocPortable));
  return p;
}

void cuda_free_host(void* ptr) {
  if (ptr) cudaFreeHost(ptr);
}

bool cuda_host_pinned(const void* ptr) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, ptr) != cudaSuccess) {
    cudaGetLastError();  // an unregistered pointer is an error on some drivers: not sticky
    return false;
  }
  return attributes.type == cudaMemoryTypeHost;
}

void cuda_memcpy(CudaResources* resources, void* dst, const void* src, size_t bytes) {
  TESSERA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, resources->stream));
  TESSERA_CUDA_CHECK(cudaStreamSynchronize(resources->stream));
}

void cuda_memset(CudaResources* resources, void* dst, int value, size_t bytes) {
  TESSERA_CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, resources->stream));
}

}  // namespace tessera::detail
