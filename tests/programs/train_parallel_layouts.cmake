# tessera-train under mpirun (or srun, under the Slurm fixture): 8 ranks as tp 2 x pp 2 x dp 2 (and 4 ranks with the interleaved
# schedule, ZeRO-1 and sequence parallelism) give the losses of one process on the same global batch,
# for the GPT-2 and the LLaMA preset.
include(${CMAKE_CURRENT_LIST_DIR}/../support/program_helpers.cmake)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
prepare_corpus(corpus 200000)
foreach(n 2 3 4 8)
  ranks(${n} R${n})
endforeach()

# Global batch: 2 sequences x 4 microbatches in one process = 2 x 2 microbatches x 2 replicas. The
# GPT-2 and the LLaMA preset alike.
set(data --data ${WORK_DIR}/corpus_train.bin --batch-size 2 --seq-len 32 --steps 8 --lr 2e-3
         --warmup 2 --eval-every 0 --sample-tokens 0 --seed 11 --threads 1)
foreach(model tiny llama-tiny)
  set(common --model ${model} ${data})
  run(single ${TRAIN} ${common} --microbatches 4 --log ${WORK_DIR}/${model}_single.jsonl)
  expect_rc(single 0 "${model}: one process")
  read_train_losses(${WORK_DIR}/${model}_single.jsonl reference)

  run(grid8 ${R8} ${TRAIN} ${common} --tp 2 --pp 2 --dp 2 --microbatches 2
      --log ${WORK_DIR}/${model}_grid8.jsonl)
  expect_rc(grid8 0 "${model}: 8 ranks --tp 2 --pp 2 --dp 2")
  expect_match(grid8 "tp=2 pp=2 dp=2" "the layout line")
  expect_match(grid8 "bubble" "the pipeline's bubble fraction")
  read_train_losses(${WORK_DIR}/${model}_grid8.jsonl losses8)
  expect_losses_close("${losses8}" "${reference}" 10 "${model}: tp2 pp2 dp2 vs one process")

  run(grid4 ${R4} ${TRAIN} ${common} --tp 2 --pp 2 --sp --microbatches 4
      --schedule interleaved --virtual-stages 2 --log ${WORK_DIR}/${model}_grid4.jsonl)
  expect_rc(grid4 0 "${model}: 4 ranks --tp 2 --pp 2 --sp, interleaved")
  read_train_losses(${WORK_DIR}/${model}_grid4.jsonl losses4)
  expect_losses_close("${losses4}" "${reference}" 10 "${model}: tp2 pp2 sp interleaved vs one process")
endforeach()
set(common --model tiny ${data})
read_train_losses(${WORK_DIR}/tiny_single.jsonl reference)

run(zero ${R2} ${TRAIN} ${common} --dp 2 --zero 1 --microbatches 2
    --log ${WORK_DIR}/zero.jsonl)
expect_rc(zero 0 "2 ranks --dp 2 --zero 1")
expect_match(zero "ZeRO-1" "the optimizer memory line")
read_train_losses(${WORK_DIR}/zero.jsonl losses_zero)
expect_losses_close("${losses_zero}" "${reference}" 10 "dp2 zero1 vs one process")

# A layout that does not fit the world is refused before any work, with exit code 1.
run(bad ${R3} ${TRAIN} ${common} --tp 2)
expect_rc(bad 1 "tp 2 on 3 ranks")
expect_match(bad "not divisible by tp x pp" "the layout error")
run(bad_heads ${R3} ${TRAIN} ${common} --tp 3)
expect_rc(bad_heads 1 "3-way tensor parallelism of 4 heads")
# LLaMA's 2 key/value heads split over at most 2 tensor-parallel ranks: not replicated, refused.
run(bad_kv_heads ${R4} ${TRAIN} --model llama-tiny ${data} --tp 4)
expect_rc(bad_kv_heads 1 "4-way tensor parallelism of 2 key/value heads")
expect_match(bad_kv_heads "2 key/value heads" "the error names the key/value heads")
