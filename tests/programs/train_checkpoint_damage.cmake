# Damaged checkpoints: a corrupted newest checkpoint is rejected (the output names the file and the
# rank) and the previous good one is used; a crash while a checkpoint is being written leaves the
# previous one valid, and a resume from it ends bitwise where an uninterrupted run ends.
# Under ZeRO-1, so that every rank's file holds data (AdamW moments of its own slices).
include(${CMAKE_CURRENT_LIST_DIR}/../support/fault_test_helpers.cmake)
fault_test_setup()
list(APPEND MODEL --zero 1)

run(ref ${MPI2} ${TRAIN} ${MODEL} --log ${WORK_DIR}/ref.jsonl --export ${WORK_DIR}/ref)
expect_rc(ref 0 "uninterrupted run")

# --- A byte of rank 1's file in the final checkpoint (step 12) flips after its commit.
set(ckpt ${WORK_DIR}/corrupt_ckpt)
run(first ${MPI2} ${TRAIN} ${MODEL} --checkpoint-dir ${ckpt} --checkpoint-every 3 --fault corrupt:step=12:rank=1)
expect_rc(first 0 "run whose last checkpoint gets corrupted")
expect_match(first "fault injection: corrupted [^\n]*step-00000012/rank-00001.bin" "the corruption")
# Resuming: step 12 fails its checksum, step 9 is loaded, steps 9..11 run again.
run(resumed ${MPI2} ${TRAIN} ${MODEL} --checkpoint-dir ${ckpt} --checkpoint-every 3 --log ${WORK_DIR}/corrupt.jsonl
    --export ${WORK_DIR}/corrupt)
expect_rc(resumed 0 "resume past a corrupted checkpoint")
expect_match(resumed "checkpoint rejected: [^\n]*step-00000012[^\n]*rank-00001.bin \\(rank 1\\)" "the rejection names the file and rank")
expect_match(resumed "resumed from [^\n]*step-00000009 at step 9" "the previous checkpoint is used")
expect_same_last_losses(${WORK_DIR}/corrupt.jsonl ${WORK_DIR}/ref.jsonl 3 "resumed past a corrupted checkpoint vs uninterrupted")
expect_same_model(${WORK_DIR}/corrupt ${WORK_DIR}/ref "resumed past a corrupted checkpoint vs uninterrupted")

# --- Rank 1 dies at the start of step 7, just after the save of step 6 began writing in the background:
# that save never commits; `latest` still names step 3.
set(ckpt ${WORK_DIR}/crash_ckpt)
run(crash ${MPI2} ${TRAIN} ${MODEL} --checkpoint-dir ${ckpt} --checkpoint-every 3 --fault kill:rank=1:step=7)
if(crash_rc EQUAL 0)
  message(FATAL_ERROR "the job with a killed rank exited 0:\n${crash_out}\n${crash_err}")
endif()
file(READ ${ckpt}/latest latest)
string(STRIP "${latest}" latest)
if(NOT latest STREQUAL "step-00000003" OR EXISTS ${ckpt}/step-00000006)
  message(FATAL_ERROR "after a crash during the save of step 6, latest is '${latest}' (expected step-00000003)")
endif()
# ... and a crash of an earlier job left a half-written temporary directory behind.
file(MAKE_DIRECTORY ${ckpt}/.tmp-step-00000009)
file(WRITE ${ckpt}/.tmp-step-00000009/rank-00000.bin "half a checkpoint")
run(after_crash ${MPI2} ${TRAIN} ${MODEL} --checkpoint-dir ${ckpt} --checkpoint-every 3 --log ${WORK_DIR}/crash.jsonl
    --export ${WORK_DIR}/crash)
expect_rc(after_crash 0 "resume after a crash during a checkpoint write")
expect_match(after_crash "resumed from [^\n]*step-00000003 at step 3" "the last committed checkpoint is used")
expect_same_last_losses(${WORK_DIR}/crash.jsonl ${WORK_DIR}/ref.jsonl 9 "resumed after a crash vs uninterrupted")
expect_same_model(${WORK_DIR}/crash ${WORK_DIR}/ref "resumed after a crash vs uninterrupted")
file(GLOB leftovers LIST_DIRECTORIES true ${ckpt}/.tmp-*)
if(leftovers)
  message(FATAL_ERROR "temporary checkpoint directories were not cleaned up: ${leftovers}")
endif()

# --- --resume never starts afresh even though checkpoints exist.
run(fresh ${MPI2} ${TRAIN} ${MODEL} --steps 2 --checkpoint-dir ${ckpt} --resume never)
expect_rc(fresh 0 "--resume never")
if("${fresh_out}" MATCHES "resumed from")
  message(FATAL_ERROR "--resume never resumed:\n${fresh_out}")
endif()
