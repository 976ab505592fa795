// What a Context owns on the GPU. Only CUDA-enabled sources include this.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstddef>

namespace tessera::detail {

struct CudaResources {
  int device = 0;
  cudaDeviceProp properties{};
  cudaStream_t stream = nullptr;
  cublasLtHandle_t cublaslt = nullptr;
  cudnnHandle_t cudnn = nullptr;  // null if cuDNN could not be initialised
  // cuBLASLt's workspace (32 MiB, as cuBLAS recommends on Hopper).
  void* cublaslt_workspace = nullptr;
  size_t cublaslt_workspace_bytes = 0;

  // A growable scratch area for kernels (attention workspaces, sort buffers, reductions).
  // Contents are undefined between calls; grows by reallocating (synchronising first).
  void* scratch(size_t bytes);

  ~CudaResources();

 private:
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
};

}  // namespace tessera::detail
