# The card-calibration path end to end: tessera-calibrate --card writes a file (here on the CPU,
# f32), tessera-plan --card-calibration refuses it with the reason (the planner models bf16), and a
# synthetic GPU calibration changes the plan's constants and its predicted MFU.
include(${CMAKE_CURRENT_LIST_DIR}/../support/program_helpers.cmake)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(CALIBRATE ${BINARY_DIR}/tessera-calibrate)
set(PLAN ${BINARY_DIR}/tessera-plan)
set(plan_args --model gpt2-xl --gpus 1024 --cluster h100 --top 1)

run(measure ${CALIBRATE} --card --device cpu --quick --reps 3 --out ${WORK_DIR}/cpu_card.json)
expect_rc(measure 0 "tessera-calibrate --card on the CPU")
expect_match(measure "card calibration: .*3 GEMM, 1 attention and 0 collective samples" "the producer's summary")
file(READ ${WORK_DIR}/cpu_card.json cpu_card)
string(JSON format GET "${cpu_card}" format)
string(JSON gemm_count LENGTH "${cpu_card}" gemm)
if(NOT format STREQUAL "tessera-card-calibration" OR NOT gemm_count EQUAL 3)
  message(FATAL_ERROR "unexpected card calibration file:\n${cpu_card}")
endif()
run(refused ${PLAN} ${plan_args} --card-calibration ${WORK_DIR}/cpu_card.json)
expect_rc(refused 1 "tessera-plan with an f32-only card calibration")
expect_match(refused "no bf16 GEMM or attention measurement" "the refusal's reason")

run(missing ${PLAN} ${plan_args} --card-calibration ${WORK_DIR}/missing.json)
expect_rc(missing 1 "tessera-plan with a missing card calibration")
expect_match(missing "cannot read the card calibration" "the missing file's message")

# A card sustaining about half the preset's GEMM rate: the predicted MFU must fall.
file(WRITE ${WORK_DIR}/slow_card.json [=[
{"format": "tessera-card-calibration", "version": 1, "card": "synthetic slow H100", "device": "cuda",
 "hbm_gbps": 1500,
 "gemm": [{"m": 8192, "n": 8192, "k": 8192, "dtype": "bf16", "tflops": 300},
          {"m": 16384, "n": 1024, "k": 8192, "dtype": "bf16", "tflops": 270},
          {"m": 16384, "n": 8192, "k": 1024, "dtype": "bf16", "tflops": 250}],
 "attention": [{"batch": 2, "seq": 8192, "heads": 32, "head_dim": 128, "dtype": "bf16",
                "forward_tflops": 240, "backward_tflops": 170}]}
]=])
run(base ${PLAN} ${plan_args} --json)
expect_rc(base 0 "tessera-plan with the preset")
run(slow ${PLAN} ${plan_args} --json --card-calibration ${WORK_DIR}/slow_card.json)
expect_rc(slow 0 "tessera-plan with a synthetic card calibration")
expect_match(slow "card calibration .*synthetic slow H100.*gemm_efficiency 0\\.[0-9]+ -> 0\\.[0-9]+" "the changes it lists")
string(JSON base_mfu GET "${base_out}" layouts 0 mfu)
string(JSON slow_mfu GET "${slow_out}" layouts 0 mfu)
message(STATUS "predicted MFU: preset ${base_mfu}, slow card ${slow_mfu}")
string(REGEX REPLACE "^0\\.([0-9][0-9][0-9]).*" "\\1" base_permille "${base_mfu}")
string(REGEX REPLACE "^0\\.([0-9][0-9][0-9]).*" "\\1" slow_permille "${slow_mfu}")
math(EXPR limit "${base_permille} * 3 / 4")
if(NOT slow_permille LESS limit)
  message(FATAL_ERROR "the slow card's MFU ${slow_mfu} is not below 3/4 of the preset's ${base_mfu}")
endif()
