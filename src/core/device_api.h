// The narrow seam between backend-neutral core code and the CUDA runtime. Implemented by
// cuda_device.cpp in CUDA builds and by no_cuda_device.cpp otherwise, so no other core file
// needs to know whether CUDA was built.
#pragma once

#include <cstddef>
#include <string>

#include "tessera/context.h"

namespace tessera::detail {

struct CudaProbe {
  CudaResources* resources = nullptr;  // null when no usable GPU
  std::string description;             // device name when found
  std::string failure;                 // why no GPU is used, when none is
  double peak_flops = 0.0;             // dense bf16 peak, 0 when unknown
  int ordinal = -1;                    // CUDA device ordinal when found
};

// Finds and opens the GPU for this rank, creating its stream and library handles.
CudaProbe open_cuda(const ContextOptions& options);
void close_cuda(CudaResources* resources);
void cuda_synchronize(CudaResources* resources);
// Free memory of the resources' GPU, in bytes (0 when it cannot be told).
size_t cuda_free_memory(CudaResources* resources);

void* cuda_malloc(size_t bytes);
void cuda_free(void* ptr);
// Page-locked host memory (cudaHostAlloc, portable to every device), and whether CUDA sees a host
// pointer as page-locked.
void* cuda_host_alloc(size_t bytes);
void cuda_free_host(void* ptr);
bool cuda_host_pinned(const void* ptr);
// Synchronous copy on the context's stream; either side may be host or device.
void cuda_memcpy(CudaResources* resources, void* dst, const void* src, size_t bytes);
void cuda_memset(CudaResources* resources, void* dst, int value, size_t bytes);

}  // namespace tessera::detail
