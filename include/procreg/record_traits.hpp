// procreg/record_traits.hpp — how procreg learns what a record is.
//
// A record type becomes usable by specializing `procreg::record_traits`:
//
//     template <> struct procreg::record_traits<my_worker> {
//         static std::string_view key(const my_worker& w) { return w.name; }
//         static std::uint64_t pid(const my_worker& w) { return w.pid; }
//     };
//
// and by being convertible to and from JSON with Boost.JSON — either
// `BOOST_DESCRIBE_STRUCT(my_worker, (), (name, pid, ...))` (unknown keys on
// disk are then ignored, missing `std::optional` members read as empty) or
// `tag_invoke(value_from_tag, ...)` / `tag_invoke(value_to_tag<my_worker>, ...)`.
//
// The primary template is deliberately undefined in content: its
// `procreg_record_traits_not_specialized` marker is how procreg detects a
// missing specialization and says so in one sentence at compile time.
#pragma once

#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>

#include <cstdint>
#include <string_view>
#include <type_traits>
#include <utility>

namespace procreg {

/// Specialize for each record type: `key(const R&)` returns something
/// convertible to `std::string_view` that identifies the record uniquely in
/// its registry, and `pid(const R&)` returns the owning process id as an
/// unsigned or signed integer.
template <class Record>
struct record_traits {
    /// Marker of the unspecialized template; never define it in a specialization.
    using procreg_record_traits_not_specialized = void;
};

namespace detail {

template <class T, class = void>
struct is_traits_specialized : std::true_type {};
template <class T>
struct is_traits_specialized<T, std::void_t<typename record_traits<T>::procreg_record_traits_not_specialized>>
    : std::false_type {};

template <class T, class = void>
struct traits_has_key : std::false_type {};
template <class T>
struct traits_has_key<T, std::void_t<decltype(std::string_view(record_traits<T>::key(std::declval<const T&>())))>>
    : std::true_type {};

template <class T, class = void>
struct traits_has_pid : std::false_type {};
template <class T>
struct traits_has_pid<T, std::enable_if_t<std::is_integral_v<decltype(record_traits<T>::pid(std::declval<const T&>()))>>>
    : std::true_type {};

/// Fails compilation with one sentence per missing piece of `Record`'s contract.
template <class Record>
constexpr bool check_record_contract() {
    static_assert(is_traits_specialized<Record>::value,
                  "procreg: no record_traits<Record> specialization; specialize procreg::record_traits<Record> "
                  "with static key(const Record&) and pid(const Record&)");
    if constexpr (is_traits_specialized<Record>::value) {
        static_assert(traits_has_key<Record>::value,
                      "procreg: record_traits<Record> lacks static key(const Record&) returning something "
                      "convertible to std::string_view");
        static_assert(traits_has_pid<Record>::value,
                      "procreg: record_traits<Record> lacks static pid(const Record&) returning an integer");
    }
    static_assert(boost::json::has_value_from<Record>::value,
                  "procreg: Record cannot be converted to JSON; add BOOST_DESCRIBE_STRUCT(Record, ...) or a "
                  "tag_invoke(boost::json::value_from_tag, ...) overload");
    static_assert(boost::json::has_value_to<Record>::value,
                  "procreg: Record cannot be converted from JSON; add BOOST_DESCRIBE_STRUCT(Record, ...) or a "
                  "tag_invoke(boost::json::value_to_tag<Record>, ...) overload");
    return true;
}

/// The record's pid widened to 64 bits; a negative pid maps to a huge value,
/// which every liveness policy treats as dead.
template <class Record>
std::uint64_t pid_of(const Record& record) {
    return static_cast<std::uint64_t>(record_traits<Record>::pid(record));
}

template <class Record>
std::string_view key_of(const Record& record) {
    return std::string_view(record_traits<Record>::key(record));
}

}  // namespace detail
}  // namespace procreg
