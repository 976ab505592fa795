# tessera-launch: restarts a failing job up to --max-restarts with one log line per restart, never
# restarts exit codes 1 and 2, passes the final exit code on, names the failed rank and host from
# failure reports or from the launcher's messages, and leaves a failed host out of the next launch.
# The "jobs" are small shell scripts standing in for mpirun/srun and the trainer.
include(${CMAKE_CURRENT_LIST_DIR}/../support/program_helpers.cmake)
set(LAUNCH ${BINARY_DIR}/tessera-launch)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR}/bin)

# job.sh COUNT_FILE FAILURES CODE [HOST]: fails the first FAILURES times (with exit CODE, or SIGKILL
# when CODE is "kill"), then exits 0. With HOST and TESSERA_FAILURE_DIR it leaves a failure report
# of rank 1 on HOST, as the watchdog would.
file(WRITE ${WORK_DIR}/job.sh [=[
n=0
[ -f "$1" ] && n=$(cat "$1")
n=$((n + 1))
echo $n > "$1"
echo "attempt $n restart_count=${TESSERA_RESTART_COUNT}" >> "$1.log"
if [ "$n" -le "$2" ]; then
  if [ -n "$TESSERA_FAILURE_DIR" ] && [ -n "$4" ]; then
    printf '{"rank": 1, "host": "%s", "pid": %d, "step": 12, "op": "all_reduce", "waited_s": 30.5, "timeout_s": 30, "started_unix": 100.0}\n' "$4" $$ > "$TESSERA_FAILURE_DIR/failure-rank-1.json"
  fi
  echo "job: failing ($3)" >&2
  [ "$3" = "kill" ] && kill -9 $$
  exit "$3"
fi
echo "job: done"
exit 0
]=])
set(JOB sh ${WORK_DIR}/job.sh)

function(count_matches text regex out_var)
  string(REGEX MATCHALL "${regex}" found "${text}")
  list(LENGTH found n)
  set(${out_var} ${n} PARENT_SCOPE)
endfunction()

function(expect_file_content path expected what)
  file(READ ${path} content)
  string(STRIP "${content}" content)
  if(NOT content STREQUAL "${expected}")
    message(FATAL_ERROR "${what}: ${path} holds '${content}', expected '${expected}'")
  endif()
endfunction()

# --- Fails twice with exit 3, then succeeds: two restarts, exit 0.
run(r ${LAUNCH} --max-restarts 3 --restart-delay 0 --log ${WORK_DIR}/launch.jsonl -- ${JOB} ${WORK_DIR}/c1 2 3)
expect_rc(r 0 "job that recovers after two failures")
expect_file_content(${WORK_DIR}/c1 3 "three attempts")
count_matches("${r_err}" "restart [0-9]/3: exit code 3 \\(hang or peer failure detected\\)" n)
if(NOT n EQUAL 2)
  message(FATAL_ERROR "expected 2 restart lines, got ${n}:\n${r_err}")
endif()
expect_match(r "job finished after 2 restarts" "the final line")
file(READ ${WORK_DIR}/c1.log attempts)
if(NOT attempts MATCHES "restart_count=0\nattempt 2 restart_count=1\nattempt 3 restart_count=2")
  message(FATAL_ERROR "TESSERA_RESTART_COUNT was not 0, 1, 2:\n${attempts}")
endif()
file(STRINGS ${WORK_DIR}/launch.jsonl records)
list(LENGTH records n)
if(NOT n EQUAL 3)
  message(FATAL_ERROR "expected 3 JSON lines in the launch log, got ${n}")
endif()
list(GET records 0 first)
string(JSON first_kind GET "${first}" kind)
string(JSON first_code GET "${first}" exit_code)
string(JSON first_number GET "${first}" restart)
if(NOT first_kind STREQUAL "restart" OR NOT first_code EQUAL 3 OR NOT first_number EQUAL 1)
  message(FATAL_ERROR "unexpected first launch log record: ${first}")
endif()
list(GET records 2 last)
string(JSON last_result GET "${last}" result)
if(NOT last_result STREQUAL "finished")
  message(FATAL_ERROR "unexpected last launch log record: ${last}")
endif()

# --- Keeps failing: stops after --max-restarts and passes the exit code on.
run(r ${LAUNCH} --max-restarts 2 --restart-delay 0 -- ${JOB} ${WORK_DIR}/c2 5 3)
expect_rc(r 3 "job that keeps failing")
expect_file_content(${WORK_DIR}/c2 3 "one launch and two restarts")
count_matches("${r_err}" "restart [0-9]/2:" n)
if(NOT n EQUAL 2)
  message(FATAL_ERROR "expected 2 restart lines, got ${n}:\n${r_err}")
endif()
expect_match(r "giving up: exit code 3 .*after 2 restarts" "the give-up line")

# --- Exit codes 1 and 2 would fail again: no restart.
foreach(code 1 2)
  run(r ${LAUNCH} --max-restarts 3 --restart-delay 0 -- ${JOB} ${WORK_DIR}/c3_${code} 5 ${code})
  expect_rc(r ${code} "exit code ${code}")
  expect_file_content(${WORK_DIR}/c3_${code} 1 "exit code ${code} is not restarted")
  expect_match(r "not restarting: exit code ${code} \\(bad (arguments or config|data or checkpoint)\\) would fail again" "why not")
endforeach()
# ... and the list is configurable.
run(r ${LAUNCH} --max-restarts 3 --restart-delay 0 --no-restart-codes 3 -- ${JOB} ${WORK_DIR}/c4 5 3)
expect_rc(r 3 "--no-restart-codes 3")
expect_file_content(${WORK_DIR}/c4 1 "exit code 3 listed as final")

# --- A rank killed by a signal is restarted.
run(r ${LAUNCH} --max-restarts 1 --restart-delay 0 -- ${JOB} ${WORK_DIR}/c5 1 kill)
expect_rc(r 0 "job killed once")
expect_match(r "restart 1/1: exit code 137 \\(killed by signal 9" "the signal is named")

# --- The failure report names the rank and host; reports are archived per attempt.
run(r ${LAUNCH} --max-restarts 2 --restart-delay 0 --failure-dir ${WORK_DIR}/failures -- ${JOB} ${WORK_DIR}/c6 1 3 nodeB)
expect_rc(r 0 "job with a failure report")
expect_match(r "restart 1/2: exit code 3 .*rank 1 on nodeB \\(failure report: all_reduce at step 12 for 30.5 s\\)"
             "the failed rank and host from the report")
if(NOT EXISTS ${WORK_DIR}/failures/attempt-0/failure-rank-1.json OR EXISTS ${WORK_DIR}/failures/failure-rank-1.json)
  message(FATAL_ERROR "the report of attempt 0 was not archived")
endif()

# --- mpirun: the host of a rank that died is left out of the rewritten --hostfile.
file(WRITE ${WORK_DIR}/hosts "nodeA slots=2\nnodeB slots=2 # the bad one\nnodeC:2\n")
file(WRITE ${WORK_DIR}/bin/mpirun [=[#!/bin/sh
count=@WORK@/c7
n=0
[ -f "$count" ] && n=$(cat "$count")
n=$((n + 1))
echo $n > "$count"
prev=""
for a in "$@"; do
  [ "$prev" = "--hostfile" ] && cp "$a" "$count.hosts.$n"
  prev="$a"
done
if [ "$n" -eq 1 ]; then
  echo "mpirun noticed that process rank 1 with PID 4242 on node nodeB exited on signal 9 (Killed)." >&2
  exit 137
fi
exit 0
]=])
file(READ ${WORK_DIR}/bin/mpirun text)
string(REPLACE "@WORK@" "${WORK_DIR}" text "${text}")
file(WRITE ${WORK_DIR}/bin/mpirun "${text}")
file(CHMOD ${WORK_DIR}/bin/mpirun PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE)
run(r ${LAUNCH} --max-restarts 2 --restart-delay 0 --exclude-failed-hosts --failure-dir ${WORK_DIR}/failures7 --
    ${WORK_DIR}/bin/mpirun --hostfile ${WORK_DIR}/hosts -np 4 tessera-train)
expect_rc(r 0 "mpirun job with a dead rank")
expect_match(r "rank 1 on nodeB \\(launcher output\\)" "the dead rank from mpirun's message")
file(READ ${WORK_DIR}/c7.hosts.1 first_hosts)
file(READ ${WORK_DIR}/c7.hosts.2 second_hosts)
if(NOT first_hosts MATCHES "nodeB" OR second_hosts MATCHES "nodeB" OR NOT second_hosts MATCHES "nodeA" OR
   NOT second_hosts MATCHES "nodeC")
  message(FATAL_ERROR "nodeB was not excluded:\nfirst:\n${first_hosts}\nsecond:\n${second_hosts}")
endif()

# --- srun: the host goes into --exclude.
file(WRITE ${WORK_DIR}/bin/srun [=[#!/bin/sh
count=@WORK@/c8
n=0
[ -f "$count" ] && n=$(cat "$count")
n=$((n + 1))
echo $n > "$count"
echo "$@" > "$count.args.$n"
if [ "$n" -eq 1 ]; then
  echo "srun: error: nodeC: task 2: Killed" >&2
  exit 137
fi
exit 0
]=])
file(READ ${WORK_DIR}/bin/srun text)
string(REPLACE "@WORK@" "${WORK_DIR}" text "${text}")
file(WRITE ${WORK_DIR}/bin/srun "${text}")
file(CHMOD ${WORK_DIR}/bin/srun PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE)
run(r ${LAUNCH} --max-restarts 1 --restart-delay 0 --exclude-failed-hosts -- ${WORK_DIR}/bin/srun tessera-train --steps 10)
expect_rc(r 0 "srun job with a dead task")
expect_match(r "rank 2 on nodeC" "the dead task from srun's message")
expect_file_content(${WORK_DIR}/c8.args.1 "tessera-train --steps 10" "the arguments pass through")
expect_file_content(${WORK_DIR}/c8.args.2 "--exclude=nodeC tessera-train --steps 10" "the second launch excludes nodeC")

# --- Usage errors are config errors.
run(r ${LAUNCH} --max-restarts 1)
expect_rc(r 1 "no command")
expect_match(r "no command to run" "no command message")
run(r ${LAUNCH} -- ${WORK_DIR}/no-such-program)
expect_rc(r 1 "a command that does not exist")
expect_match(r "cannot run" "exec failure message")
run(r ${LAUNCH} --max-restarts -1 -- true)
expect_rc(r 1 "negative --max-restarts")
run(r ${LAUNCH} --no-restart-codes 1,x -- true)
expect_rc(r 1 "malformed --no-restart-codes")

# --- A command that hangs without heartbeats (no --timeout of its own): --attempt-timeout ends it.
run(r ${LAUNCH} --max-restarts 1 --restart-delay 0 --attempt-timeout 2 --log ${WORK_DIR}/hang.jsonl -- sleep 600)
expect_rc(r 3 "a hanging command under --attempt-timeout")
expect_match(r "ending the attempt as hung: the attempt has run [0-9.]+ s \\(--attempt-timeout 2 s\\)" "which limit applied")
expect_match(r "restart 1/1: [^\n]*hang detected by tessera-launch \\(attempt limit\\)" "the restart says why")
expect_match(r "giving up: [^\n]*hang detected by tessera-launch \\(attempt limit\\)" "then it gives up")
file(STRINGS ${WORK_DIR}/hang.jsonl records)
list(GET records 0 first)
string(JSON limit GET "${first}" limit)
if(NOT limit STREQUAL "attempt")
  message(FATAL_ERROR "the restart record should name the attempt limit: ${first}")
endif()

# --- Exit code 5 (preempted, state saved) is passed on for a requeue, not restarted.
run(r ${LAUNCH} --max-restarts 3 --restart-delay 0 --requeue-command "touch ${WORK_DIR}/requeued" -- ${JOB} ${WORK_DIR}/c9 5 5)
expect_rc(r 5 "a preempted job")
expect_file_content(${WORK_DIR}/c9 1 "exit code 5 is not restarted")
expect_match(r "preempted and saved its state \\(exit code 5\\): requeue it" "the requeue line")
if(NOT EXISTS ${WORK_DIR}/requeued)
  message(FATAL_ERROR "--requeue-command did not run")
endif()

# --- The job sees the hosts left out in TESSERA_EXCLUDED_HOSTS.
file(WRITE ${WORK_DIR}/excluded.sh [=[
n=0
[ -f "$1" ] && n=$(cat "$1")
echo $((n + 1)) > "$1"
echo "excluded='${TESSERA_EXCLUDED_HOSTS:-}'" >> "$1.log"
if [ "$n" -eq 0 ]; then
  printf '{"rank": 0, "host": "nodeZ", "pid": 1, "step": 3, "op": "train step", "waited_s": 9, "timeout_s": 8, "started_unix": 1.0}\n' > "$TESSERA_FAILURE_DIR/failure-rank-0.json"
  exit 3
fi
exit 0
]=])
run(r ${LAUNCH} --max-restarts 1 --restart-delay 0 --exclude-failed-hosts --failure-dir ${WORK_DIR}/failures10 --
    sh ${WORK_DIR}/excluded.sh ${WORK_DIR}/c10)
expect_rc(r 0 "a job told which hosts are excluded")
file(READ ${WORK_DIR}/c10.log seen)
if(NOT seen MATCHES "excluded=''\nexcluded='nodeZ'")
  message(FATAL_ERROR "TESSERA_EXCLUDED_HOSTS was not '' then 'nodeZ':\n${seen}")
endif()
