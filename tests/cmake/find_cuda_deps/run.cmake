# Checks tessera's cuDNN/NCCL search against fake layouts of empty stub files:
#  - the Python wheels' layout (site-packages/nvidia/{cudnn,nccl}/{include,lib}, versioned sonames only),
#    found through the interpreter given by TESSERA_PYTHON with PYTHONPATH pointing at the fake site;
#  - CUDNN_ROOT / NCCL_ROOT, which win over the toolkit and the wheels;
#  - the toolkit, which wins over the wheels;
#  - nothing anywhere: the configure fails naming CUDNN_ROOT and the wheel to install;
#  - cuDNN's frontend headers from the nvidia-cudnn-frontend wheel's layout; without them the
#    configure fails unless TESSERA_CUDNN_ATTENTION=OFF.
# usage: cmake -DSOURCE_DIR=... -DWORK_DIR=... -DPYTHON=python3 -P run.cmake
file(REMOVE_RECURSE ${WORK_DIR})
set(site ${WORK_DIR}/site-packages)
set(root ${WORK_DIR}/roots)
set(toolkit ${WORK_DIR}/toolkit)
function(stub path)
  file(WRITE ${path} "${ARGN}")
endfunction()
set(cudnn_version "#define CUDNN_MAJOR 9\n#define CUDNN_MINOR 26\n#define CUDNN_PATCHLEVEL 1\n")
set(nccl_version "#define NCCL_MAJOR 2\n#define NCCL_MINOR 30\n#define NCCL_PATCH 7\n")
stub(${site}/nvidia/cudnn/include/cudnn.h "")
stub(${site}/nvidia/cudnn/include/cudnn_version.h "${cudnn_version}")
stub(${site}/nvidia/cudnn/lib/libcudnn.so.9 "")
stub(${site}/nvidia/nccl/include/nccl.h "${nccl_version}")
stub(${site}/nvidia/nccl/lib/libnccl.so.2 "")
set(frontend_site ${WORK_DIR}/frontend-site)  # the nvidia-cudnn-frontend wheel: cudnn/ and include/
stub(${frontend_site}/cudnn/__init__.py "")
stub(${frontend_site}/include/cudnn_frontend.h "")
stub(${frontend_site}/include/cudnn_frontend_version.h "#define CUDNN_FRONTEND_MAJOR_VERSION 1\n"
     "#define CUDNN_FRONTEND_MINOR_VERSION 16\n#define CUDNN_FRONTEND_PATCH_VERSION 0\n")
stub(${root}/cudnn/include/cudnn.h "")
stub(${root}/cudnn/lib64/libcudnn.so "")
stub(${root}/nccl/include/nccl.h "")
stub(${root}/nccl/lib/x86_64-linux-gnu/libnccl.so "")
stub(${toolkit}/include/cudnn.h "")
stub(${toolkit}/lib/libcudnn.so "")
stub(${toolkit}/include/nccl.h "")
stub(${toolkit}/lib/libnccl.so "")

# configure(<name> <pythonpath> <NCCL_ROOT in the environment> <extra -D args...>): sets rc, log and
# found (found.txt).
function(configure name pythonpath nccl_root_env)
  set(build ${WORK_DIR}/build-${name})
  set(ENV{PYTHONPATH} "${pythonpath}")
  unset(ENV{CUDNN_ROOT})
  set(ENV{NCCL_ROOT} "${nccl_root_env}")
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/cmake/find_cuda_deps -B ${build}
                          -DTESSERA_SOURCE_DIR=${SOURCE_DIR} -DTESSERA_PYTHON=${PYTHON} ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(log "${out}${err}" PARENT_SCOPE)
  set(rc ${rc} PARENT_SCOPE)
  set(found "")
  if(EXISTS ${build}/found.txt)
    file(READ ${build}/found.txt found)
  endif()
  set(found "${found}" PARENT_SCOPE)
endfunction()
function(expect name text pattern)
  if(NOT text MATCHES "${pattern}")
    message(FATAL_ERROR "${name}: expected to match '${pattern}', got:\n${text}")
  endif()
  message(STATUS "${name}: ok (${pattern})")
endfunction()

# 1. Wheels only (no toolkit copy): the versioned sonames under site-packages/nvidia, with versions.
configure(wheels "${site}:${frontend_site}" "" -DFAKE_TOOLKIT=${WORK_DIR}/no-toolkit)
expect("wheels: configure" "${rc}" "^0$")
expect("wheels: cuDNN" "${found}" "cudnn=${site}/nvidia/cudnn/lib/libcudnn.so.9\ncudnn_origin=the Python wheel nvidia-cudnn-cu13")
expect("wheels: NCCL" "${found}" "nccl=${site}/nvidia/nccl/lib/libnccl.so.2\nnccl_origin=the Python wheel nvidia-nccl-cu13")
expect("wheels: versions" "${found}" "cudnn_version=9.26.1\n.*nccl_version=2.30.7\n")
expect("wheels: frontend" "${found}" "attention=ON\nfrontend=${frontend_site}/include\n")
expect("wheels: frontend printed" "${log}" "cuDNN frontend 1.16.0: ${frontend_site}/include \\(from the Python wheel")
expect("wheels: printed origin" "${log}" "cuDNN 9.26.1: ${site}/nvidia/cudnn/lib/libcudnn.so.9 \\(from the Python wheel")

# 2. The toolkit wins over the wheels.
configure(toolkit "${site}:${frontend_site}" "" -DFAKE_TOOLKIT=${toolkit})
expect("toolkit: cuDNN" "${found}" "cudnn=${toolkit}/lib/libcudnn.so\ncudnn_origin=the CUDA toolkit")

# 3. CUDNN_ROOT (a CMake variable) and NCCL_ROOT (an environment variable) win over both.
configure(roots "${site}:${frontend_site}" ${root}/nccl -DFAKE_TOOLKIT=${toolkit} -DCUDNN_ROOT=${root}/cudnn)
expect("roots: cuDNN" "${found}" "cudnn=${root}/cudnn/lib64/libcudnn.so\ncudnn_origin=CUDNN_ROOT=${root}/cudnn")
expect("roots: NCCL" "${found}" "nccl=${root}/nccl/lib/x86_64-linux-gnu/libnccl.so\nnccl_origin=NCCL_ROOT=")

# 4. Nowhere: a clear error (unless this machine's system folders hold cuDNN, then that is found).
configure(nowhere "${WORK_DIR}/empty" "" -DFAKE_TOOLKIT=${WORK_DIR}/no-toolkit)
if(rc)
  expect("nowhere: error" "${log}" "cuDNN not found.*nvidia-cudnn-cu13.*CUDNN_ROOT")
else()
  expect("nowhere: system" "${found}" "cudnn_origin=the system's default folders")
endif()

# 5. No cuDNN frontend: an error naming -DTESSERA_CUDNN_ATTENTION=OFF; with it OFF, the configure passes.
configure(no-frontend ${site} "" -DFAKE_TOOLKIT=${WORK_DIR}/no-toolkit)
expect("no frontend: configure fails" "${rc}" "^[1-9]")
expect("no frontend: error" "${log}" "cudnn_frontend.h not found.*-DTESSERA_CUDNN_ATTENTION=OFF")
configure(attention-off ${site} "" -DFAKE_TOOLKIT=${WORK_DIR}/no-toolkit -DTESSERA_CUDNN_ATTENTION=OFF)
expect("attention off: configure" "${rc}" "^0$")
expect("attention off" "${found}" "attention=OFF")
