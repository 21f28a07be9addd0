# etcd tests (issue 20; label etcd): the etcd storage and lease liveness
# against real members the tests start themselves on loopback ports
# (tests/support/etcd_cluster.hpp). PROCREG_ETCD_TESTS defaults to ON when
# the etcd binary is found; when it is OFF or etcd is missing, one test
# (etcd.MISSING) fails saying so: never a silent skip. `./run test`
# installs Debian's etcd-server.
find_program(PROCREG_ETCD_EXECUTABLE etcd)
if(PROCREG_ETCD_EXECUTABLE)
  set(_procreg_etcd_default ON)
else()
  set(_procreg_etcd_default OFF)
endif()
option(PROCREG_ETCD_TESTS "Build the etcd tests (need the etcd binary)" ${_procreg_etcd_default})
if(PROCREG_ETCD_TESTS AND PROCREG_ETCD_EXECUTABLE)
  foreach(_procreg_etcd_program IN ITEMS etcd etcd_cluster etcd_seed etcd_watch)
    procreg_add_boost_test(NAME ${_procreg_etcd_program} SOURCES etcd/${_procreg_etcd_program}_test.cpp
                           LABELS etcd TIMEOUT 600)
    target_compile_definitions(test_${_procreg_etcd_program} PRIVATE
                               PROCREG_ETCD_BINARY="${PROCREG_ETCD_EXECUTABLE}")
  endforeach()
else()
  add_test(NAME etcd.MISSING COMMAND sh -c
           "echo 'etcd tests not built: the etcd binary is missing or PROCREG_ETCD_TESTS is OFF (apt-get install etcd-server, then configure again)' >&2; exit 1")
  set_tests_properties(etcd.MISSING PROPERTIES LABELS etcd)
endif()

# The procreg tool on etcd:// paths (labels etcd and cli).
if(PROCREG_ETCD_TESTS AND PROCREG_ETCD_EXECUTABLE AND TARGET procreg_tool)
  procreg_add_boost_test(NAME etcd_cli SOURCES etcd/etcd_cli_test.cpp LABELS etcd cli TIMEOUT 600)
  add_dependencies(test_etcd_cli procreg_tool)
  target_compile_definitions(test_etcd_cli PRIVATE PROCREG_ETCD_BINARY="${PROCREG_ETCD_EXECUTABLE}"
                             "PROCREG_TOOL=\"$<TARGET_FILE:procreg_tool>\"")
endif()
