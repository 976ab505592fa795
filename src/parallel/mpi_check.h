// Check for MPI calls: a failure throws tessera::Error naming the call, file and line.
// Communicators created by tessera use MPI_ERRORS_RETURN so that failures reach this check.
#pragma once

#include <mpi.h>

#include <string>

#include "tessera/error.h"

namespace tessera::detail {
[[noreturn]] void throw_mpi_error(const char* call, int code, const char* file, int line);
}

#define TESSERA_MPI_CHECK(call)                                                     \
  do {                                                                              \
    int tessera_mpi_rc_ = (call);                                                   \
    if (tessera_mpi_rc_ != MPI_SUCCESS)                                             \
      ::tessera::detail::throw_mpi_error(#call, tessera_mpi_rc_, __FILE__, __LINE__); \
  } while (0)
