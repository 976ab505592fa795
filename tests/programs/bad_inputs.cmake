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
expect_match(r "--model 'gpt5'[^\n]*gpt2-xl" "preset error names the flag and lists the valid names")

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

# --- Every flag is range-checked as it is parsed: a bad value is exit code 1 with a message naming
# the flag and the value, never replaced by a default or ignored.
set(LAUNCH ${BINARY_DIR}/tessera-launch)
set(CALIBRATE ${BINARY_DIR}/tessera-calibrate)
set(BENCH_TRAINING ${BINARY_DIR}/tessera-bench-training)
set(BENCH_COLLECTIVES ${BINARY_DIR}/tessera-bench-collectives)
# expect_refused(<message regex> <command...>)
function(expect_refused regex)
  run(r ${ARGN})
  string(REPLACE ";" " " shown "${ARGN}")
  expect_rc(r 1 "${shown}")
  expect_match(r "${regex}" "${shown}: the message names the flag and the value")
  if("${r_out}" MATCHES "step +1/")
    message(FATAL_ERROR "${shown}: refused only after training started:\n${r_out}")
  endif()
endfunction()
expect_refused("--temperature -1: must be > 0" ${TRAIN} ${data} --sample-tokens 4 --temperature -1)
expect_refused("--threads -3: must be >= 0" ${TRAIN} ${data} --threads -3)
expect_refused("--eval-every -1: must be >= 0" ${TRAIN} ${data} --eval-every -1)
expect_refused("--lr: 'inf' is not a finite number" ${TRAIN} ${data} --lr inf)
expect_refused("--beta2 1: must be >= 0 and < 1" ${TRAIN} ${data} --beta2 1)
expect_refused("--schedule 'zigzag': must be one of gpipe, 1f1b, interleaved" ${TRAIN} ${data} --schedule zigzag)
expect_refused("--timeout: '1e999' is not a number" ${TRAIN} ${data} --timeout 1e999)
expect_refused("--min-lr 0.1 is above --lr 0.01" ${TRAIN} ${data} --lr 0.01 --min-lr 0.1)
expect_refused("--top-k 300 is more than the vocabulary of 257" ${TRAIN} ${data} --sample-tokens 4 --top-k 300)
expect_refused("--tp 2 is more than the 1 ranks launched" ${TRAIN} ${data} --tp 2)
# A flag that another flag makes meaningless is refused, not ignored.
expect_refused("--n-layer describes a custom model, but --model is .tiny." ${TRAIN} ${data} --model tiny --n-layer 3)
expect_refused("--keep needs --checkpoint-dir" ${TRAIN} ${data} --keep 2)
expect_refused("--eval-every 5 needs validation data" ${TRAIN} --data ${WORK_DIR}/small_train.bin,${WORK_DIR}/small_train.bin
               --steps 1 --sample-tokens 0 --threads 1 --eval-every 5)
# A fault that could never act: a test injecting it would pass without it.
expect_refused("--fault kill:rank=3[^\n]*rank 3 is not one of the 1 ranks" ${TRAIN} ${data} --fault kill:rank=3:step=1)
expect_refused("--fault kill:step=0[^\n]*steps 1..1" ${TRAIN} ${data} --fault kill:step=0)
expect_refused("--fault corrupt:step=2[^\n]*no checkpoint is saved at step 2" ${TRAIN} ${data} --steps 3 --fault corrupt:step=2)
# --eval-batches against the validation data: an evaluation must not read a batch twice.
expect_refused("--eval-batches 100000: the validation data [^\n]*holds [0-9]+ batches" ${TRAIN} ${data} --eval-batches 100000)
# The other programs.
expect_refused("--straggler-slowdown 1: must be > 1" ${TRAIN} ${data} --straggler-slowdown 1)
expect_refused("--on-save-error 'retry': must be one of continue, stop" ${TRAIN} ${data} --on-save-error retry)
expect_refused("--local-checkpoint-every needs --local-checkpoint-dir" ${TRAIN} ${data} --local-checkpoint-every 2)
expect_refused("--max-restarts -1: must be >= 0" ${LAUNCH} --max-restarts -1 -- true)
expect_refused("--heartbeat-timeout -1: must be >= 0" ${LAUNCH} --heartbeat-timeout -1 -- true)
expect_refused("--restart-delay: 'inf' is not a finite number" ${LAUNCH} --restart-delay inf -- true)
expect_refused("--no-restart-codes: '0' is not an exit code" ${LAUNCH} --no-restart-codes 0 -- true)
expect_refused("--val-fraction 1.5: must be > 0 and < 1" ${PREPARE} --val-fraction 1.5 --out ${WORK_DIR}/x ${WORK_DIR}/small.txt)
expect_refused("--reps 0: must be >= 1" ${CALIBRATE} --reps 0)
expect_refused("--peak-tflops -5: must be > 0" ${BENCH_TRAINING} --peak-tflops -5)
expect_refused("--layouts 'tp=3'" ${BENCH_TRAINING} --layouts tp=3)
expect_refused("-f 1: must be >= 2" ${BENCH_COLLECTIVES} -f 1)
expect_refused("--op 'broadcast': must be one of" ${BENCH_COLLECTIVES} --op broadcast)
expect_refused("-b 1M is larger than -e 1K" ${BENCH_COLLECTIVES} -b 1M -e 1K)
expect_refused("--gb 0: must be > 0" ${BINARY_DIR}/tessera-bench-data --gb 0)
expect_refused("--runs 0: must be >= 1" ${BINARY_DIR}/tessera-cpu-peak --runs 0)
set(PLAN ${BINARY_DIR}/tessera-plan)
expect_refused("--peak-tflops -5: must be >= 0" ${PLAN} --peak-tflops -5)
expect_refused("--intra-latency-us -0.5: must be >= 0" ${PLAN} --intra-latency-us -0.5)
expect_refused("--top 0: must be >= 1" ${PLAN} --top 0)
expect_refused("--gpu-hours-per-failure -1: must be > 0" ${PLAN} --failures --gpu-hours-per-failure -1)
# A flag of the calibrated mode given to a cluster plan would be ignored.
expect_refused("--slow-rank is read only with --calibration" ${PLAN} --straggler 10 --slow-rank 3)
expect_refused("--tolerance is read only with --calibration" ${PLAN} --tolerance 0.1)
# ... and a cluster plan's flag given to the calibrated mode.
expect_refused("--gpus is not read with --calibration" ${PLAN} --calibration ${WORK_DIR}/calibration.json --gpus 8)
expect_refused("--ranks is not read with --measured" ${PLAN} --calibration ${WORK_DIR}/calibration.json
               --measured ${WORK_DIR}/measured.jsonl --ranks 2)
# A straggler that is none of the ranks would change nothing ("+0.0%").
run(r ${CALIBRATE} --model tiny --batch-size 1 --seq-len 16 --reps 1 --threads 1 --out ${WORK_DIR}/calibration.json)
expect_rc(r 0 "tessera-calibrate, for tessera-plan --calibration")
expect_refused("--slow-rank 1 is not one of the 1 ranks of layout 'tp=1'" ${PLAN} --calibration ${WORK_DIR}/calibration.json
               --predict-layouts tp=1 --ranks 1 --straggler 10 --slow-rank 1)
expect_refused("--dir [^\n]*small.txt: exists and is not a directory" ${BINARY_DIR}/tessera-bench-data --dir ${WORK_DIR}/small.txt)
