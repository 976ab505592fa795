# Installs the built tree into a scratch prefix and runs the installed tessera-train --help with no
# LD_LIBRARY_PATH: the programs must find libtessera (and every dependency found outside the
# system's folders) through their install RPATH.
set(prefix ${BINARY_DIR}/installed_program/prefix)
file(REMOVE_RECURSE ${BINARY_DIR}/installed_program)
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BINARY_DIR} --prefix ${prefix} RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "cmake --install failed (${rc})")
endif()
if(NOT EXISTS ${prefix}/bin/tessera-train)
  message(FATAL_ERROR "cmake --install put no tessera-train into ${prefix}/bin")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E env --unset=LD_LIBRARY_PATH ${prefix}/bin/tessera-train --help
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc OR NOT out MATCHES "--model")
  message(FATAL_ERROR "the installed tessera-train --help failed without LD_LIBRARY_PATH (${rc}):\n${out}${err}")
endif()
message(STATUS "installed tessera-train --help ran from ${prefix}/bin with no LD_LIBRARY_PATH")
