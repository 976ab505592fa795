// The run a job's attempts share (TESSERA_RUN_ID): the local checkpoint tier's shards carry it, and
// a restore takes only its own run's shards.
#pragma once

#include <string>

namespace tessera::program {

// TESSERA_RUN_ID when set; else the Slurm job's, "slurm-<id>" (kept when Slurm requeues the job);
// else a new random ID.
std::string run_id_from_environment();

}  // namespace tessera::program
