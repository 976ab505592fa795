// What a Context owns on the GPU. Only CUDA-enabled sources include this.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstddef>
#include <memory>
#include <typeindex>
#include <unordered_map>

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

  // State a kernel keeps for the life of this context, one object per type, made on first use:
  // e.g. cuDNN's built attention graphs, which belong to this context's handle and device.
  // Destroyed before the handles it may refer to.
  template <class T>
  T& kernel_state() {
    std::shared_ptr<void>& slot = kernel_state_[std::type_index(typeid(T))];
    if (!slot) slot = std::make_shared<T>();
    return *static_cast<T*>(slot.get());
  }

  ~CudaResources();

 private:
  std::unordered_map<std::type_index, std::shared_ptr<void>> kernel_state_;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
};

}  // namespace tessera::detail
