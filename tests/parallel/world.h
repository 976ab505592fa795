// The MPI world communicator the multi-rank tests share (CPU context, MPI backend).
#pragma once

#include <memory>

#include "support/test_support.h"
#include "tessera/communicator.h"

namespace tessera::test {

inline Communicator& world() {
  static std::unique_ptr<Communicator> comm = make_mpi_communicator(cpu_context());
  return *comm;
}

}  // namespace tessera::test
