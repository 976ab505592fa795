# tessera-diagnose on directories and logs built by hand for the cases the fault tests do not make:
# a rank hung in its own work while its peers wait in a collective, a hang only the launcher saw,
# a straggler, and logs whose samples were trained twice, never, or not as in the reference.
include(${SOURCE_DIR}/tests/support/program_helpers.cmake)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR}/run/failures/attempt-0)
set(DIAGNOSE ${PYTHON} ${BINARY_DIR}/tessera-diagnose)
set(f ${WORK_DIR}/run/failures/attempt-0)

# Rank 0 hung computing at step 6; rank 1 waited in all_reduce(dp) for it.
file(WRITE ${f}/failure-rank-0.json [=[{"rank":0,"host":"node1","pid":11,"attempt":0,"step":6,"op":"train step","reason":"timeout","waited_s":10.2,"timeout_s":10,"deadline":"learned 10.0 s (the floor)","started_unix":1000.0,"detected_unix":1010.2,"stopped_s":0,"stack":["train step (step 6, 10.2 s)"],"stale_peers":[],"flight_recorder":[]}]=])
file(WRITE ${f}/failure-rank-1.json [=[{"rank":1,"host":"node2","pid":12,"attempt":0,"step":6,"op":"all_reduce(dp)","reason":"timeout","waited_s":10.0,"timeout_s":10,"deadline":"learned 10.0 s (the floor)","started_unix":1000.1,"detected_unix":1010.1,"stopped_s":0,"stack":["train step (step 6, 10.1 s)","all_reduce(dp) (step 6, 10.0 s)"],"stale_peers":[],"flight_recorder":[{"seq":17,"op":"all_reduce","group":"dp","peers":[0,1],"bytes":4096,"start_unix":1000.1,"end_unix":null}]}]=])
file(WRITE ${f}/heartbeat-rank-0.json [=[{"rank":0,"host":"node1","pid":11,"attempt":0,"beat":10,"beat_unix":1010.0,"gap_s":1.0,"exited":false,"step":6,"steps_done":5,"sections":[{"op":"train step","step":6,"since_unix":1000.0,"deadline_s":10}],"groups":[{"group":"dp","started":16,"completed":16,"op":"all_reduce","since_unix":999.0}]}]=])
file(WRITE ${f}/heartbeat-rank-1.json [=[{"rank":1,"host":"node2","pid":12,"attempt":0,"beat":10,"beat_unix":1010.0,"gap_s":1.0,"exited":false,"step":6,"steps_done":5,"sections":[{"op":"train step","step":6,"since_unix":1000.0,"deadline_s":10},{"op":"all_reduce(dp)","step":6,"since_unix":1000.1,"deadline_s":10}],"groups":[{"group":"dp","started":17,"completed":16,"op":"all_reduce","since_unix":1000.1}]}]=])
file(WRITE ${WORK_DIR}/run/launch.jsonl [=[{"kind":"restart","restart":1,"max_restarts":3,"exit_code":3,"reason":"hang or peer failure detected","limit":"","failed_rank":0,"host":"node1","source":"failure report: train step at step 6 for 10.2 s","attempt_s":30.0,"lost_s":14.0,"started_unix":980.0,"ended_unix":1011.0}
{"kind":"launch_end","result":"finished","exit_code":0,"restarts":1,"lost_s":14.0,"unix":1100.0}
]=])
file(WRITE ${WORK_DIR}/run/train.jsonl [=[{"kind":"train","step":1,"loss":5.0,"ms":100,"samples":"a0"}
{"kind":"train","step":2,"loss":4.9,"ms":100,"samples":"a1"}
{"kind":"train","step":3,"loss":4.8,"ms":100,"samples":"a2"}
{"kind":"train","step":4,"loss":4.7,"ms":100,"samples":"a3"}
{"kind":"train","step":5,"loss":4.6,"ms":100,"samples":"a4"}
{"kind":"resume","step":2,"dir":"ck/step-00000002","tier":"durable","from_peers":"","unix":1013.5,"attempt":1}
{"kind":"train","step":3,"loss":4.8,"ms":100,"samples":"a2"}
{"kind":"train","step":4,"loss":4.7,"ms":100,"samples":"a3"}
{"kind":"straggler","rank":1,"host":"node2","slowdown":1.7,"step":10,"since_step":1}
{"kind":"train","step":5,"loss":4.6,"ms":100,"samples":"a4"}
{"kind":"train","step":6,"loss":4.5,"ms":100,"samples":"a5"}
{"kind":"summary","steps":6,"effective_ratio":0.5}
]=])
run(d ${DIAGNOSE} ${WORK_DIR}/run)
expect_rc(d 0 "tessera-diagnose")
expect_match(d "2 attempts, 1 failure, finished, 13.8 s lost; effective training time 50.0%" "the summary (the split, not the launcher's 14.0 s)")
expect_match(d "failure 1 \\(attempt 0\\): rank 0 on node1 hung in train step at step 6 \\(in its own work, not in a collective\\)"
             "the rank stuck in its own work, not the one waiting for it")
expect_match(d "rank 1 was waiting in all_reduce\\(dp\\)" "its waiting peer")
expect_match(d "time lost 13.8 s: detection 11.0 s, restart 2.5 s, recomputation 0.3 s \\(3 steps redone\\)" "the split")
expect_match(d "straggler: rank 1 on node2 computed 1.70x slower than its peers from step 1 \\(still slow at the end\\)"
             "the straggler")

# Samples: as the reference; then twice, never, and other samples.
file(WRITE ${WORK_DIR}/ref.jsonl [=[{"kind":"train","step":1,"samples":"a0"}
{"kind":"train","step":2,"samples":"a1"}
{"kind":"train","step":3,"samples":"a2"}
{"kind":"train","step":4,"samples":"a3"}
{"kind":"train","step":5,"samples":"a4"}
{"kind":"train","step":6,"samples":"a5"}
]=])
run(ok ${DIAGNOSE} --samples ${WORK_DIR}/run/train.jsonl --reference ${WORK_DIR}/ref.jsonl)
expect_rc(ok 0 "samples as the reference")
expect_match(ok "steps 1-6 each trained once, no sample lost or repeated; every step's samples match" "the verdict")
file(WRITE ${WORK_DIR}/bad.jsonl [=[{"kind":"train","step":1,"samples":"a0"}
{"kind":"train","step":2,"samples":"a1"}
{"kind":"train","step":3,"samples":"a1"}
{"kind":"train","step":5,"samples":"b4"}
{"kind":"train","step":6,"samples":"a5"}
]=])
run(bad ${DIAGNOSE} --samples ${WORK_DIR}/bad.jsonl --reference ${WORK_DIR}/ref.jsonl)
expect_rc(bad 2 "samples trained twice, never, and otherwise")
expect_match(bad "step 3 trained the samples of step 2 again" "twice")
expect_match(bad "step 4 was never trained: its samples are lost" "never")
expect_match(bad "step 5 trained other samples than the reference" "other samples")

# A hang only the launcher saw (watchdogs off): its record says which limit.
file(MAKE_DIRECTORY ${WORK_DIR}/quiet/failures/attempt-0)
file(WRITE ${WORK_DIR}/quiet/launch.jsonl [=[{"kind":"restart","restart":1,"max_restarts":1,"exit_code":1,"reason":"hang detected by tessera-launch (heartbeat limit)","limit":"heartbeat","failed_rank":3,"host":"node4","source":"tessera-launch: heartbeat limit","attempt_s":90.0,"lost_s":70.0,"started_unix":0.0,"ended_unix":90.0}
]=])
run(q ${DIAGNOSE} ${WORK_DIR}/quiet)
expect_rc(q 0 "tessera-diagnose, a launcher-found hang")
expect_match(q "tessera-launch found the attempt hung \\(heartbeat limit\\)" "the launcher's verdict")
run(none ${DIAGNOSE} ${WORK_DIR}/no-such-dir)
expect_rc(none 2 "a directory that is not there")
