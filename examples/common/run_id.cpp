#include "common/run_id.h"

#include <cstdio>
#include <cstdlib>
#include <random>

namespace tessera::program {

std::string run_id_from_environment() {
  if (const char* v = std::getenv("TESSERA_RUN_ID"); v && *v) return v;
  if (const char* job = std::getenv("SLURM_JOB_ID"); job && *job) return std::string("slurm-") + job;
  std::random_device entropy;
  char id[17];
  std::snprintf(id, sizeof(id), "%08x%08x", unsigned(entropy()), unsigned(entropy()));
  return id;
}

}  // namespace tessera::program
