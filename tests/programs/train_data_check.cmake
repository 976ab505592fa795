# Every token is checked before the first step: a shard with one id outside the vocabulary deep
# inside (where a short run never reads) stops tessera-train at start with exit code 2, naming the
# file and the offset, on one rank and on every rank of a data-parallel job; --no-shuffle reads the
# sequences in file order.
include(${CMAKE_CURRENT_LIST_DIR}/../support/program_helpers.cmake)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
prepare_corpus(small 60000)

# Token offset 50000 of the training shard becomes id 300 (the byte vocabulary has 257): bytes
# 1024 + 2 * 50000 of the file, little-endian 0x012c.
function(poke_token file offset)
  math(EXPR byte "1024 + 2 * ${offset}")
  execute_process(COMMAND sh -c "printf '\\054\\001' | dd of='${file}' bs=1 seek=${byte} conv=notrunc status=none"
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "could not modify ${file}")
  endif()
endfunction()

set(args --model tiny --batch-size 2 --seq-len 32 --steps 2 --eval-every 0 --sample-tokens 0 --threads 1)
run(clean ${TRAIN} ${args} --data ${WORK_DIR}/small_train.bin)
expect_rc(clean 0 "the unmodified shard")
expect_match(clean "checked all [0-9]+ tokens of 2 files" "the check's report line")
expect_match(clean "shuffled every epoch" "the default order")

file(COPY_FILE ${WORK_DIR}/small_train.bin ${WORK_DIR}/bad_train.bin)
file(COPY_FILE ${WORK_DIR}/small_val.bin ${WORK_DIR}/bad_val.bin)
poke_token(${WORK_DIR}/bad_train.bin 50000)
foreach(order "" "--no-shuffle")
  run(bad ${TRAIN} ${args} --data ${WORK_DIR}/bad_train.bin ${order})
  expect_rc(bad 2 "a token outside the vocabulary deep inside the shard ${order}")
  expect_match(bad "bad_train.bin" "the error names the file")
  expect_match(bad "token id 300 at token offset 50000 \\(byte 101024\\)" "the error names the offset and the id")
  expect_match(bad "size 257" "the error names the vocabulary")
  if("${bad_out}" MATCHES "step +1/")
    message(FATAL_ERROR "a training step ran before the bad token was reported:\n${bad_out}")
  endif()
endforeach()

# Two data-parallel ranks each check half of the data; both stop with the same error.
run(bad2 ${MPIEXEC} --oversubscribe --bind-to none -np 2 ${TRAIN} ${args} --data ${WORK_DIR}/bad_train.bin)
expect_rc(bad2 2 "mpirun -np 2 with a bad token in one rank's part")
string(REGEX MATCHALL "token id 300 at token offset 50000" reports "${bad2_err}")
list(LENGTH reports n)
if(NOT n EQUAL 2)
  message(FATAL_ERROR "expected both ranks to report the bad token, found ${n} reports:\n${bad2_err}")
endif()

# The validation data is checked too.
poke_token(${WORK_DIR}/bad_val.bin 3000)
run(bad_val ${TRAIN} ${args} --data ${WORK_DIR}/small_train.bin --val-data ${WORK_DIR}/bad_val.bin)
expect_rc(bad_val 2 "a bad token in the validation data")
expect_match(bad_val "bad_val.bin" "the error names the validation file")
expect_match(bad_val "token offset 3000" "the error names the offset")

# --no-shuffle reads the first windows first; the default draws them from the seed: other batches, other losses.
run(ordered ${TRAIN} ${args} --data ${WORK_DIR}/small_train.bin --no-shuffle --log ${WORK_DIR}/ordered.jsonl)
expect_rc(ordered 0 "--no-shuffle")
expect_match(ordered "file order" "the data line says file order")
run(shuffled ${TRAIN} ${args} --data ${WORK_DIR}/small_train.bin --log ${WORK_DIR}/a.jsonl)
expect_rc(shuffled 0 "the default order")
read_train_losses(${WORK_DIR}/ordered.jsonl ordered_losses)
read_train_losses(${WORK_DIR}/a.jsonl a_losses)
if(ordered_losses STREQUAL a_losses)
  message(FATAL_ERROR "shuffled and file-order runs read the same batches: ${a_losses}")
endif()
