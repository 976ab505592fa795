# TESSERA_REQUIRE_GPU=1 turns the skip of a GPU test into a failure. With every GPU hidden
# (CUDA_VISIBLE_DEVICES empty), on any machine: a CUDA parity test and the GPU collectives report
# themselves skipped by default, and fail under TESSERA_REQUIRE_GPU=1.
# usage: cmake -DCUDA_TESTS=... -DPARALLEL_TESTS=... -DMPIEXEC=... -P require_gpu.cmake
function(run label expect_failure pattern)
  # The GPU check runs the suite with TESSERA_REQUIRE_GPU=1 set: each case sets its own.
  execute_process(COMMAND ${CMAKE_COMMAND} -E env --unset=TESSERA_REQUIRE_GPU --unset=TESSERA_REQUIRE_NCCL
                          CUDA_VISIBLE_DEVICES= ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(text "${out}${err}")
  if(expect_failure AND rc EQUAL 0)
    message(FATAL_ERROR "${label}: passed, but it had no GPU and TESSERA_REQUIRE_GPU=1:\n${text}")
  elseif(NOT expect_failure AND NOT rc EQUAL 0)
    message(FATAL_ERROR "${label}: failed (${rc}) without a GPU, where it should report itself skipped:\n${text}")
  endif()
  if(NOT text MATCHES "${pattern}")
    message(FATAL_ERROR "${label}: the output does not say '${pattern}':\n${text}")
  endif()
  message(STATUS "${label}: ok")
endfunction()

run("CUDA parity test, GPU hidden" FALSE "TESSERA-SKIP" ${CUDA_TESTS} "backend-ops: residual_forward")
run("CUDA parity test, GPU hidden, TESSERA_REQUIRE_GPU=1" TRUE "TESSERA_REQUIRE_GPU=1 but no GPU can be used"
    ${CMAKE_COMMAND} -E env TESSERA_REQUIRE_GPU=1 ${CUDA_TESTS} "backend-ops: residual_forward")
run("GPU collectives, GPU hidden" FALSE "worst failures on a rank: 0"
    ${MPIEXEC} -np 1 ${PARALLEL_TESTS} "collectives: the GPU backends the environment requires are here")
run("GPU collectives, GPU hidden, TESSERA_REQUIRE_GPU=1" TRUE "TESSERA_REQUIRE_GPU=1"
    ${MPIEXEC} -np 1 -x TESSERA_REQUIRE_GPU=1 ${PARALLEL_TESTS}
    "collectives: the GPU backends the environment requires are here")
run("GPU collectives, GPU hidden, TESSERA_REQUIRE_NCCL=1" TRUE "TESSERA_REQUIRE_NCCL=1"
    ${MPIEXEC} -np 1 -x TESSERA_REQUIRE_NCCL=1 ${PARALLEL_TESTS}
    "collectives: the GPU backends the environment requires are here")
