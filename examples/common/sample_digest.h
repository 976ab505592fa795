// The samples a step trained on, as one digest for its log line: FNV-1a (64 bit) over the ids
// (shard, offset) of every sequence of the step, microbatch by microbatch, as the loader returned
// them, then over the data-parallel ranks' digests in rank order. Two runs trained on the same
// samples at a step exactly when their digests agree (up to 64-bit collisions), so a run with
// failures can be compared with an uninterrupted one step by step (tessera-diagnose --samples).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tessera/communicator.h"
#include "tessera/context.h"
#include "tessera/data.h"

namespace tessera::program {

uint64_t digest_samples(const std::vector<SampleId>& ids);
// Collective over the data-parallel group (null: one replica): the digest of the whole global batch.
uint64_t global_step_digest(Context& ctx, Communicator* dp, const std::vector<SampleId>& mine);
std::string digest_hex(uint64_t digest);  // 16 hex digits

}  // namespace tessera::program
