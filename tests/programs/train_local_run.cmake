# The local checkpoint tier resumes only its own run's shards. A directory left by an earlier job with
# the same model, layout and world size is a trap: resuming it would silently train on from another
# run's state. Every shard carries the run ID (TESSERA_RUN_ID, which tessera-launch keeps for all
# attempts of a job): the same ID resumes, another one starts afresh and says why.
include(${CMAKE_CURRENT_LIST_DIR}/../support/fault_test_helpers.cmake)
fault_test_setup()
set(LOCAL --local-checkpoint-dir ${WORK_DIR}/local --local-checkpoint-every 2)

# Run A trains 6 steps, saving to the local tier every 2.
set(ENV{TESSERA_RUN_ID} run-a)
run(first ${MPI2} ${TRAIN} ${MODEL} ${LOCAL} --steps 6)
expect_rc(first 0 "run A")
expect_match(first "local checkpoints: every 2 steps in [^\n]*, run run-a" "the run ID is shown")

# The same run, relaunched with more steps, resumes from its step 6.
run(again ${MPI2} ${TRAIN} ${MODEL} ${LOCAL} --steps 8 --log ${WORK_DIR}/again.jsonl)
expect_rc(again 0 "run A relaunched")
expect_match(again "resumed from the local tier: [^\n]*step 6" "run A resumes its own shards")

# Another run in the same directory, same layout: starts from step 1 and says why.
set(ENV{TESSERA_RUN_ID} run-b)
run(other ${MPI2} ${TRAIN} ${MODEL} ${LOCAL} --steps 8 --log ${WORK_DIR}/other.jsonl)
expect_rc(other 0 "run B")
if(other_out MATCHES "resumed from")
  message(FATAL_ERROR "run B resumed run A's local shards:\n${other_out}")
endif()
expect_match(other "local checkpoints not used: the local tier holds only another run's shards, up to step 8 \\(this node: run run-a\\); this run is run-b"
             "why run A's shards were not used")
log_records(${WORK_DIR}/other.jsonl train trained)
list(LENGTH trained n)
if(NOT n EQUAL 8)
  message(FATAL_ERROR "run B should train all 8 steps from the start, trained ${n}")
endif()

# Without TESSERA_RUN_ID (no launcher, no Slurm), every run is a new one.
unset(ENV{TESSERA_RUN_ID})
unset(ENV{SLURM_JOB_ID})
run(bare ${MPI2} ${TRAIN} ${MODEL} ${LOCAL} --steps 8)
expect_rc(bare 0 "a run without TESSERA_RUN_ID")
expect_match(bare "local checkpoints not used: the local tier holds only another run's shards" "a new run by default")

# Under tessera-launch, a killed rank's relaunch keeps the run and resumes from the local tier.
set(ckpt ${WORK_DIR}/ckpt)
run(launched ${LAUNCH} --max-restarts 2 --restart-delay 0 --checkpoint-dir ${ckpt} --failure-dir ${ckpt}/failures --
    ${MPI2} ${TRAIN} ${MODEL} ${LOCAL} --steps 10 --checkpoint-dir ${ckpt} --checkpoint-every 100 --fault kill:rank=1:step=7)
expect_rc(launched 0 "a job with a killed rank under tessera-launch")
expect_match(launched "resumed from the local tier: [^\n]*step [46]" "the relaunch resumes the job's own local shards")
