# Helpers for the program tests (included by the tests/programs/*.cmake scripts; not a test itself).
set(TRAIN ${BINARY_DIR}/tessera-train)
set(PREPARE ${BINARY_DIR}/tessera-prepare-data)

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
