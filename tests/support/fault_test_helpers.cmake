# Helpers for the checkpoint and failure program tests (tests/programs/train_{restart,checkpoint_damage,on_nan}.cmake).
include(${CMAKE_CURRENT_LIST_DIR}/program_helpers.cmake)
set(LAUNCH ${BINARY_DIR}/tessera-launch)
set(MPI2 ${MPIEXEC} --oversubscribe --bind-to none -np 2)

# A very small model on a slice of the corpus: 12 steps of two data-parallel ranks take well under a second.
function(fault_test_setup)
  file(REMOVE_RECURSE ${WORK_DIR})
  file(MAKE_DIRECTORY ${WORK_DIR})
  prepare_corpus(corpus 60000)
  set(MODEL --model custom --n-layer 2 --n-head 2 --n-embd 32 --vocab-size 257 --max-seq-len 32
            --data ${WORK_DIR}/corpus_train.bin --batch-size 4 --seq-len 32 --steps 12 --lr 2e-3 --warmup 2
            --eval-every 0 --eval-batches 1 --sample-tokens 0 --threads 1 --seed 5 PARENT_SCOPE)
endfunction()

# The JSON lines of a log whose "kind" is `kind`, as a list.
function(log_records log kind out_var)
  file(STRINGS ${log} lines)
  set(found "")
  foreach(line IN LISTS lines)
    string(JSON k GET "${line}" kind)
    if(k STREQUAL "${kind}")
      list(APPEND found "${line}")
    endif()
  endforeach()
  set(${out_var} "${found}" PARENT_SCOPE)
endfunction()

# Field `key` of the last record of `kind` in a log (FATAL_ERROR when there is none).
function(last_record_field log kind key out_var)
  log_records(${log} ${kind} records)
  list(LENGTH records n)
  if(n EQUAL 0)
    message(FATAL_ERROR "${log} has no {\"kind\":\"${kind}\"} record")
  endif()
  list(GET records -1 last)
  string(JSON value GET "${last}" ${key})
  set(${out_var} "${value}" PARENT_SCOPE)
endfunction()

# Fails unless the last `count` train losses of two logs are the same strings (bitwise the same floats).
function(expect_same_last_losses log_a log_b count what)
  read_train_losses(${log_a} a)
  read_train_losses(${log_b} b)
  list(LENGTH a na)
  list(LENGTH b nb)
  if(na LESS count OR nb LESS count)
    message(FATAL_ERROR "${what}: ${na} and ${nb} train records, need ${count}")
  endif()
  math(EXPR from_a "${na} - ${count}")
  math(EXPR from_b "${nb} - ${count}")
  list(SUBLIST a ${from_a} ${count} tail_a)
  list(SUBLIST b ${from_b} ${count} tail_b)
  if(NOT tail_a STREQUAL tail_b)
    message(FATAL_ERROR "${what}: the last ${count} losses differ:\n${tail_a}\nvs\n${tail_b}")
  endif()
endfunction()

# Fails unless two exported models are byte for byte the same.
function(expect_same_model dir_a dir_b what)
  execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${dir_a}/model.safetensors ${dir_b}/model.safetensors
                  RESULT_VARIABLE differ)
  if(differ)
    message(FATAL_ERROR "${what}: ${dir_a}/model.safetensors and ${dir_b}/model.safetensors differ")
  endif()
endfunction()

# A decimal in [0, 10) as an integer count of 1e-3 units (for comparing ratios with math(EXPR)).
function(to_milli value out_var)
  if(value MATCHES "e-")
    set(${out_var} 0 PARENT_SCOPE)  # a tiny number printed in exponent form
    return()
  endif()
  string(REGEX MATCH "^([0-9]+)\\.?([0-9]*)" _ "${value}")
  set(int_part ${CMAKE_MATCH_1})
  string(SUBSTRING "${CMAKE_MATCH_2}000" 0 3 frac)
  string(REGEX REPLACE "^0+([0-9])" "\\1" frac "${frac}")
  math(EXPR milli "${int_part} * 1000 + ${frac}")
  set(${out_var} ${milli} PARENT_SCOPE)
endfunction()
