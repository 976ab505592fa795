// Builds without CUDA have no NCCL backend.
#include "tessera/communicator.h"
#include "tessera/error.h"

namespace tessera {

std::unique_ptr<Communicator> make_nccl_communicator(Context&) {
  throw config_error("this tessera was built without CUDA, so it has no NCCL backend",
                     "rebuild with -DTESSERA_CUDA=ON, or use the MPI backend");
}

}  // namespace tessera
