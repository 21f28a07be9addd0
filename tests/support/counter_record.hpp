// tests/support/counter_record.hpp — a minimal record with an owner and a number.
//
// For tests that only need a keyed record whose owner pid liveness can
// judge and one number to change (a counter, a version).
#pragma once

#include <procreg/record_traits.hpp>

#include <boost/describe/class.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace procreg_test {

/// A record keyed by `name`, owned by `pid`, carrying `count`.
struct counter_record {
    std::string name;
    std::uint32_t pid = 0;
    std::uint64_t count = 0;
};
BOOST_DESCRIBE_STRUCT(counter_record, (), (name, pid, count))

}  // namespace procreg_test

template <>
struct procreg::record_traits<procreg_test::counter_record> {
    static std::string_view key(const procreg_test::counter_record& r) noexcept { return r.name; }
    static std::uint32_t pid(const procreg_test::counter_record& r) noexcept { return r.pid; }
};
