# ProcregHelpers.cmake — small functions shared by procreg's CMake code: the
# configure step (CMakeLists.txt, tests/CMakeLists.txt, tests/interop/) and
# the -P scripts run at build or test time (ProcregDiscoverTests.cmake).
include_guard(GLOBAL)

# Quote any string as a CMake bracket argument (for generated .cmake files).
function(_procreg_bracket out value)
  set(eq "=")
  while(value MATCHES "]${eq}]" OR value MATCHES "]${eq}$")
    string(APPEND eq "=")
  endwhile()
  set(${out} "[${eq}[${value}]${eq}]" PARENT_SCOPE)
endfunction()

# Write <file> only when its content changes (no needless rebuilds/reruns).
function(_procreg_write_if_changed file content)
  if(EXISTS "${file}")
    file(READ "${file}" old)
    if(old STREQUAL content)
      return()
    endif()
  endif()
  file(WRITE "${file}" "${content}")
endfunction()
