# Bad input gets a clear error and the documented exit code, never a crash:
# 1 = bad arguments or config, 2 = bad data.
include(${CMAKE_CURRENT_LIST_DIR}/../support/program_helpers.cmake)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
prepare_corpus(small 60000)
set(data --data ${WORK_DIR}/small_train.bin --steps 1 --sample-tokens 0 --threads 1)

run(r ${TRAIN} --no-such-flag)
expect_rc(r 1 "unknown flag")
expect_match(r "unknown flag --no-such-flag" "unknown flag message")

run(r ${TRAIN} --model gpt5 ${data})
expect_rc(r 1 "unknown preset")
expect_match(r "gpt2-xl" "preset error lists the valid names")

run(r ${TRAIN} --model tiny --batch-size abc ${data})
expect_rc(r 1 "non-numeric batch size")

run(r ${TRAIN} --model tiny --seq-len 512 ${data})
expect_rc(r 1 "sequence longer than the context")
expect_match(r "longer than the model's context" "context error message")

run(r ${TRAIN} --model custom --n-layer 2 --n-head 3 --n-embd 64 --vocab-size 257 --max-seq-len 64 ${data})
expect_rc(r 1 "heads that do not divide the channels")

# Custom-model flags describe a custom model only; sizes that do not fit are refused before any work.
run(r ${TRAIN} --model tiny --n-kv-head 2 ${data})
expect_rc(r 1 "a custom-model flag with a preset")
expect_match(r "--n-kv-head describes a custom model" "the error names the flag")
run(r ${TRAIN} --model custom --family llama --n-layer 2 --n-head 4 --n-kv-head 3 --n-embd 64 --vocab-size 257
          --max-seq-len 64 ${data})
expect_rc(r 1 "key/value heads that do not divide the query heads")
expect_match(r "n_kv_head 3" "the error names the key/value heads")
run(r ${TRAIN} --model custom --family gpt2 --rope-theta 10000 --n-layer 2 --n-head 4 --n-embd 64 --vocab-size 257
          --max-seq-len 64 ${data})
expect_rc(r 1 "a rotary base for learned positions")
run(r ${TRAIN} --model custom --family bert --n-layer 2 --n-head 4 --n-embd 64 --vocab-size 257 --max-seq-len 64 ${data})
expect_rc(r 1 "an unknown family")
expect_match(r "llama" "the error lists the families")

run(r ${TRAIN} --model tiny --data ${WORK_DIR}/missing.bin --steps 1)
expect_rc(r 2 "missing data file")

# A truncated shard: cut the file in the middle of its tokens.
execute_process(COMMAND head -c 2001 ${WORK_DIR}/small_train.bin OUTPUT_FILE ${WORK_DIR}/truncated.bin)
run(r ${TRAIN} --model tiny --data ${WORK_DIR}/truncated.bin --steps 1 --threads 1)
expect_rc(r 2 "truncated shard")
expect_match(r "truncated.bin" "the error names the file")

# Wrong magic number.
execute_process(COMMAND sh -c "printf 'XXXX' | cat - ${WORK_DIR}/small_train.bin | head -c 2048 > ${WORK_DIR}/bad_magic.bin")
run(r ${TRAIN} --model tiny --data ${WORK_DIR}/bad_magic.bin --steps 1 --threads 1)
expect_rc(r 2 "wrong magic")

# Tokens outside the model's vocabulary: a custom model with a vocabulary of 64 bytes.
run(r ${TRAIN} --model custom --n-layer 1 --n-head 2 --n-embd 32 --vocab-size 64 --max-seq-len 64 --seq-len 32 ${data})
expect_rc(r 2 "token id >= vocabulary")
expect_match(r "vocab" "the error names the vocabulary")

run(r ${PREPARE} --out ${WORK_DIR}/x ${WORK_DIR}/does_not_exist.txt)
if(r_rc EQUAL 0)
  message(FATAL_ERROR "tessera-prepare-data accepted a missing input file")
endif()
