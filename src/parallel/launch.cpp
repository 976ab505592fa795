// Rank discovery from the launcher's environment, and the process-wide MPI session.
#include <mpi.h>

#include <cstdlib>
#include <string>

#include "parallel/mpi_check.h"
#include "tessera/communicator.h"

namespace tessera {

namespace detail {
void throw_mpi_error(const char* call, int code, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw Error(ExitCode::hang_or_peer, std::string("MPI call failed: ") + call + ": " + text,
              std::string(file) + ":" + std::to_string(line),
              "a peer rank may have died or the network failed; check the other ranks' output");
}
}  // namespace detail

namespace {
bool read_int(const char* name, int* out) {
  const char* v = std::getenv(name);
  if (!v || !*v) return false;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < 0) return false;
  *out = int(x);
  return true;
}
}  // namespace

LaunchInfo detect_launch() {
  LaunchInfo info;
  if (read_int("OMPI_COMM_WORLD_RANK", &info.rank) && read_int("OMPI_COMM_WORLD_SIZE", &info.world_size)) {
    read_int("OMPI_COMM_WORLD_LOCAL_RANK", &info.local_rank);
    read_int("OMPI_COMM_WORLD_LOCAL_SIZE", &info.local_size);
    info.source = "open-mpi";
  } else if (read_int("SLURM_PROCID", &info.rank) && read_int("SLURM_NTASKS", &info.world_size)) {
    read_int("SLURM_LOCALID", &info.local_rank);
    if (!read_int("SLURM_NTASKS_PER_NODE", &info.local_size)) info.local_size = info.world_size;
    info.source = "slurm";
  } else if (read_int("RANK", &info.rank) && read_int("WORLD_SIZE", &info.world_size)) {
    read_int("LOCAL_RANK", &info.local_rank);
    read_int("LOCAL_WORLD_SIZE", &info.local_size);
    info.source = "torchrun";
  } else {
    info.source = "single";
  }
  return info;
}

MpiSession::MpiSession(int* argc, char*** argv) {
  int initialized = 0;
  TESSERA_MPI_CHECK(MPI_Initialized(&initialized));
  if (!initialized) {
    int provided = 0;
    TESSERA_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    owns_ = true;
  }
  TESSERA_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  TESSERA_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_size_));
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_ && !finalized) MPI_Finalize();
}

}  // namespace tessera
