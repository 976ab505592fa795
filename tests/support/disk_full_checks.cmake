# The checks of tests/programs/train_disk_full.cmake, run while WORK_DIR/disk is a 24 MB tmpfs (the
# caller unmounts it whatever happens here). A checkpoint of the tiny model is 10.5 MB: with a 12 MB
# filler, one fits and the next does not.
include(${CMAKE_CURRENT_LIST_DIR}/fault_test_helpers.cmake)
set(disk ${WORK_DIR}/disk)
prepare_corpus(corpus 60000)
set(MODEL --model tiny --data ${WORK_DIR}/corpus_train.bin --batch-size 2 --seq-len 32 --lr 2e-3 --warmup 2 --eval-every 0
          --eval-batches 1 --sample-tokens 0 --threads 1 --seed 5 --steps 30)
set(ENV{TESSERA_FAILURE_DIR} ${WORK_DIR}/failures)

function(fill)
  execute_process(COMMAND dd if=/dev/zero of=${disk}/filler bs=1M count=12 OUTPUT_QUIET ERROR_QUIET)
endfunction()

function(expect_clean dir expected_latest what)
  file(READ ${dir}/latest latest)
  string(STRIP "${latest}" latest)
  file(GLOB tmp_dirs ${dir}/.tmp-*)
  if(NOT latest STREQUAL expected_latest OR tmp_dirs)
    message(FATAL_ERROR "${what}: latest is '${latest}' (expected ${expected_latest}); temporary directories: '${tmp_dirs}'")
  endif()
endfunction()

run(ref ${MPI2} ${TRAIN} ${MODEL} --log ${WORK_DIR}/ref.jsonl --export ${WORK_DIR}/ref)
expect_rc(ref 0 "uninterrupted run")

# --- continue: the save of step 6 fails; the filler goes once the failure is logged; later saves succeed.
fill()
set(log ${WORK_DIR}/continue.jsonl)
# Runs the job; once its log records a failed save, removes the filler.
file(WRITE ${WORK_DIR}/free_on_failure.sh [=[
"$@" &
job=$!
until grep -q checkpoint_failed "$LOG" 2>/dev/null || ! kill -0 $job 2>/dev/null; do sleep 0.05; done
rm -f "$FILLER"
wait $job
]=])
set(ENV{LOG} ${log})
set(ENV{FILLER} ${disk}/filler)
run(cont sh ${WORK_DIR}/free_on_failure.sh ${MPI2} ${TRAIN} ${MODEL} --checkpoint-dir ${disk}/ckpt --checkpoint-every 3 --keep 1 --on-save-error continue
    --log ${log} --export ${WORK_DIR}/cont)
expect_rc(cont 0 "a full disk, then space again (--on-save-error continue)")
expect_match(cont "the checkpoint of step 6 was not saved: [^\n]*No space left on device \\([0-9.]+ MB free of [0-9.]+ MB[^\n]*rank-00000.bin"
             "the error names the file and the free space")
expect_match(cont "training goes on and the next save retries \\(--on-save-error continue\\); the latest committed checkpoint is still [^\n]*step-00000003"
             "what happens next")
# (Matched, not parsed: the error text holds semicolons, which CMake lists split.)
file(STRINGS ${log} failed REGEX "\"kind\":\"checkpoint_failed\"")
string(REGEX MATCH "\"step\":([0-9]+)" _ "${failed}")
set(failed_step "${CMAKE_MATCH_1}")
string(REGEX MATCH "\"action\":\"([a-z]+)\"" _ "${failed}")
set(action "${CMAKE_MATCH_1}")
set(first_failed "${failed}")
if(NOT failed_step EQUAL 6 OR NOT action STREQUAL "continue")
  message(FATAL_ERROR "the first failed save should be step 6's, continued: ${first_failed}")
endif()
last_record_field(${log} checkpoint step last_saved)
if(NOT last_saved EQUAL 30)
  message(FATAL_ERROR "the run's last checkpoint is of step ${last_saved}, expected 30 once space was back")
endif()
expect_clean(${disk}/ckpt step-00000030 "after the run")
expect_same_model(${WORK_DIR}/cont ${WORK_DIR}/ref "a run with a failed save vs uninterrupted")
file(REMOVE_RECURSE ${disk}/ckpt)

# --- stop: the run ends with code 2 at the failed save; step 3's checkpoint stays the latest.
fill()
run(stop ${MPI2} ${TRAIN} ${MODEL} --checkpoint-dir ${disk}/ckpt --checkpoint-every 3 --keep 1 --on-save-error stop
    --log ${WORK_DIR}/stop.jsonl)
expect_rc(stop 2 "a full disk with --on-save-error stop")
expect_match(stop "No space left on device" "the reason")
expect_match(stop "stopping \\(--on-save-error stop" "the stop")
expect_clean(${disk}/ckpt step-00000003 "after the stop")
read_train_losses(${WORK_DIR}/stop.jsonl losses)
list(LENGTH losses n)
if(n GREATER 12)
  message(FATAL_ERROR "the run went on for ${n} steps after its save of step 6 failed")
endif()
