// Small collectives on host memory, for control data (stop flags, timings, digests, host names):
// in place on a CPU context, staged through device memory on a GPU (NCCL takes device memory only).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tessera/communicator.h"
#include "tessera/context.h"

namespace tessera {

// Every rank's `bytes` bytes (a multiple of 4), rank after rank, into all (comm.size() * bytes).
void host_all_gather(Context& ctx, Communicator& comm, const void* mine, size_t bytes, void* all);
// In place over values (every rank passes the same count).
void host_all_reduce(Context& ctx, Communicator& comm, std::vector<float>& values, ReduceOp op);
// Sends and receives between host buffers (PeerTransfer tensors on the CPU), staged through device
// memory on a GPU. Returns once every transfer has completed.
void host_exchange(Context& ctx, Communicator& comm, const std::vector<PeerTransfer>& transfers);
// Every rank's string (at most max_bytes - 1 bytes of it), by rank.
std::vector<std::string> host_all_gather_strings(Context& ctx, Communicator& comm, const std::string& mine,
                                                 size_t max_bytes = 64);

}  // namespace tessera
