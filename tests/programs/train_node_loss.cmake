# A lost node recovered from its peers' memory, and no sample lost or repeated, proved. Four ranks
# on two "nodes" of one machine (node identities from TESSERA_HOSTNAME, node-local directories under
# one root) save to the local tier every 4 steps, each rank keeping a copy of a rank of the other
# node. Under tessera-launch --exclude-failed-hosts, with a spare node for each failed one:
#   attempt 0: rank 1 (nodeA) is killed at step 7;
#   attempt 1: nodeB is lost at step 16 (its ranks and its local directory);
#   attempt 2: rank 3 is frozen from outside at step 22.
# Every relaunch resumes from the newest complete step, losing at most one local interval: after the
# kill and the node loss from the local tier, the lost ranks' shards from their partners' copies; the run ends bitwise equal to an uninterrupted one, and the
# digests of the samples of every step equal the uninterrupted run's, step by step.
include(${CMAKE_CURRENT_LIST_DIR}/../support/fault_test_helpers.cmake)
fault_test_setup()
set(INJECT sh ${SOURCE_DIR}/tests/support/inject.sh)
set(NODES sh ${SOURCE_DIR}/tests/support/fake_nodes.sh)
set(MPI4 ${MPIEXEC} --oversubscribe --bind-to none -np 4)
# The tiny model, slow enough (tens of ms a step) for heartbeats to show the step to freeze at.
set(MODEL --model tiny --data ${WORK_DIR}/corpus_train.bin --batch-size 2 --seq-len 32 --lr 2e-3 --warmup 2 --eval-every 0
          --eval-batches 1 --sample-tokens 0 --threads 1 --seed 5)
set(STEPS --steps 40 --tp 2)

run(ref ${MPI4} ${TRAIN} ${MODEL} ${STEPS} --log ${WORK_DIR}/ref.jsonl --export ${WORK_DIR}/ref)
expect_rc(ref 0 "uninterrupted run")

set(ckpt ${WORK_DIR}/ckpt)
set(fail ${ckpt}/failures)
set(ENV{TESSERA_TEST_NODES} "nodeA nodeA nodeB nodeB")
set(ENV{TESSERA_TEST_SPARES} "nodeC nodeD nodeE")
# The freeze comes as the log records step 22 of attempt 2 (INJECT_LOG), not at the next heartbeat:
# with the fast CPU kernels a heartbeat-timed freeze came at step 40, the run's last.
set(ENV{INJECT_LOG} ${ckpt}/train.jsonl)
run(lost ${INJECT} ${fail} 2 3 22 freeze -- ${LAUNCH} --max-restarts 4 --restart-delay 0 --exclude-failed-hosts
    --checkpoint-dir ${ckpt} --failure-dir ${fail} --log ${ckpt}/launch.jsonl -- ${MPI4} ${NODES} ${TRAIN} ${MODEL} ${STEPS}
    --checkpoint-dir ${ckpt} --checkpoint-every 10 --local-checkpoint-dir ${WORK_DIR}/local --local-checkpoint-every 4
    --fault kill:rank=1:step=7,node:host=nodeB:step=16:attempt=1 --log ${ckpt}/train.jsonl --export ${WORK_DIR}/lost)
unset(ENV{INJECT_LOG})
unset(ENV{TESSERA_TEST_NODES})
unset(ENV{TESSERA_TEST_SPARES})
expect_rc(lost 0 "a kill, a lost node and a freeze under tessera-launch")
expect_match(lost "losing node nodeB" "the node loss")
expect_match(lost "job finished after 3 restarts" "three restarts")
if(EXISTS ${WORK_DIR}/local/nodeB)
  message(FATAL_ERROR "the lost node's local directory is still there")
endif()

# Every relaunch resumed from the newest complete step, losing at most one local interval: after the
# kill and the node loss from the local tier, the replaced node's shards from their partners.
file(STRINGS ${ckpt}/train.jsonl lines)
set(last_step 0)
set(resumes 0)
foreach(line IN LISTS lines)
  string(JSON kind GET "${line}" kind)
  if(kind STREQUAL "train")
    string(JSON last_step GET "${line}" step)
  elseif(kind STREQUAL "resume")
    math(EXPR resumes "${resumes} + 1")
    string(JSON step GET "${line}" step)
    string(JSON tier GET "${line}" tier)
    string(JSON from_peers GET "${line}" from_peers)
    # Steps are numbered from 1: the failure came in the step after the last logged one, and a
    # resume is to the state after some step done.
    math(EXPR failed_at "${last_step} + 1")
    math(EXPR oldest_allowed "${last_step} - 4")
    message(STATUS "resume ${resumes}: failed at step ${failed_at}, resumed at ${step} from the ${tier} tier (shards from peers: '${from_peers}')")
    # The newest complete step of either tier: the durable one when it is as new (every 10 steps).
    if(step LESS oldest_allowed OR step GREATER last_step OR (resumes LESS 3 AND NOT tier STREQUAL "local"))
      message(FATAL_ERROR "resume ${resumes} after a failure at step ${failed_at}: ${line}\n(expected the local tier, losing at most 4 steps)")
    endif()
    if(resumes EQUAL 1 AND NOT from_peers STREQUAL "0,1")
      message(FATAL_ERROR "after rank 1's node was replaced, ranks 0 and 1 should come from their partners: ${line}")
    endif()
    if(resumes EQUAL 2 AND NOT from_peers STREQUAL "2,3")
      message(FATAL_ERROR "after the node of ranks 2 and 3 was replaced, they should come from their partners: ${line}")
    endif()
  endif()
endforeach()
if(NOT resumes EQUAL 3)
  message(FATAL_ERROR "expected three resumes in ${ckpt}/train.jsonl, got ${resumes}")
endif()
expect_same_last_losses(${ckpt}/train.jsonl ${WORK_DIR}/ref.jsonl 5 "with failures vs uninterrupted")
expect_same_model(${WORK_DIR}/lost ${WORK_DIR}/ref "with failures vs uninterrupted")

# The samples of every step, as trained by the attempts that led to the end, are the uninterrupted run's.
effective_digests(${ckpt}/train.jsonl got)
effective_digests(${WORK_DIR}/ref.jsonl want)
list(LENGTH want n)
if(NOT n EQUAL 40 OR NOT got STREQUAL want)
  message(FATAL_ERROR "the samples trained differ from the uninterrupted run's:\n${got}\nvs\n${want}")
endif()

# What a person reads: three failures, who and where, the lost node's shards from partners, and
# every step's samples trained once, as in the uninterrupted run.
run(diag ${DIAGNOSE} ${ckpt})
expect_rc(diag 0 "tessera-diagnose")
expect_match(diag "4 attempts, 3 failures, finished" "the summary line")
expect_match(diag "failure 1 \\(attempt 0\\): rank 1 on nodeA died \\([^)]*killed by signal 9" "the kill")
expect_match(diag "failure 2 \\(attempt 1\\): rank [23] on nodeB died" "the lost node")
expect_match(diag "resumed at step [0-9]+ from the local tier \\(ranks 2, 3 from their partners' copies\\)" "the partners' copies")
expect_match(diag "failure 3 \\(attempt 2\\): rank 3 on nodeD (was frozen|stopped)" "the freeze")
expect_match(diag "time lost [0-9.]+ s: detection [0-9.]+ s, restart [0-9.]+ s, recomputation" "the time lost, split")
message(STATUS "tessera-diagnose says:\n${diag_out}")
run(samples ${DIAGNOSE} --samples ${ckpt}/train.jsonl --reference ${WORK_DIR}/ref.jsonl)
expect_rc(samples 0 "tessera-diagnose --samples")
expect_match(samples "samples: steps 1-40 each trained once, no sample lost or repeated; every step's samples match"
             "the samples verdict")
