# Helpers for the program tests (included by the tests/programs/*.cmake scripts; not a test itself).
# Pinned to the CPU: these tests compare float32 runs against each other at float32 tolerances,
# which a GPU's bf16 would fail spuriously; the GPU's own checks are the cuda-labelled tests and
# scripts/gpu_check.sh.
set(TRAIN ${BINARY_DIR}/tessera-train --device cpu)
set(PREPARE ${BINARY_DIR}/tessera-prepare-data)
set(DIAGNOSE ${BINARY_DIR}/tessera-diagnose)

# ranks(N out_var): the command that starts N ranks: mpirun, or srun when the test runs under the
# Slurm fixture (-DLAUNCH_WITH=srun, tests/slurm).
function(ranks n out_var)
  if(LAUNCH_WITH STREQUAL "srun")
    # Ranks that outnumber the cores must yield while they wait (mpirun --oversubscribe says so itself).
    set(${out_var} srun --mpi=pmix --ntasks=${n} --overcommit --kill-on-bad-exit=1
                   --export=ALL,OMPI_MCA_mpi_yield_when_idle=1 PARENT_SCOPE)
  else()
    set(${out_var} ${MPIEXEC} --oversubscribe --bind-to none -np ${n} PARENT_SCOPE)
  endif()
endfunction()

# run(<result-prefix> args...): runs a command, storing <prefix>_rc, <prefix>_out, <prefix>_err.
function(run prefix)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(${prefix}_rc "${rc}" PARENT_SCOPE)
  set(${prefix}_out "${out}" PARENT_SCOPE)
  set(${prefix}_err "${err}" PARENT_SCOPE)
endfunction()

function(expect_rc prefix expected what)
  if(NOT "${${prefix}_rc}" STREQUAL "${expected}")
    message(FATAL_ERROR "${what}: exit code ${${prefix}_rc}, expected ${expected}\nstdout:\n${${prefix}_out}\nstderr:\n${${prefix}_err}")
  endif()
endfunction()

function(expect_match prefix regex what)
  if(NOT "${${prefix}_out}${${prefix}_err}" MATCHES "${regex}")
    message(FATAL_ERROR "${what}: output does not match '${regex}'\nstdout:\n${${prefix}_out}\nstderr:\n${${prefix}_err}")
  endif()
endfunction()

# The first `bytes` bytes of the bundled corpus, tokenized into WORK_DIR/<name>_{train,val}.bin.
function(prepare_corpus name bytes)
  file(READ ${SOURCE_DIR}/data/tinyshakespeare.txt text LIMIT ${bytes})
  file(WRITE ${WORK_DIR}/${name}.txt "${text}")
  run(prep ${PREPARE} --out ${WORK_DIR}/${name} ${WORK_DIR}/${name}.txt)
  expect_rc(prep 0 "tessera-prepare-data")
endfunction()

# Reads the "loss" of every {"kind":"train"} line of a JSON-lines log into <out_var> (a list).
function(read_train_losses log out_var)
  file(STRINGS ${log} lines)
  set(losses "")
  foreach(line IN LISTS lines)
    string(JSON kind GET "${line}" kind)
    if(kind STREQUAL "train")
      string(JSON loss GET "${line}" loss)
      list(APPEND losses ${loss})
    endif()
  endforeach()
  set(${out_var} "${losses}" PARENT_SCOPE)
endfunction()

# Mean of list elements [begin, end) using awk-free arithmetic via math(EXPR) on scaled integers.
function(mean_of values begin end out_var)
  set(sum 0)
  set(count 0)
  math(EXPR last "${end} - 1")
  foreach(i RANGE ${begin} ${last})
    list(GET values ${i} v)
    # loss values are like 2.345678: scale to micro-units for integer arithmetic
    string(REGEX MATCH "^([0-9]+)\\.?([0-9]*)" _ "${v}")
    set(int_part ${CMAKE_MATCH_1})
    string(SUBSTRING "${CMAKE_MATCH_2}000000" 0 6 frac)
    string(REGEX REPLACE "^0+([0-9])" "\\1" frac "${frac}")
    math(EXPR sum "${sum} + ${int_part} * 1000000 + ${frac}")
    math(EXPR count "${count} + 1")
  endforeach()
  math(EXPR mean "${sum} / ${count}")
  set(${out_var} ${mean} PARENT_SCOPE)
endfunction()

# A decimal string as an integer count of 1e-6 units (losses are positive numbers like 5.516012).
function(to_micro value out_var)
  string(REGEX MATCH "^([0-9]+)\\.?([0-9]*)" _ "${value}")
  set(int_part ${CMAKE_MATCH_1})
  string(SUBSTRING "${CMAKE_MATCH_2}000000" 0 6 frac)
  string(REGEX REPLACE "^0+([0-9])" "\\1" frac "${frac}")
  math(EXPR micro "${int_part} * 1000000 + ${frac}")
  set(${out_var} ${micro} PARENT_SCOPE)
endfunction()

# Fails unless two loss lists have the same length and agree within `rel_e6` millionths relative.
function(expect_losses_close a b rel_e6 what)
  list(LENGTH a na)
  list(LENGTH b nb)
  if(NOT na EQUAL nb OR na EQUAL 0)
    message(FATAL_ERROR "${what}: ${na} vs ${nb} losses")
  endif()
  math(EXPR last "${na} - 1")
  foreach(i RANGE ${last})
    list(GET a ${i} va)
    list(GET b ${i} vb)
    to_micro(${va} ma)
    to_micro(${vb} mb)
    math(EXPR diff "${ma} - ${mb}")
    if(diff LESS 0)
      math(EXPR diff "-${diff}")
    endif()
    # |a - b| <= rel * |b| (+1 unit for the 6-digit truncation)
    math(EXPR allowed "${mb} * ${rel_e6} / 1000000 + 1")
    if(diff GREATER allowed)
      message(FATAL_ERROR "${what}: step ${i} loss ${va} vs ${vb} (differ by ${diff}e-6, allowed ${allowed}e-6)")
    endif()
  endforeach()
endfunction()
