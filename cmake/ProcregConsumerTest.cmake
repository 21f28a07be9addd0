# ProcregConsumerTest.cmake — build and run a small program that uses procreg
# the way a downstream project would.
#
#   cmake -D PARAMS_FILE=<file> -P ProcregConsumerTest.cmake
#
# PARAMS_FILE (written by tests/CMakeLists.txt) sets:
#   MODE                find_package | add_subdirectory | pkg_config | fetch_content
#   PROCREG_SOURCE_DIR  the procreg source tree under test
#   CONSUMER_DIR        the consumer project (a CMakeLists.txt building
#                       ../main.cpp); for pkg_config, the directory of main.cpp
#   WORK_DIR            scratch directory, wiped first
#   GENERATOR           CMake generator to use for the nested builds
#   CXX_COMPILER        C++ compiler to use
#   BOOST_DIR           Boost_DIR of the outer build (may be empty)
#
# find_package:     configure procreg (tests etc. OFF), install it into
#                   WORK_DIR/prefix, build CONSUMER_DIR against it with
#                   CMAKE_PREFIX_PATH, run the program.
# add_subdirectory: build CONSUMER_DIR with -DPROCREG_SOURCE_DIR=..., run it.
# pkg_config:       install as for find_package, compile CONSUMER_DIR/main.cpp
#                   with the flags from `pkg-config --cflags --libs procreg`,
#                   run it. Skipped (PROCREG_CONSUMER_SKIPPED) without
#                   pkg-config.
# fetch_content:    build CONSUMER_DIR, which fetches procreg with
#                   FetchContent from the git repository PROCREG_SOURCE_DIR at
#                   its HEAD commit (so: committed changes only), run it.
#                   Skipped without git or outside a git work tree.
cmake_minimum_required(VERSION 3.16)

if(NOT PARAMS_FILE OR NOT EXISTS "${PARAMS_FILE}")
  message(FATAL_ERROR "ProcregConsumerTest: PARAMS_FILE='${PARAMS_FILE}' does not exist")
endif()
include("${PARAMS_FILE}")

# The environment of whoever runs ctest must not leak into the nested builds.
unset(ENV{DESTDIR})
unset(ENV{CMAKE_PREFIX_PATH})
unset(ENV{PKG_CONFIG_PATH})
unset(ENV{MAKEFLAGS})
unset(ENV{MFLAGS})

function(run_step what)
  string(REPLACE ";" " " text "${ARGN}")
  message(STATUS "[${what}] ${text}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "FAIL: step '${what}' failed (${rc}):\n${text}\n${out}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

set(common_args -G "${GENERATOR}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
                -DCMAKE_BUILD_TYPE=Debug -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON)
if(BOOST_DIR)
  list(APPEND common_args "-DBoost_DIR=${BOOST_DIR}")
endif()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")

macro(install_procreg)
  run_step("configure procreg" "${CMAKE_COMMAND}" -S "${PROCREG_SOURCE_DIR}" -B "${WORK_DIR}/procreg-build"
    ${common_args} "-DCMAKE_INSTALL_PREFIX=${prefix}"
    -DPROCREG_BUILD_TESTS=OFF -DPROCREG_BUILD_EXAMPLES=OFF -DPROCREG_BUILD_BENCH=OFF
    -DPROCREG_JSON_HEADER_ONLY=OFF)
  run_step("build procreg" "${CMAKE_COMMAND}" --build "${WORK_DIR}/procreg-build")
  run_step("install procreg" "${CMAKE_COMMAND}" --install "${WORK_DIR}/procreg-build")
  foreach(f IN ITEMS include/procreg/version.hpp
                     share/cmake/procreg/procregConfig.cmake
                     share/cmake/procreg/procregConfigVersion.cmake
                     share/cmake/procreg/procregTargets.cmake
                     share/pkgconfig/procreg.pc)
    if(NOT EXISTS "${prefix}/${f}")
      message(FATAL_ERROR "FAIL: installed tree lacks ${f}")
    endif()
  endforeach()
endmacro()

function(run_program exe)
  message(STATUS "[run] ${exe}")
  execute_process(COMMAND "${exe}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out TIMEOUT 120)
  message(STATUS "program output:\n${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "FAIL: ${exe} exited with ${rc}")
  endif()
endfunction()

# Find the consumer program in a single- or multi-config build tree.
function(find_program_in dir out)
  foreach(candidate "${dir}/procreg_consumer" "${dir}/Debug/procreg_consumer")
    if(EXISTS "${candidate}")
      set(${out} "${candidate}" PARENT_SCOPE)
      return()
    endif()
  endforeach()
  message(FATAL_ERROR "FAIL: no procreg_consumer program was built in ${dir}")
endfunction()

# A consumer test that cannot run here is skipped, visibly (ctest lists it
# as "Skipped"); under CI (CI set in the environment) a skip is a failure,
# since CI installs everything the tests need.
function(consumer_skip reason)
  if(DEFINED ENV{CI} AND NOT "$ENV{CI}" STREQUAL "" AND NOT "$ENV{CI}" STREQUAL "false")
    message(FATAL_ERROR "FAIL: unexpected skip under CI: ${reason}")
  endif()
  message("PROCREG_CONSUMER_SKIPPED: ${reason}")
endfunction()

if(MODE STREQUAL "find_package")
  install_procreg()
  set(build "${WORK_DIR}/consumer-build")
  run_step("configure consumer" "${CMAKE_COMMAND}" -S "${CONSUMER_DIR}" -B "${build}"
    ${common_args} "-DCMAKE_PREFIX_PATH=${prefix}")
  # Make sure it was the freshly installed package that was found.
  file(STRINGS "${build}/CMakeCache.txt" found_dir REGEX "^procreg_DIR:")
  string(REGEX REPLACE "^procreg_DIR:[A-Z]+=" "" found_dir "${found_dir}")
  get_filename_component(found_dir "${found_dir}" REALPATH)
  get_filename_component(real_prefix "${prefix}" REALPATH)
  string(FIND "${found_dir}" "${real_prefix}/" pos)
  if(NOT pos EQUAL 0)
    message(FATAL_ERROR "FAIL: find_package(procreg) found '${found_dir}', not the package installed in ${prefix}")
  endif()
  run_step("build consumer" "${CMAKE_COMMAND}" --build "${build}" --config Debug)
  find_program_in("${build}" exe)
  run_program("${exe}")

elseif(MODE STREQUAL "add_subdirectory")
  set(build "${WORK_DIR}/consumer-build")
  run_step("configure consumer" "${CMAKE_COMMAND}" -S "${CONSUMER_DIR}" -B "${build}"
    ${common_args} "-DPROCREG_SOURCE_DIR=${PROCREG_SOURCE_DIR}")
  run_step("build consumer" "${CMAKE_COMMAND}" --build "${build}" --config Debug)
  find_program_in("${build}" exe)
  run_program("${exe}")

elseif(MODE STREQUAL "pkg_config")
  find_program(PKG_CONFIG_EXE NAMES pkg-config pkgconf)
  if(NOT PKG_CONFIG_EXE)
    consumer_skip("pkg-config is not installed")
    return()
  endif()
  install_procreg()
  set(ENV{PKG_CONFIG_PATH} "${prefix}/share/pkgconfig")
  run_step("pkg-config" "${PKG_CONFIG_EXE}" --cflags --libs procreg)
  string(STRIP "${step_output}" flags)
  separate_arguments(flags UNIX_COMMAND "${flags}")
  string(FIND "${flags}" "-I${prefix}/include" pos)
  if(pos EQUAL -1)
    message(FATAL_ERROR "FAIL: pkg-config flags '${flags}' lack -I${prefix}/include")
  endif()
  set(exe "${WORK_DIR}/procreg_consumer")
  run_step("compile consumer" "${CXX_COMPILER}" -std=c++17 "${CONSUMER_DIR}/main.cpp" -o "${exe}" ${flags})
  run_program("${exe}")

elseif(MODE STREQUAL "fetch_content")
  unset(ENV{GIT_DIR})
  unset(ENV{GIT_WORK_TREE})
  find_program(GIT_EXE NAMES git)
  if(NOT GIT_EXE)
    consumer_skip("git is not installed")
    return()
  endif()
  execute_process(COMMAND "${GIT_EXE}" -C "${PROCREG_SOURCE_DIR}" rev-parse --show-toplevel
    RESULT_VARIABLE rc OUTPUT_VARIABLE toplevel ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
  get_filename_component(real_source "${PROCREG_SOURCE_DIR}" REALPATH)
  if(rc EQUAL 0)
    get_filename_component(toplevel "${toplevel}" REALPATH)
  endif()
  if(NOT rc EQUAL 0 OR NOT toplevel STREQUAL real_source)
    consumer_skip("${PROCREG_SOURCE_DIR} is not the top of a git work tree")
    return()
  endif()
  run_step("git rev-parse HEAD" "${GIT_EXE}" -C "${PROCREG_SOURCE_DIR}" rev-parse HEAD)
  string(STRIP "${step_output}" head)
  run_step("git status" "${GIT_EXE}" -C "${PROCREG_SOURCE_DIR}" status --porcelain --untracked-files=no)
  if(NOT step_output STREQUAL "")
    message(STATUS "note: the work tree has uncommitted changes; FetchContent tests the committed HEAD ${head}")
  endif()
  set(build "${WORK_DIR}/consumer-build")
  run_step("configure consumer" "${CMAKE_COMMAND}" -S "${CONSUMER_DIR}" -B "${build}" ${common_args}
    "-DPROCREG_GIT_REPOSITORY=file://${real_source}" "-DPROCREG_GIT_TAG=${head}"
    -DFETCHCONTENT_QUIET=OFF -DFETCHCONTENT_FULLY_DISCONNECTED=OFF -DFETCHCONTENT_UPDATES_DISCONNECTED=OFF)
  # Make sure the program was built from the fetched clone at HEAD, not
  # from the source tree itself.
  set(clone "${build}/_deps/procreg-src")
  if(NOT EXISTS "${clone}/.git")
    message(FATAL_ERROR "FAIL: FetchContent left no git clone in ${clone}")
  endif()
  run_step("git rev-parse HEAD (clone)" "${GIT_EXE}" -C "${clone}" rev-parse HEAD)
  string(STRIP "${step_output}" cloned)
  if(NOT cloned STREQUAL head)
    message(FATAL_ERROR "FAIL: the fetched clone is at ${cloned}, not at ${head}")
  endif()
  run_step("build consumer" "${CMAKE_COMMAND}" --build "${build}" --config Debug)
  find_program_in("${build}" exe)
  run_program("${exe}")

else()
  message(FATAL_ERROR "ProcregConsumerTest: unknown MODE '${MODE}'")
endif()

message(STATUS "PASS: consumer.${MODE}")
