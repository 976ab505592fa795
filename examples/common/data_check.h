// The check of every token id against the model's vocabulary before the first step, split over
// the job's ranks so that a 100 GB dataset is read once by the whole job, not once per rank.
#pragma once

#include <string>
#include <vector>

#include "tessera/communicator.h"
#include "tessera/context.h"
#include "tessera/data.h"

namespace tessera::program {

// Collective. Each rank checks a contiguous 1/world of every loader's data on the context's CPU
// threads; the ranks then agree on the first bad token (in data order) of the first loader that has
// one, and every rank throws the same data error naming its file and offset. Returns a line for the
// progress output: what was checked, how long it took, how fast.
std::string check_data_tokens(Context& ctx, Communicator& world, const std::vector<const DataLoader*>& loaders,
                              int vocab_size);

}  // namespace tessera::program
