# Runs a program test (SCRIPT) with its ranks started by srun in the test cluster that the "slurm:
# start" fixture brought up (SLURM_CONF in the environment); skipped when there is no cluster.
if(NOT EXISTS "$ENV{SLURM_CONF}")
  message("TESSERA-SKIP: no Slurm test cluster (the fixture printed why)")
  return()
endif()
set(LAUNCH_WITH srun)
include(${SCRIPT})
