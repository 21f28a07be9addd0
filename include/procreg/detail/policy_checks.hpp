// procreg/detail/policy_checks.hpp — one-sentence compile errors for misused policies.
//
// Each policy family's contract is checked by detection (expression SFINAE)
// and reported by a static_assert whose message names the missing member,
// in the manner of {fmt}'s `formatter` checks. tests/compile_fail proves
// each message fires.
#pragma once

#include <procreg/stored_record.hpp>

#include <boost/json/object.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>

namespace procreg::detail {

template <class Lock, class = void>
struct lock_has_lock : std::false_type {};
template <class Lock>
struct lock_has_lock<Lock, std::void_t<decltype(std::declval<Lock&>().lock())>> : std::true_type {};
template <class Lock, class = void>
struct lock_has_try_lock : std::false_type {};
template <class Lock>
struct lock_has_try_lock<Lock, std::enable_if_t<std::is_convertible_v<decltype(std::declval<Lock&>().try_lock()), bool>>>
    : std::true_type {};
template <class Lock, class = void>
struct lock_has_unlock : std::false_type {};
template <class Lock>
struct lock_has_unlock<Lock, std::void_t<decltype(std::declval<Lock&>().unlock())>> : std::true_type {};

template <class Lock>
constexpr bool check_lock_contract() {
    static_assert(lock_has_lock<Lock>::value, "procreg: the lock policy lacks a lock() member function");
    static_assert(lock_has_try_lock<Lock>::value,
                  "procreg: the lock policy lacks a try_lock() member function returning bool");
    static_assert(lock_has_unlock<Lock>::value, "procreg: the lock policy lacks an unlock() member function");
    return true;
}

template <class Liveness, class = void>
struct liveness_has_probe : std::false_type {};
template <class Liveness>
struct liveness_has_probe<
    Liveness, std::enable_if_t<std::is_convertible_v<decltype(std::declval<const Liveness&>().is_alive(
                                                         std::uint64_t{}, std::declval<const boost::json::object&>())),
                                                     bool>>> : std::true_type {};
template <class Liveness, class = void>
struct liveness_has_stamp : std::false_type {};
template <class Liveness>
struct liveness_has_stamp<Liveness, std::void_t<decltype(std::declval<const Liveness&>().stamp_identity(
                                        std::uint64_t{}, std::declval<boost::json::object&>()))>>
    : std::true_type {};

template <class Liveness>
constexpr bool check_liveness_contract() {
    static_assert(liveness_has_probe<Liveness>::value,
                  "procreg: the liveness policy lacks bool is_alive(std::uint64_t pid, const boost::json::object& "
                  "stored) const");
    static_assert(liveness_has_stamp<Liveness>::value,
                  "procreg: the liveness policy lacks void stamp_identity(std::uint64_t pid, boost::json::object& "
                  "stored) const");
    return true;
}

template <class Storage, class Record, class = void>
struct storage_has_begin : std::false_type {};
template <class Storage, class Record>
struct storage_has_begin<Storage, Record, std::void_t<decltype(std::declval<Storage&>().template begin<Record>())>>
    : std::true_type {};

/// The storage's session type, or `invalid_session` when the storage has no
/// begin<Record>() — so that only the static_assert reports the mistake.
struct invalid_session {};
template <class Storage, class Record, class = void>
struct session_of {
    using type = invalid_session;
};
template <class Storage, class Record>
struct session_of<Storage, Record, std::void_t<decltype(std::declval<Storage&>().template begin<Record>())>> {
    using type = decltype(std::declval<Storage&>().template begin<Record>());
};

// The storage contract (docs/design.md, "The storage contract"): what every
// session must have, then the capabilities a storage may add, each detected.

template <class Session, class Record, class = void>
struct session_is_complete : std::false_type {};
template <class Session, class Record>
struct session_is_complete<
    Session, Record,
    std::void_t<decltype(std::declval<const Session&>().find(std::string_view{})),
                decltype(std::declval<const Session&>().for_each(
                    std::declval<void (&)(const stored_record<Record>&)>())),
                decltype(std::declval<Session&>().put(std::declval<stored_record<Record>>())),
                decltype(std::declval<Session&>().erase(std::string_view{})),
                decltype(std::declval<const Session&>().size()), decltype(std::declval<Session&>().commit())>>
    : std::true_type {};

/// Capability: the session reports entries it passed over while reading
/// (`const std::vector<skipped_file>& skipped() const`): file-per-record
/// storages, which list around a file they cannot read instead of failing.
template <class Session, class = void>
struct session_reports_skipped : std::false_type {};
template <class Session>
struct session_reports_skipped<Session, std::void_t<decltype(std::declval<const Session&>().skipped())>>
    : std::true_type {};

/// Capability: the session names where its data lives, for messages
/// (`path() const`); errors carry an empty path otherwise.
template <class Session, class = void>
struct session_has_path : std::false_type {};
template <class Session>
struct session_has_path<Session, std::void_t<decltype(std::declval<const Session&>().path())>> : std::true_type {};

/// Where `session`'s data lives, or an empty path when it cannot say.
template <class Session>
std::filesystem::path location_of(const Session& session) {
    if constexpr (session_has_path<Session>::value) {
        return session.path();
    } else {
        (void)session;
        return {};
    }
}

/// Capability: the storage has a lock file (`lock_path() const`), from
/// which the registry builds a file lock.
template <class Storage, class = void>
struct has_lock_path : std::false_type {};
template <class Storage>
struct has_lock_path<Storage, std::void_t<decltype(std::declval<const Storage&>().lock_path())>> : std::true_type {};

/// The storage's lock file for messages, or an empty path when it has none.
template <class Storage>
std::filesystem::path lock_location_of(const Storage& storage) {
    if constexpr (has_lock_path<Storage>::value) {
        return storage.lock_path();
    } else {
        (void)storage;
        return {};
    }
}

/// Whether a session can stage a record's file without looking it up first
/// (`std::optional<bool> create_if_absent(stored_record<Record>)`): the
/// create-if-absent capability, which `registry::insert` uses.
template <class Session, class Record, class = void>
struct session_creates_if_absent : std::false_type {};
template <class Session, class Record>
struct session_creates_if_absent<
    Session, Record,
    std::void_t<decltype(std::declval<Session&>().create_if_absent(std::declval<stored_record<Record>>()))>>
    : std::true_type {};

/// Whether `Storage` offers `lock_location()`: its lock file reached
/// through its own directory descriptor (detail/located_file.hpp), which a
/// registry prefers over `lock_path()`. A capability, not part of the contract.
template <class Storage, class = void>
struct has_lock_location : std::false_type {};
template <class Storage>
struct has_lock_location<Storage, std::void_t<decltype(std::declval<const Storage&>().lock_location())>>
    : std::true_type {};

template <class Storage, class Record>
constexpr bool check_storage_contract() {
    static_assert(storage_has_begin<Storage, Record>::value,
                  "procreg: the storage policy lacks template <class Record> session<Record> begin()");
    if constexpr (storage_has_begin<Storage, Record>::value) {
        using session = decltype(std::declval<Storage&>().template begin<Record>());
        static_assert(session_is_complete<session, Record>::value,
                      "procreg: the storage policy's session lacks one of find(key), for_each(visit), "
                      "put(stored_record), erase(key), size(), commit() (see docs/design.md)");
    }
    return true;
}

}  // namespace procreg::detail
