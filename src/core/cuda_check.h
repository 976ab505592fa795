// Checks for every CUDA, cuBLAS(Lt), cuDNN and NCCL call: a failure throws tessera::Error naming
// the call, the file and the line. Include only from CUDA-enabled sources.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "tessera/error.h"

namespace tessera::detail {
[[noreturn]] void throw_gpu_error(const char* library, const char* call, const std::string& message,
                                  const char* file, int line);
}

#define TESSERA_CUDA_CHECK(call)                                                              \
  do {                                                                                        \
    cudaError_t tessera_err_ = (call);                                                        \
    if (tessera_err_ != cudaSuccess)                                                          \
      ::tessera::detail::throw_gpu_error("CUDA", #call, cudaGetErrorString(tessera_err_),     \
                                         __FILE__, __LINE__);                                 \
  } while (0)

#define TESSERA_CUBLAS_CHECK(call)                                                            \
  do {                                                                                        \
    cublasStatus_t tessera_st_ = (call);                                                      \
    if (tessera_st_ != CUBLAS_STATUS_SUCCESS)                                                 \
      ::tessera::detail::throw_gpu_error("cuBLAS", #call, cublasLtGetStatusString(tessera_st_), \
                                         __FILE__, __LINE__);                                 \
  } while (0)

// After every kernel launch: catches bad launch configurations at the launch site.
#define TESSERA_CUDA_CHECK_LAUNCH() TESSERA_CUDA_CHECK(cudaGetLastError())
