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
#include <cstddef>
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

/// Capability: the storage streams its changes (`open_change_feed()`, a
/// pointer to a feed with `int fd() const` and `change_news drain()`, see
/// watch/target.hpp), so a watcher learns of changes from the storage
/// itself instead of watching directories (storage/etcd_store.hpp).
template <class Storage, class = void>
struct has_change_feed : std::false_type {};
template <class Storage>
struct has_change_feed<Storage, std::void_t<decltype(std::declval<const Storage&>().open_change_feed()->drain()),
                                            decltype(int(std::declval<const Storage&>().open_change_feed()->fd()))>>
    : std::true_type {};

/// The storage's change feed (what `open_change_feed()` returns), or
/// std::nullptr_t for a storage without one.
template <class Storage, class = void>
struct change_feed_of {
    using type = std::nullptr_t;
};
template <class Storage>
struct change_feed_of<Storage, std::enable_if_t<has_change_feed<Storage>::value>> {
    using type = decltype(std::declval<const Storage&>().open_change_feed());
};

/// Capability of a liveness policy: a record exists only while its owner
/// lives (`records_end_with_owner`, e.g. liveness::etcd_lease: the keys go
/// with the lease), so an owner's end is seen as its records' removal and
/// needs no watching of the owner.
template <class Liveness, class = void>
struct records_end_with_owner : std::false_type {};
template <class Liveness>
struct records_end_with_owner<Liveness, std::enable_if_t<Liveness::records_end_with_owner>> : std::true_type {};

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
