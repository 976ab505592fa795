// Checks made on every rank at start, with one outcome for the job: a rank that fails alone must
// not leave the others waiting in a collective for it.
#pragma once

#include <functional>

#include "tessera/communicator.h"
#include "tessera/context.h"

namespace tessera::program {

// Runs `check` on this rank and learns whether it failed anywhere (one small all-reduce). When it
// failed on some rank, every rank throws: its own error where it failed, else a config error naming
// the first rank that failed (whose own message says why).
void check_on_every_rank(Context& ctx, Communicator& world, const std::function<void()>& check);

}  // namespace tessera::program
