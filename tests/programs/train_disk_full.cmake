# A disk that fills: checkpoints go to a small tmpfs (mounted here, as root) partly taken by a filler
# file. The save that does not fit is never committed, `latest` is untouched, no temporary directory
# is left, and the error names the file and the free space. With --on-save-error continue training
# goes on and, once the filler is removed, a later save succeeds and the run ends bitwise equal to
# an uninterrupted one; with --on-save-error stop the run ends with code 2 at the failed save.
# Where a tmpfs cannot be mounted (no CAP_SYS_ADMIN) the test says so and is skipped.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR}/disk)
execute_process(COMMAND mount -t tmpfs -o size=24m tmpfs ${WORK_DIR}/disk RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message("TESSERA-SKIP: cannot mount a 24 MB tmpfs for the full-disk test (needs root with CAP_SYS_ADMIN): ${err}")
  return()
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -DSOURCE_DIR=${SOURCE_DIR} -DBINARY_DIR=${BINARY_DIR} -DWORK_DIR=${WORK_DIR}
                        -DMPIEXEC=${MPIEXEC} -P ${SOURCE_DIR}/tests/support/disk_full_checks.cmake
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
execute_process(COMMAND umount ${WORK_DIR}/disk)
message("${out}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${err}")
endif()
