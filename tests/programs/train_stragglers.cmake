# Stragglers: one of four data-parallel ranks, slowed from outside (stopped for 190 ms of every
# 200 ms from step 10 to step 40), is named with its host and slowdown within 40 steps of the
# slowing, no other rank is named, and its recovery is reported once it runs freely again; a run
# where no rank is slowed names none. Compute times exclude waiting in collectives and are compared
# with the median of the other ranks, window by window with hysteresis. A rank that shares its core
# with another test's processes is slower, and naming it is right (a noisy neighbour is a straggler),
# so "none slowed" holds only with the cores to itself: the test runs alone (tests/CMakeLists.txt).
include(${CMAKE_CURRENT_LIST_DIR}/../support/fault_test_helpers.cmake)
fault_test_setup()
set(INJECT sh ${SOURCE_DIR}/tests/support/inject.sh)
set(MPI4 ${MPIEXEC} --oversubscribe --bind-to none -np 4)
set(RUN --model tiny --data ${WORK_DIR}/corpus_train.bin --batch-size 2 --seq-len 32 --eval-every 0 --eval-batches 1
        --sample-tokens 0 --threads 1 --seed 5 --straggler-window 8)

# --- Nobody slowed.
run(even ${MPI4} ${TRAIN} ${RUN} --steps 48 --log ${WORK_DIR}/even.jsonl)
expect_rc(even 0 "four ranks, none slowed")
log_records(${WORK_DIR}/even.jsonl straggler named)
if(named)
  message(FATAL_ERROR "a rank was named a straggler although none was slowed:\n${named}")
endif()
expect_match(even "stragglers: compute times compared every 8 steps" "the straggler monitor is on")

# --- Rank 2 slowed from step 10 to step 40.
set(fail ${WORK_DIR}/slow_failures)
file(MAKE_DIRECTORY ${fail})
set(ENV{TESSERA_FAILURE_DIR} ${fail})
# The slowing starts as the log records step 10 (INJECT_LOG), not at the next heartbeat: heartbeats
# come once a second, and with the fast CPU kernels the whole run takes about two seconds, so a
# heartbeat-timed start came after step 40, when it was to end (a fresh-clone CI run named nobody).
set(ENV{INJECT_LOG} ${WORK_DIR}/slow.jsonl)
run(slow ${INJECT} ${fail} 0 2 10 slow:190:200:40 -- ${MPI4} ${TRAIN} ${RUN} --steps 72 --log ${WORK_DIR}/slow.jsonl)
unset(ENV{INJECT_LOG})
unset(ENV{TESSERA_FAILURE_DIR})
expect_rc(slow 0 "four ranks, rank 2 slowed")
log_records(${WORK_DIR}/slow.jsonl straggler named)
list(LENGTH named n)
if(NOT n EQUAL 1)
  message(FATAL_ERROR "expected rank 2 named once, got ${n} straggler records:\n${named}\n${slow_out}")
endif()
string(JSON rank GET "${named}" rank)
string(JSON host GET "${named}" host)
string(JSON step GET "${named}" step)
string(JSON slowdown GET "${named}" slowdown)
if(NOT rank EQUAL 2 OR host STREQUAL "" OR step GREATER 50)
  message(FATAL_ERROR "expected rank 2 named by step 50 (slowed from step 10): ${named}")
endif()
expect_match(slow "straggler: rank 2 on [^ ]+ computes [0-9.]+x slower than its peers" "the terminal line")
log_records(${WORK_DIR}/slow.jsonl straggler_recovered recovered)
list(LENGTH recovered n)
if(NOT n EQUAL 1)
  message(FATAL_ERROR "expected rank 2's recovery reported once, got:\n${recovered}\n${slow_out}")
endif()
string(JSON recovered_rank GET "${recovered}" rank)
string(JSON recovered_step GET "${recovered}" step)
if(NOT recovered_rank EQUAL 2 OR recovered_step LESS 40)
  message(FATAL_ERROR "the recovery should be rank 2's, after step 40: ${recovered}")
endif()
message(STATUS "rank 2 named at step ${step} (${slowdown}x), recovered at step ${recovered_step}")
