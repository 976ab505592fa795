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

# The machine's CPU time so far (/proc/stat, in clock ticks): all of it and the part the hypervisor
# gave to other guests (steal). A VM whose host is busy slows the layouts whose ranks must run at once.
function(cpu_ticks total_var steal_var)
  set(total 0)
  set(steal 0)
  if(EXISTS /proc/stat)
    file(STRINGS /proc/stat line REGEX "^cpu ")
    string(REGEX MATCHALL "[0-9]+" fields "${line}")
    foreach(f IN LISTS fields)
      math(EXPR total "${total} + ${f}")
    endforeach()
    list(LENGTH fields n)
    if(n GREATER 7)
      list(GET fields 7 steal)
    endif()
  endif()
  set(${total_var} ${total} PARENT_SCOPE)
  set(${steal_var} ${steal} PARENT_SCOPE)
endfunction()

function(calibrate_and_compare attempt)
  cpu_ticks(total0 steal0)
  set(dir ${WORK_DIR}/attempt${attempt})
  file(MAKE_DIRECTORY ${dir})
  # Each rank count's calibration right before its layouts are timed: this VM's speed drifts by a
  # quarter within a minute (in a fresh-clone CI run the same 1-rank calibration predicted 57.5 ms in
  # one attempt and 44.1 ms in the next, and the step measured 56.7 and 42.5 ms), so the two are
  # taken as close together as they can be. That is not enough for a strict bound here: three
  # 2-rank calibrations in a row on a quiet machine differed by up to 2x for one kernel and by 16%
  # in their sum (.ci/run keeps the test lenient).
  set(cal_files "")
  set(bench --steps 9 --warmup 2 --device cpu ${shape})  # calibrated on the CPU: timed on the CPU
  set(layouts_1 "tp=1")
  set(layouts_2 "tp=2 pp=2,mb=4 dp=2")
  set(layouts_4 "tp=2,pp=2,mb=4 tp=2,dp=2")
  set(measured "")
  foreach(n 1 2 4)
    run(cal${n} ${mpi} -np ${n} ${CALIBRATE} ${shape} --out ${dir}/cal${n}.json)
    expect_rc(cal${n} 0 "tessera-calibrate at ${n} ranks")
    expect_match(cal${n} "calibration: ${n} ranks" "the calibration summary")
    list(APPEND cal_files ${dir}/cal${n}.json)
    run(b${n} ${mpi} -np ${n} ${BENCH} ${bench} --layouts "${layouts_${n}}" --json ${dir}/m${n}.jsonl)
    expect_rc(b${n} 0 "benchmark, ${n} ranks")
    list(APPEND measured ${dir}/m${n}.jsonl)
  endforeach()

  string(REPLACE ";" "," cals "${cal_files}")
  string(REPLACE ";" "," measured "${measured}")
  run(plan ${PLAN} --calibration ${cals} --measured ${measured} --tolerance 0.2)
  cpu_ticks(total1 steal1)
  math(EXPR ticks "${total1} - ${total0}")
  math(EXPR stolen_permille "1000 * (${steal1} - ${steal0}) / (${ticks} + 1)")
  message(STATUS "attempt ${attempt}: measured vs predicted (tessera-plan --calibration ... --measured ...):\n${plan_out}${plan_err}"
                 "host steal during the attempt: ${stolen_permille} per mille of the cores' time (/proc/stat)")
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
