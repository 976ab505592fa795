# Preemption: SIGTERM to tessera-launch (as Slurm sends it) reaches the ranks as SIGUSR1 through
# mpirun; every rank finishes its step, a checkpoint of that step is saved and committed, the job
# exits with code 5 and the launcher passes 5 on for a requeue (running --requeue-command). The
# requeued job resumes at exactly that step and ends bitwise equal to an uninterrupted run. Ctrl-C
# twice ends a run at once without leaving a half-written checkpoint; SIGTERM without checkpoints
# says what was lost.
include(${CMAKE_CURRENT_LIST_DIR}/../support/fault_test_helpers.cmake)
fault_test_setup()
set(INJECT sh ${SOURCE_DIR}/tests/support/inject.sh)
set(MODEL --model tiny --data ${WORK_DIR}/corpus_train.bin --batch-size 2 --seq-len 32 --lr 2e-3 --warmup 2 --eval-every 0
          --eval-batches 1 --sample-tokens 0 --threads 1 --seed 5 --steps 40)

run(ref ${MPI2} ${TRAIN} ${MODEL} --log ${WORK_DIR}/ref.jsonl --export ${WORK_DIR}/ref)
expect_rc(ref 0 "uninterrupted run")

# --- SIGTERM to the launcher at step 10: saved, committed, exit 5, requeue.
set(ckpt ${WORK_DIR}/ckpt)
set(fail ${ckpt}/failures)
set(JOB ${LAUNCH} --max-restarts 2 --restart-delay 0 --checkpoint-dir ${ckpt} --failure-dir ${fail}
        --requeue-command "touch ${WORK_DIR}/requeued" -- ${MPI2} ${TRAIN} ${MODEL} --checkpoint-dir ${ckpt}
        --checkpoint-every 100 --log ${WORK_DIR}/pre.jsonl --export ${WORK_DIR}/pre)
# The signal comes as the log records step 10 (INJECT_LOG), not at the next heartbeat: a heartbeat
# comes once a second, and with the fast CPU kernels the 30 steps left take less than that.
file(REMOVE ${WORK_DIR}/pre.jsonl)
set(ENV{INJECT_LOG} ${WORK_DIR}/pre.jsonl)
run(term ${INJECT} ${fail} 0 0 10 signal:TERM -- ${JOB})
unset(ENV{INJECT_LOG})
expect_rc(term 5 "a preempted job")
string(REGEX MATCH "stopped by SIGUSR1 after step ([0-9]+) of 40: saved and committed [^ ]*step-000000([0-9]+), nothing lost"
       _ "${term_out}")
set(stopped "${CMAKE_MATCH_1}")
if(stopped STREQUAL "" OR NOT stopped EQUAL CMAKE_MATCH_2 OR stopped LESS 10)
  message(FATAL_ERROR "the job should save the step it stopped at:\n${term_out}\n${term_err}")
endif()
expect_match(term "preempted and saved its state \\(exit code 5\\): requeue it" "the launcher's requeue line")
if(NOT EXISTS ${WORK_DIR}/requeued)
  message(FATAL_ERROR "--requeue-command did not run")
endif()
file(READ ${ckpt}/latest latest)
string(STRIP "${latest}" latest)
file(GLOB tmp_dirs ${ckpt}/.tmp-*)
if(NOT latest STREQUAL "step-000000${stopped}" OR tmp_dirs)
  message(FATAL_ERROR "latest is '${latest}' (expected step ${stopped}), temporary directories: ${tmp_dirs}")
endif()
last_record_field(${WORK_DIR}/pre.jsonl preempted step logged_step)
if(NOT logged_step EQUAL stopped)
  message(FATAL_ERROR "the preempted record says step ${logged_step}, the job stopped at ${stopped}")
endif()
message(STATUS "preempted after step ${stopped}")

# --- The requeued job continues from there and ends as if never stopped.
run(requeued ${JOB})
expect_rc(requeued 0 "the requeued job")
expect_match(requeued "resumed from [^\n]*step-000000${stopped} at step ${stopped}" "the resume at the stopped step")
expect_same_model(${WORK_DIR}/pre ${WORK_DIR}/ref "preempted and requeued vs uninterrupted")
effective_digests(${WORK_DIR}/pre.jsonl got)
effective_digests(${WORK_DIR}/ref.jsonl want)
if(NOT got STREQUAL want)
  message(FATAL_ERROR "the samples trained differ from the uninterrupted run's:\n${got}\nvs\n${want}")
endif()

# --- Ctrl-C twice on one process: it exits at once, leaving no temporary checkpoint directory.
set(ckpt2 ${WORK_DIR}/ckpt2)
set(ENV{TESSERA_FAILURE_DIR} ${WORK_DIR}/fail2)
# The first signal comes as the log records step 10, so at the start of step 11 (INJECT_LOG: not a
# heartbeat, which comes once a second, at any point of a step), and the second 0.2 s later: two
# signals close together can merge into one while the process waits for a loaded CPU. The step is
# long (B = 20 x T = 256: about a second even with the fast CPU kernels), so the first is still
# finishing its step when the second comes, however fast or loaded the machine.
file(REMOVE ${WORK_DIR}/twice.jsonl)
set(ENV{INJECT_LOG} ${WORK_DIR}/twice.jsonl)
run(twice ${INJECT} ${WORK_DIR}/fail2 0 0 10 signal:INT:INT:0.2 -- ${TRAIN} ${MODEL} --batch-size 20 --seq-len 256
    --checkpoint-dir ${ckpt2} --checkpoint-every 1 --log ${WORK_DIR}/twice.jsonl)
unset(ENV{INJECT_LOG})
expect_rc(twice 130 "two SIGINTs")
expect_match(twice "SIGINT: finishing the step in progress" "the first SIGINT")
expect_match(twice "second signal \\(SIGINT\\): exiting now without saving" "the second SIGINT")
file(GLOB tmp_dirs ${ckpt2}/.tmp-*)
if(tmp_dirs)
  message(FATAL_ERROR "a half-written checkpoint was left behind: ${tmp_dirs}")
endif()

# --- SIGTERM without checkpoints: the run says what is lost and exits 128 + 15.
set(ENV{TESSERA_FAILURE_DIR} ${WORK_DIR}/fail3)
file(REMOVE ${WORK_DIR}/lost.jsonl)
set(ENV{INJECT_LOG} ${WORK_DIR}/lost.jsonl)
run(lost ${INJECT} ${WORK_DIR}/fail3 0 0 10 signal:TERM -- ${TRAIN} ${MODEL} --log ${WORK_DIR}/lost.jsonl)
unset(ENV{INJECT_LOG})
unset(ENV{TESSERA_FAILURE_DIR})
expect_rc(lost 143 "SIGTERM without --checkpoint-dir")
expect_match(lost "stopped by SIGTERM after step [0-9]+ of 40: without --checkpoint-dir the [0-9]+ steps trained are lost"
             "what was lost")
