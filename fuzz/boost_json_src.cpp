// fuzz/boost_json_src.cpp — Boost.JSON's implementation, compiled into the fuzzers.
//
// The fuzzers do not link the system's libboost_json: that library is not
// instrumented, so libFuzzer would see no coverage inside the JSON parser
// and the sanitizers would not check it. Boost.JSON's documented
// header-only mode compiles it here once, with the fuzzers' flags.
#include <boost/json/src.hpp>
