# Checkpoint directories in use and checkpoints that must not be believed: a second run writing
# into a directory is refused, naming the first; a manifest changed after its commit (one piece's
# file offset moved: shifted weights) is rejected like a damaged data file and the previous
# checkpoint used; a resume under other flags says what changed and what it means; rank 0 alone
# prints the end-of-run summary.
include(${CMAKE_CURRENT_LIST_DIR}/../support/fault_test_helpers.cmake)
fault_test_setup()

# --- The uninterrupted reference, then a run that saves every 3 steps.
run(ref ${MPI2} ${TRAIN} ${MODEL} --log ${WORK_DIR}/ref.jsonl --export ${WORK_DIR}/ref)
expect_rc(ref 0 "uninterrupted run")
foreach(line "trained 12 steps" "effective training time")
  string(REGEX MATCHALL "${line}" found "${ref_out}${ref_err}")
  list(LENGTH found n)
  if(NOT n EQUAL 1)
    message(FATAL_ERROR "'${line}' printed ${n} times by a 2-rank job, expected once (rank 0):\n${ref_out}")
  endif()
endforeach()

set(ckpt ${WORK_DIR}/ckpt)
run(first ${MPI2} ${TRAIN} ${MODEL} --checkpoint-dir ${ckpt} --checkpoint-every 3 --log ${WORK_DIR}/first.jsonl)
expect_rc(first 0 "the run that saves")
last_record_field(${WORK_DIR}/first.jsonl checkpoint manifest_crc32c logged_crc)
file(READ ${ckpt}/step-00000012/commit.json record)
string(JSON recorded_crc GET "${record}" crc32c)
if(NOT logged_crc STREQUAL recorded_crc)
  message(FATAL_ERROR "the log's manifest_crc32c ${logged_crc} is not the commit record's ${recorded_crc}")
endif()
file(READ ${ckpt}/lock holder)
if(NOT holder MATCHES "^host [^,]+, pid [0-9]+, job [^,]+, since ")
  message(FATAL_ERROR "the lock file does not name its holder: '${holder}'")
endif()

# --- One piece's file offset in the newest manifest moves from 0 to 4 (the file stays parseable).
file(READ ${ckpt}/step-00000012/manifest.json manifest)
string(FIND "${manifest}" "\"file_offset\":0," at)
if(at LESS 0)
  message(FATAL_ERROR "no piece at file offset 0 in the manifest")
endif()
string(REPLACE "\"file_offset\":0," "\"file_offset\":4," manifest "${manifest}")
file(WRITE ${ckpt}/step-00000012/manifest.json "${manifest}")
run(moved ${MPI2} ${TRAIN} ${MODEL} --steps 12 --checkpoint-dir ${ckpt} --checkpoint-every 3 --log ${WORK_DIR}/moved.jsonl
    --export ${WORK_DIR}/moved)
expect_rc(moved 0 "resume past a manifest changed after its commit")
expect_match(moved "checkpoint rejected: [^\n]*step-00000012: manifest.json: [^\n]*does not match its commit record"
             "the rejection names the manifest")
expect_match(moved "resumed from [^\n]*step-00000009 at step 9" "the previous checkpoint is used")
expect_same_last_losses(${WORK_DIR}/moved.jsonl ${WORK_DIR}/ref.jsonl 3 "resumed past a moved manifest vs uninterrupted")
expect_same_model(${WORK_DIR}/moved ${WORK_DIR}/ref "resumed past a moved manifest vs uninterrupted")

# --- Resuming under other flags says what changed and what it means, in one line.
run(longer ${MPI2} ${TRAIN} ${MODEL} --steps 14 --seq-len 16 --checkpoint-dir ${ckpt} --checkpoint-every 3)
expect_rc(longer 0 "resume with another --seq-len and --steps")
expect_match(longer "resume notice: --seq-len 16 \\(was 32\\): steps now read 128 tokens instead of 256; the checkpoint's data held [0-9]+ sequences of 32\\+1 tokens[^\n]*same fraction[^\n]*; --steps 14 \\(was 12\\): the learning-rate schedule from step 13 on is the one of a 14-step run"
             "the notice: the step's size, the data position, the schedule, in one line")
run(shorter ${MPI2} ${TRAIN} ${MODEL} --steps 5 --seq-len 16 --checkpoint-dir ${ckpt} --checkpoint-every 3)
expect_rc(shorter 0 "resume with --steps below the checkpoint's step")
expect_match(shorter "resume notice: --steps 5 is below the checkpoint's step 14: no step runs" "the notice")

# --- A second run writing into the same directory is refused at start, naming the first.
# The first hangs at step 2 until its watchdog ends it (exit code 3); the second starts meanwhile.
execute_process(
  COMMAND sh -c "\"$0\" \"$@\" > ${WORK_DIR}/holder.out 2>&1 & holder=$!; sleep 2; \"$0\" \"$@\" --steps 1 --fault '' 2>&1; echo \"second exit code $?\"; wait $holder"
          ${TRAIN} ${MODEL} --checkpoint-dir ${WORK_DIR}/locked --timeout 5 --fault hang:step=2 --threads 1
  OUTPUT_VARIABLE second TIMEOUT 60)
if(NOT second MATCHES "second exit code 1")
  message(FATAL_ERROR "the second writer was not refused with exit code 1:\n${second}")
endif()
if(NOT second MATCHES "checkpoint directory [^\n]*locked is being written by another run \\(host [^,]+, pid [0-9]+, job ")
  message(FATAL_ERROR "the refusal does not name the first run:\n${second}")
endif()
