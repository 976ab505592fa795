// Check for cuDNN calls (separate so that only sources using cuDNN include its header).
#pragma once

#include <cudnn.h>

#include "core/cuda_check.h"

#define TESSERA_CUDNN_CHECK(call)                                                             \
  do {                                                                                        \
    cudnnStatus_t tessera_st_ = (call);                                                       \
    if (tessera_st_ != CUDNN_STATUS_SUCCESS)                                                  \
      ::tessera::detail::throw_gpu_error("cuDNN", #call, cudnnGetErrorString(tessera_st_),    \
                                         __FILE__, __LINE__);                                 \
  } while (0)
