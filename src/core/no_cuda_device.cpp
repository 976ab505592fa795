// Device seam for builds without CUDA: there is never a GPU.
#include "core/device_api.h"
#include "tessera/error.h"

namespace tessera::detail {

struct CudaResources {};

CudaProbe open_cuda(const ContextOptions&) {
  CudaProbe probe;
  probe.failure = "tessera was built without CUDA (TESSERA_CUDA=OFF or nvcc not found)";
  return probe;
}
void close_cuda(CudaResources*) {}
void cuda_synchronize(CudaResources*) {}
size_t cuda_free_memory(CudaResources*) { return 0; }

[[noreturn]] static void no_cuda() {
  throw internal_error("CUDA memory requested in a build without CUDA", TESSERA_HERE);
}
void* cuda_malloc(size_t) { no_cuda(); }
void cuda_free(void*) {}
void* cuda_host_alloc(size_t) { no_cuda(); }
void cuda_free_host(void*) {}
bool cuda_host_pinned(const void*) { return false; }
void cuda_memcpy(CudaResources*, void*, const void*, size_t) { no_cuda(); }
void cuda_memset(CudaResources*, void*, int, size_t) { no_cuda(); }

}  // namespace tessera::detail
