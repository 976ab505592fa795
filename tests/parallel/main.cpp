// Catch2 main for tests that run on several ranks under mpirun: every rank runs every test case;
// the process fails when any rank has a failure, so one bad rank fails the CTest test.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <mpi.h>

#include "tessera/communicator.h"

int main(int argc, char** argv) {
  tessera::MpiSession mpi(&argc, &argv);
  int failures = Catch::Session().run(argc, argv);
  int worst = 0;
  MPI_Allreduce(&failures, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (mpi.rank() == 0) std::printf("ranks: %d, worst failures on a rank: %d\n", mpi.world_size(), worst);
  return worst == 0 ? 0 : 1;
}
