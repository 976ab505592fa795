# Everything that can be checked before the first step is: outputs that cannot be written, inputs
# that are not regular files (a FIFO would block the read forever), and models that cannot fit in
# memory (a million layers) are refused at once with exit code 1 or 2, before any step.
include(${CMAKE_CURRENT_LIST_DIR}/../support/program_helpers.cmake)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
prepare_corpus(small 60000)
set(data --model custom --n-layer 1 --n-head 2 --n-embd 32 --vocab-size 257 --max-seq-len 32 --seq-len 32
         --batch-size 2 --data ${WORK_DIR}/small_train.bin --steps 2 --sample-tokens 0 --threads 1)
file(WRITE ${WORK_DIR}/a_file "not a directory")

# run_bounded(<prefix> <seconds> command...): like run(), but a command that blocks fails the test
# after `seconds` instead of hanging CTest.
function(run_bounded prefix seconds)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT ${seconds})
  set(${prefix}_rc "${rc}" PARENT_SCOPE)
  set(${prefix}_out "${out}" PARENT_SCOPE)
  set(${prefix}_err "${err}" PARENT_SCOPE)
endfunction()

# expect_refused_at_start(<rc> <message regex> <what> <command...>)
function(expect_refused_at_start code regex what)
  run_bounded(r 60 ${ARGN})
  expect_rc(r ${code} "${what}")
  expect_match(r "${regex}" "${what}: the message")
  if("${r_out}" MATCHES "step +1/")
    message(FATAL_ERROR "${what}: refused only after training started:\n${r_out}")
  endif()
endfunction()

# --- Outputs.
expect_refused_at_start(1 "--checkpoint-dir [^\n]*a_file: exists and is not a directory" "--checkpoint-dir that is a file"
                        ${TRAIN} ${data} --checkpoint-dir ${WORK_DIR}/a_file)
expect_refused_at_start(1 "--checkpoint-dir [^\n]*cannot create the directory" "--checkpoint-dir inside a file"
                        ${TRAIN} ${data} --checkpoint-dir ${WORK_DIR}/a_file/ckpt)
expect_refused_at_start(1 "--checkpoint-dir /proc/tessera-ckpt: cannot create the directory" "--checkpoint-dir on a read-only file system"
                        ${TRAIN} ${data} --checkpoint-dir /proc/tessera-ckpt)
expect_refused_at_start(1 "--export [^\n]*a_file/model[^\n]*is not a directory" "--export below a file"
                        ${TRAIN} ${data} --export ${WORK_DIR}/a_file/model)
# A log's missing directory is created when the log is opened (beside checkpoints not yet saved),
# so it need only be creatable.
expect_refused_at_start(1 "--log [^\n]*a_file is not a directory, so [^\n]*cannot be created" "--log below a file"
                        ${TRAIN} ${data} --log ${WORK_DIR}/a_file/missing/train.jsonl)
expect_refused_at_start(1 "--export [^\n]*a_file/model[^\n]*is not a directory" "--log in a missing directory, --export refused"
                        ${TRAIN} ${data} --log ${WORK_DIR}/missing/train.jsonl --export ${WORK_DIR}/a_file/model)
expect_refused_at_start(1 "TESSERA_FAILURE_DIR [^\n]*cannot create the directory" "a failure directory that cannot be made"
                        ${CMAKE_COMMAND} -E env TESSERA_FAILURE_DIR=${WORK_DIR}/a_file/failures ${TRAIN} ${data})
if(EXISTS ${WORK_DIR}/missing)
  message(FATAL_ERROR "a refused run created ${WORK_DIR}/missing")
endif()

# --- Inputs that are not regular files: refused before they are opened (a FIFO would block).
execute_process(COMMAND mkfifo ${WORK_DIR}/fifo_train.bin ${WORK_DIR}/fifo.txt RESULT_VARIABLE fifo_rc)
if(NOT fifo_rc EQUAL 0)
  message(FATAL_ERROR "mkfifo failed")
endif()
expect_refused_at_start(2 "FIFO[^\n]*fifo_train.bin" "a FIFO as --data" ${TRAIN} ${data} --data ${WORK_DIR}/fifo_train.bin)
expect_refused_at_start(2 "FIFO[^\n]*fifo_train.bin" "a FIFO as --val-data"
                        ${TRAIN} ${data} --val-data ${WORK_DIR}/fifo_train.bin)
expect_refused_at_start(2 "FIFO[^\n]*fifo.txt" "a FIFO as text to tokenize"
                        ${PREPARE} --out ${WORK_DIR}/from_fifo ${WORK_DIR}/fifo.txt)
file(MAKE_DIRECTORY ${WORK_DIR}/hf_fifo)
execute_process(COMMAND mkfifo ${WORK_DIR}/hf_fifo/config.json)
expect_refused_at_start(2 "FIFO[^\n]*config.json" "a FIFO as --init-from's config.json"
                        ${TRAIN} --data ${WORK_DIR}/small_train.bin --steps 1 --sample-tokens 0 --init-from ${WORK_DIR}/hf_fifo)
# tessera-plan's input files.
set(PLAN ${BINARY_DIR}/tessera-plan)
expect_refused_at_start(1 "cluster file [^\n]*fifo.txt[^\n]*not a regular file" "a FIFO as --cluster-json"
                        ${PLAN} --cluster-json ${WORK_DIR}/fifo.txt)
expect_refused_at_start(1 "calibration file is a FIFO" "a FIFO as --calibration"
                        ${PLAN} --calibration ${WORK_DIR}/fifo.txt --predict-layouts tp=1)

# --- A model that cannot fit in memory is refused before it is built (a million layers used to
# take hours to set up), naming what it needs and what there is.
expect_refused_at_start(1 "needs at least [0-9.]+ GB per rank[^\n]*available" "a million layers"
                        ${TRAIN} --model custom --n-layer 1000000 --n-head 1 --n-embd 64 --vocab-size 257 --max-seq-len 16
                        --seq-len 16 --batch-size 1 --data ${WORK_DIR}/small_train.bin --steps 1 --sample-tokens 0 --threads 1)

# --- The default --eval-batches (8) shrinks to what the validation data holds (here 2 batches of
# 64 x 32 tokens); a number given beyond it is refused (tests/programs/bad_inputs.cmake).
run(shrunk ${TRAIN} ${data} --batch-size 64 --steps 1)
expect_rc(shrunk 0 "a run with little validation data")
expect_match(shrunk "validation: [^\n]*small_val.bin \\(2 batches per evaluation\\)" "the evaluation reads each batch once")
