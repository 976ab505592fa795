# The calibrated planner against the real trainer: tessera-calibrate at 1, 2 and 4 ranks, then
# tessera-bench-training (median of timed steps) for six layouts of 1-4 ranks, then tessera-plan
# --calibration ... --measured ... --tolerance 0.2 prints measured vs predicted step times and fails
# when one is off by more than 20%. The test runs alone (RUN_SERIAL); on a shared machine one
# disturbed measurement can still miss, so a miss is measured once more before the test fails.
# TESSERA_LENIENT_CALIBRATION=1 reports a second miss without failing (for a machine known to be busy).
include(${CMAKE_CURRENT_LIST_DIR}/../support/program_helpers.cmake)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(CALIBRATE ${BINARY_DIR}/tessera-calibrate)
set(BENCH ${BINARY_DIR}/tessera-bench-training)
set(PLAN ${BINARY_DIR}/tessera-plan)
# Ranks bound to cores round-robin: left to the OS, 4 ranks on 2 cores settle in one of two placements
# whose step times differ by 25% from run to run; bound, they repeat to 1%.
set(mpi ${MPIEXEC} --oversubscribe --bind-to core:overload-allowed --map-by core)
# One thread per rank everywhere: OpenMP barriers on a shared, loaded 2-core machine are the noisiest part.
set(shape --model tiny --batch-size 8 --seq-len 64 --threads 1)

function(calibrate_and_compare attempt)
  set(dir ${WORK_DIR}/attempt${attempt})
  file(MAKE_DIRECTORY ${dir})
  set(cal_files "")
  foreach(n 1 2 4)
    run(cal${n} ${mpi} -np ${n} ${CALIBRATE} ${shape} --out ${dir}/cal${n}.json)
    expect_rc(cal${n} 0 "tessera-calibrate at ${n} ranks")
    expect_match(cal${n} "calibration: ${n} ranks" "the calibration summary")
    list(APPEND cal_files ${dir}/cal${n}.json)
  endforeach()

  set(bench --steps 9 --warmup 2 --device cpu ${shape})  # calibrated on the CPU: timed on the CPU
  run(b1 ${mpi} -np 1 ${BENCH} ${bench} --layouts "tp=1" --json ${dir}/m1.jsonl)
  expect_rc(b1 0 "benchmark, 1 rank")
  run(b2 ${mpi} -np 2 ${BENCH} ${bench} --layouts "tp=2 pp=2,mb=4 dp=2" --json ${dir}/m2.jsonl)
  expect_rc(b2 0 "benchmark, 2 ranks")
  run(b4 ${mpi} -np 4 ${BENCH} ${bench} --layouts "tp=2,pp=2,mb=4 tp=2,dp=2" --json ${dir}/m4.jsonl)
  expect_rc(b4 0 "benchmark, 4 ranks")

  string(REPLACE ";" "," cals "${cal_files}")
  run(plan ${PLAN} --calibration ${cals} --measured ${dir}/m1.jsonl,${dir}/m2.jsonl,${dir}/m4.jsonl --tolerance 0.2)
  message(STATUS "attempt ${attempt}: measured vs predicted (tessera-plan --calibration ... --measured ...):\n${plan_out}${plan_err}")
  string(REGEX MATCHALL "\n  [0-9]" predicted_rows "${plan_out}")
  list(LENGTH predicted_rows rows)
  if(NOT rows EQUAL 6)
    message(FATAL_ERROR "expected 6 predicted layouts, got ${rows}")
  endif()
  if(plan_out MATCHES "PASS: every prediction")
    set(verdict pass PARENT_SCOPE)
  elseif(plan_rc EQUAL 1 AND plan_out MATCHES "FAIL: every prediction")
    set(verdict miss PARENT_SCOPE)
  else()
    message(FATAL_ERROR "tessera-plan failed (rc ${plan_rc}): ${plan_err}")
  endif()
endfunction()

# After a miss: the processes that used the cores over the next second, when none of this test's
# own are left. A late-suite miss whose 2-rank layouts were all slow pointed at something else
# running; this names it.
function(report_other_processes)
  find_program(TOP top)
  if(NOT TOP)
    return()
  endif()
  execute_process(COMMAND ${TOP} -b -n 2 -d 1 -o %CPU -w 160 -c OUTPUT_VARIABLE top_out ERROR_QUIET)
  string(REGEX REPLACE "^.*\ntop - " "top - " top_out "${top_out}")  # the second sample only
  string(REGEX MATCHALL "\n *[0-9]+ [^\n]*" rows "${top_out}")
  set(busy "")
  foreach(row IN LISTS rows)
    string(REGEX MATCH "^\n *[0-9]+ +[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +([0-9.]+)" m "${row}")
    if(m AND CMAKE_MATCH_1 GREATER_EQUAL 5)
      string(STRIP "${row}" row)
      string(APPEND busy "\n  ${row}")
    endif()
  endforeach()
  string(REGEX MATCH "load average: [^\n]*" load "${top_out}")
  if(busy)
    message(STATUS "processes using the cores after the measurement (${load}):${busy}")
  else()
    message(STATUS "no other process used the cores after the measurement (${load})")
  endif()
endfunction()

calibrate_and_compare(1)
if(verdict STREQUAL "miss")
  report_other_processes()
  message(STATUS "a prediction is off by more than 20%: measuring once more")
  calibrate_and_compare(2)
endif()
if(verdict STREQUAL "pass")
  message(STATUS "every prediction within 20% of the measured median step time")
  return()
endif()
report_other_processes()
if("$ENV{TESSERA_LENIENT_CALIBRATION}" STREQUAL "1")
  message(STATUS "a prediction is off by more than 20% twice (see the tables); not failed (TESSERA_LENIENT_CALIBRATION=1)")
else()
  message(FATAL_ERROR "a prediction is off by more than 20% in two measurements (see the tables)")
endif()
