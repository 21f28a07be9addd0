# ProcregCompileFail.cmake — a compile-fail test.
#
#   cmake -D PARAMS_FILE=<file> -P ProcregCompileFail.cmake
#
# PARAMS_FILE (written by procreg_add_compile_fail_test() in
# tests/CMakeLists.txt) sets CXX_COMPILER, CXX_FLAGS (a list, e.g.
# -std=c++17 -fsyntax-only -I...), SOURCE and EXPECT (a CMake regex).
# Passes only if the compiler exits non-zero AND its output matches EXPECT.
cmake_minimum_required(VERSION 3.16)

if(NOT PARAMS_FILE OR NOT EXISTS "${PARAMS_FILE}")
  message(FATAL_ERROR "ProcregCompileFail: PARAMS_FILE='${PARAMS_FILE}' does not exist")
endif()
include("${PARAMS_FILE}")

# Plain ASCII quotes and no colour codes in diagnostics, so that regexes
# written as 'foo' match GCC's output in any locale.
set(ENV{LC_ALL} C)
set(ENV{LANG} C)
unset(ENV{GCC_COLORS})

set(cmd "${CXX_COMPILER}" ${CXX_FLAGS} -fdiagnostics-color=never "${SOURCE}")
string(REPLACE ";" " " cmd_text "${cmd}")
message(STATUS "Running: ${cmd_text}")
execute_process(
  COMMAND ${cmd}
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE out
  TIMEOUT 280)

if(rc EQUAL 0)
  message(FATAL_ERROR "FAIL: ${SOURCE} compiled, but it must not compile.\nCompiler output:\n${out}")
endif()
if(NOT rc MATCHES "^[0-9]+$")
  message(FATAL_ERROR "FAIL: could not run the compiler: ${rc}\n${out}")
endif()
if(NOT out MATCHES "${EXPECT}")
  message(FATAL_ERROR
    "FAIL: ${SOURCE} failed to compile (exit ${rc}) as expected, but the output does not match\n"
    "  EXPECT: ${EXPECT}\n"
    "Compiler output:\n${out}")
endif()
message(STATUS "PASS: compilation failed (exit ${rc}) and the output matches: ${EXPECT}")
