# --on-nan: a non-finite loss (made by a nan fault, on one rank: the averaged loss is non-finite on
# every rank) is skipped (no update, counted and logged), rolled back (the latest checkpoint is
# reloaded and training goes on, here ending bitwise where an uninterrupted run ends), or stops the
# job with exit code 4 after a final log line.
include(${CMAKE_CURRENT_LIST_DIR}/../support/fault_test_helpers.cmake)
fault_test_setup()

run(ref ${MPI2} ${TRAIN} ${MODEL} --log ${WORK_DIR}/ref.jsonl --export ${WORK_DIR}/ref)
expect_rc(ref 0 "uninterrupted run")

# --- skip: step 4's update is dropped; the other 11 steps train.
run(skip ${MPI2} ${TRAIN} ${MODEL} --on-nan skip --fault nan:rank=1:step=4 --log ${WORK_DIR}/skip.jsonl)
expect_rc(skip 0 "--on-nan skip")
expect_match(skip "non-finite \\(--on-nan skip\\)" "the terminal line of the skipped step")
log_records(${WORK_DIR}/skip.jsonl skipped_step skipped)
list(LENGTH skipped n)
if(NOT n EQUAL 1)
  message(FATAL_ERROR "expected one skipped_step record, got ${n}")
endif()
string(JSON skipped_at GET "${skipped}" step)
string(JSON skipped_loss TYPE "${skipped}" loss)
if(NOT skipped_at EQUAL 4 OR NOT skipped_loss STREQUAL "NULL")
  message(FATAL_ERROR "unexpected skipped_step record: ${skipped}")
endif()
read_train_losses(${WORK_DIR}/skip.jsonl skip_losses)
list(LENGTH skip_losses n)
if(NOT n EQUAL 11)
  message(FATAL_ERROR "expected 11 trained steps around the skipped one, got ${n}")
endif()
# One step numbering everywhere, from 1: the train records are of steps 1..12 without 4.
log_records(${WORK_DIR}/skip.jsonl train trained)
set(trained_steps "")
foreach(record IN LISTS trained)
  string(JSON s GET "${record}" step)
  list(APPEND trained_steps ${s})
endforeach()
if(NOT trained_steps STREQUAL "1;2;3;5;6;7;8;9;10;11;12")
  message(FATAL_ERROR "the train records are of steps ${trained_steps}, expected 1..12 without the skipped step 4")
endif()
expect_match(skip "step +4/12 \\| loss [-]?nan[^\n]*non-finite" "the skipped step's line names step 4")
last_record_field(${WORK_DIR}/skip.jsonl summary skipped_steps count)
if(NOT count EQUAL 1)
  message(FATAL_ERROR "the summary counts ${count} skipped steps, expected 1")
endif()
# The steps before the skipped one (1..3) are the uninterrupted run's; the ones after it are not (one
# update fewer).
read_train_losses(${WORK_DIR}/ref.jsonl ref_losses)
list(SUBLIST ref_losses 0 3 ref_head)
list(SUBLIST skip_losses 0 3 skip_head)
list(GET ref_losses -1 ref_last)
list(GET skip_losses -1 skip_last)
if(NOT ref_head STREQUAL skip_head OR ref_last STREQUAL skip_last)
  message(FATAL_ERROR "skipping changed the steps before it, or not the steps after it:\n${skip_losses}\nvs\n${ref_losses}")
endif()

# --- rollback: the NaN at step 5 reloads the checkpoint of step 4; the fault fires once, so the
# replayed steps and everything after them match the uninterrupted run bitwise.
run(rollback ${MPI2} ${TRAIN} ${MODEL} --on-nan rollback --checkpoint-dir ${WORK_DIR}/rollback_ckpt --checkpoint-every 2
    --fault nan:step=5 --log ${WORK_DIR}/rollback.jsonl --export ${WORK_DIR}/rollback)
expect_rc(rollback 0 "--on-nan rollback")
expect_match(rollback "rolled back from step 5 to [^\n]*step-00000004 at step 4" "the rollback line")
last_record_field(${WORK_DIR}/rollback.jsonl rollback step back_to)
if(NOT back_to EQUAL 4)
  message(FATAL_ERROR "rolled back to step ${back_to}, expected 4")
endif()
expect_same_last_losses(${WORK_DIR}/rollback.jsonl ${WORK_DIR}/ref.jsonl 8 "rolled back vs uninterrupted")
expect_same_model(${WORK_DIR}/rollback ${WORK_DIR}/ref "rolled back vs uninterrupted")

# --- rollback with no checkpoint yet to go back to: stops like --on-nan stop.
run(rollback0 ${MPI2} ${TRAIN} ${MODEL} --on-nan rollback --checkpoint-dir ${WORK_DIR}/rollback0_ckpt --checkpoint-every 6
    --fault nan:step=2)
expect_rc(rollback0 4 "--on-nan rollback before the first checkpoint")
expect_match(rollback0 "with no checkpoint to roll back to" "why it stopped")

# --- stop (the default): exit code 4, the log's last line says why.
run(stop ${MPI2} ${TRAIN} ${MODEL} --fault nan:step=3 --log ${WORK_DIR}/stop.jsonl)
expect_rc(stop 4 "--on-nan stop")
expect_match(stop "loss is nan at step 3" "the error message")
expect_match(stop "step +3/12 \\| loss [-]?nan[^\n]*non-finite" "the progress line of the failing step says step 3 too")
expect_match(stop "step +2/12 \\| loss [0-9]" "steps 1 and 2 trained")
file(STRINGS ${WORK_DIR}/stop.jsonl lines)
list(GET lines -1 last)
string(JSON kind GET "${last}" kind)
string(JSON step GET "${last}" step)
if(NOT kind STREQUAL "nonfinite_loss" OR NOT step EQUAL 3)
  message(FATAL_ERROR "the last log line is not the non-finite loss of step 3: ${last}")
endif()
