// Backend choice: NCCL when every rank drives a GPU of its own; otherwise MPI (CPU ranks, or
// several ranks sharing one GPU, which NCCL refuses).
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "parallel/mpi_check.h"
#include "tessera/communicator.h"

namespace tessera {

namespace {
// Whether two ranks on one host would use the same GPU; all ranks agree on the answer.
bool gpus_shared(Context& ctx, int device_ordinal) {
  struct Entry {
    char host[64];
    int device;
  } mine{};
  gethostname(mine.host, sizeof(mine.host) - 1);
  mine.device = device_ordinal;
  int size = 1;
  TESSERA_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
  std::vector<Entry> all(size_t(size), Entry{});
  TESSERA_MPI_CHECK(MPI_Allgather(&mine, sizeof(Entry), MPI_BYTE, all.data(), sizeof(Entry), MPI_BYTE, MPI_COMM_WORLD));
  for (int i = 0; i < size; ++i)
    for (int j = i + 1; j < size; ++j)
      if (std::strncmp(all[size_t(i)].host, all[size_t(j)].host, sizeof(mine.host)) == 0 &&
          all[size_t(i)].device == all[size_t(j)].device)
        return true;
  return false;
}
}  // namespace

std::unique_ptr<Communicator> make_communicator(Context& ctx) {
  // Every rank must take part in the same collectives, so the decision is made collectively.
  int on_gpu = ctx.on_gpu() ? 1 : 0, all_on_gpu = 0;
  TESSERA_MPI_CHECK(MPI_Allreduce(&on_gpu, &all_on_gpu, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  int ordinal = ctx.on_gpu() ? ctx.gpu_ordinal() : -1;
  bool shared = gpus_shared(ctx, ordinal);
  if (all_on_gpu && built_with_cuda() && !shared) return make_nccl_communicator(ctx);
  return make_mpi_communicator(ctx);
}

}  // namespace tessera
