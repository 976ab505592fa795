# A rank frozen from outside (SIGSTOP: it neither dies nor answers) is found without any flag: its
# peer, waiting for it in a collective, sees its heartbeat stop or the collective's learned deadline
# pass, names it, and exits with code 3 well within 30 s; tessera-launch restarts the job, which ends
# bitwise where an uninterrupted run ends. The launcher's own view: with the ranks' watchdogs off, a
# silent rank (--heartbeat-timeout) and a hung main thread that still beats (--stall-timeout) end
# the attempt too, each saying which limit applied.
include(${CMAKE_CURRENT_LIST_DIR}/../support/fault_test_helpers.cmake)
fault_test_setup()
set(INJECT sh ${SOURCE_DIR}/tests/support/inject.sh)
# The tiny model: tens of ms a step, so the freeze lands mid-run.
set(MODEL --model tiny --data ${WORK_DIR}/corpus_train.bin --batch-size 2 --seq-len 32 --lr 2e-3 --warmup 2 --eval-every 0
          --eval-batches 1 --sample-tokens 0 --threads 1 --seed 5)
set(STEPS --steps 40)

run(ref ${MPI2} ${TRAIN} ${MODEL} ${STEPS} --log ${WORK_DIR}/ref.jsonl --export ${WORK_DIR}/ref)
expect_rc(ref 0 "uninterrupted run")

# --- Rank 1 frozen at step 15, no --timeout: deadlines learned from the first steps.
set(ckpt ${WORK_DIR}/freeze_ckpt)
set(fail ${ckpt}/failures)
set(ENV{INJECT_LOG} ${WORK_DIR}/freeze.jsonl)
run(freeze ${INJECT} ${fail} 0 1 15 freeze -- ${LAUNCH} --max-restarts 2 --restart-delay 0 --checkpoint-dir ${ckpt}
    --failure-dir ${fail} --log ${ckpt}/launch.jsonl -- ${MPI2} ${TRAIN} ${MODEL} ${STEPS} --checkpoint-dir ${ckpt} --checkpoint-every 5
    --log ${WORK_DIR}/freeze.jsonl --export ${WORK_DIR}/freeze)
expect_rc(freeze 0 "a frozen rank under tessera-launch")
expect_match(freeze "failures: deadlines learned per section" "learned deadlines without a flag")
expect_match(freeze "watchdog: rank 0 on [^ ]+ has been in [^\n]* at step 1[5-9]" "rank 0's watchdog")
expect_match(freeze "restart 1/2: exit code 3 \\(hang or peer failure detected\\), rank 1 on " "the restart names the frozen rank")
file(READ ${fail}/injected.txt injected)
string(STRIP "${injected}" injected)
file(READ ${fail}/attempt-0/failure-rank-0.json report)
string(JSON detected GET "${report}" detected_unix)
string(JSON stale_rank ERROR_VARIABLE no_stale GET "${report}" stale_peers 0 rank)
string(JSON flight_length LENGTH "${report}" flight_recorder)
unix_to_ms(${detected} detected_ms)
unix_to_ms(${injected} injected_ms)
math(EXPR detection_ms "${detected_ms} - ${injected_ms}")
message(STATUS "frozen at ${injected}, detected ${detection_ms} ms later; the report names stale rank '${stale_rank}', "
               "its flight recorder holds ${flight_length} operations")
if(detection_ms GREATER 30000 OR detection_ms LESS 0)
  message(FATAL_ERROR "the frozen rank was detected after ${detection_ms} ms, expected within 30 s:\n${report}")
endif()
if(NOT stale_rank STREQUAL "1" OR flight_length LESS 10)
  message(FATAL_ERROR "the report should name rank 1's stopped heartbeat and hold the flight recorder:\n${report}")
endif()
expect_match(freeze "resumed from [^\n]*step-000000(05|10|15) at step (5|10|15)" "the resume")
# What a person reads: the frozen rank, where, the time lost and what to do.
run(diag ${DIAGNOSE} ${ckpt} --log ${WORK_DIR}/freeze.jsonl)
expect_rc(diag 0 "tessera-diagnose")
expect_match(diag "1 failure, finished" "the summary line")
expect_match(diag "failure 1 \\(attempt 0\\): rank 1 on [^ ]+ (stopped responding|was frozen|stopped at step)"
             "the verdict names the frozen rank")
expect_match(diag "time lost [0-9.]+ s: detection [0-9.]+ s, restart [0-9.]+ s, recomputation" "the time lost, split")
expect_match(diag "what to do: check " "the advice")
message(STATUS "tessera-diagnose says:\n${diag_out}")
expect_same_last_losses(${WORK_DIR}/freeze.jsonl ${WORK_DIR}/ref.jsonl 5 "frozen and restarted vs uninterrupted")
expect_same_model(${WORK_DIR}/freeze ${WORK_DIR}/ref "frozen and restarted vs uninterrupted")

# --- The launcher's view, the ranks' watchdogs off: rank 1 frozen at step 10, silent for 6 s.
set(ckpt ${WORK_DIR}/silent_ckpt)
set(fail ${ckpt}/failures)
set(ENV{INJECT_LOG} ${WORK_DIR}/silent.jsonl)
run(silent ${INJECT} ${fail} 0 1 10 freeze -- ${LAUNCH} --max-restarts 2 --restart-delay 0 --heartbeat-timeout 6
    --checkpoint-dir ${ckpt} --failure-dir ${fail} -- ${MPI2} ${TRAIN} ${MODEL} ${STEPS} --timeout 0
    --checkpoint-dir ${ckpt} --checkpoint-every 5 --log ${WORK_DIR}/silent.jsonl --export ${WORK_DIR}/silent)
unset(ENV{INJECT_LOG})
expect_rc(silent 0 "a frozen rank found by tessera-launch")
expect_match(silent "ending the attempt as hung: rank 1 on [^ ]+ has sent no heartbeat for [0-9.]+ s \\(--heartbeat-timeout 6 s"
             "the launcher's heartbeat limit")
expect_match(silent "restart 1/2: [^\n]*hang detected by tessera-launch \\(heartbeat limit\\)\\), rank 1 on " "the restart")
expect_same_model(${WORK_DIR}/silent ${WORK_DIR}/ref "found by the launcher and restarted vs uninterrupted")

# --- A main thread that hangs but keeps beating: no finished step for 6 s.
set(ckpt ${WORK_DIR}/stall_ckpt)
run(stall ${LAUNCH} --max-restarts 2 --restart-delay 0 --stall-timeout 6 --checkpoint-dir ${ckpt} -- ${MPI2} ${TRAIN}
    ${MODEL} ${STEPS} --timeout 0 --fault hang:rank=0:step=12 --checkpoint-dir ${ckpt} --checkpoint-every 5
    --log ${WORK_DIR}/stall.jsonl --export ${WORK_DIR}/stall)
expect_rc(stall 0 "a hung main thread found by tessera-launch")
expect_match(stall "ending the attempt as hung: no step has finished for [0-9.]+ s although every rank beats \\(--stall-timeout 6 s"
             "the launcher's stall limit")
expect_same_model(${WORK_DIR}/stall ${WORK_DIR}/ref "stalled and restarted vs uninterrupted")
