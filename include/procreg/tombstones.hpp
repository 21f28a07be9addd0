// procreg/tombstones.hpp — soft deletion, offered only by storages that keep it.
//
// Some storages keep soft-deleted ("retired") records beside the active ones
// (AgentMux's `retired/<id>.json`). The registry and the transaction offer
// retire / unretire / hard_delete / exists / exists_anywhere / list_active
// only when the storage says so, in the manner of folly::Synchronized
// offering rlock() only for shared mutexes: on any other storage these calls
// do not compile, and the error is one sentence naming what is missing.
//
// A storage opts in by declaring `static constexpr bool keeps_tombstones = true;`
// in the storage class and in its session class, and by giving the session
//     tombstone_result retire(std::string_view key);
//     tombstone_result unretire(std::string_view key);
//     bool hard_delete(std::string_view key);
//     bool exists(std::string_view key) const;
//     bool exists_anywhere(std::string_view key) const;
#pragma once

#include <procreg/stored_record.hpp>

#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace procreg {

/// What a retire or unretire did.
enum class tombstone_status {
    moved,      ///< the record moved (active → retired, or back)
    unchanged,  ///< nothing to move (already retired / already active / no such record): idempotent no-op
    skipped,    ///< refused: a file involved is one this program must not move or replace; see `skipped`
};

/// The result of a retire or unretire. Never silent: a refusal names the file and the reason.
struct tombstone_result {
    tombstone_status status = tombstone_status::unchanged;  ///< what happened
    std::optional<skipped_file> skipped;                    ///< set when `status == tombstone_status::skipped`
};

/// What `list_active()` returns: the valid active records, and every file
/// that was passed over with its reason (never silently hidden).
template <class Record>
struct active_listing {
    std::vector<Record> records;        ///< valid active records, in storage order
    std::vector<skipped_file> skipped;  ///< files passed over, each with why
};

/// The status's name, for logs: "moved", "unchanged" or "skipped".
inline const char* to_string(tombstone_status status) noexcept {
    switch (status) {
    case tombstone_status::moved: return "moved";
    case tombstone_status::unchanged: return "unchanged";
    case tombstone_status::skipped: return "skipped";
    }
    return "?";
}

/// True when `Storage` (a storage policy, or its session type) declares
/// `static constexpr bool keeps_tombstones = true`.
template <class Storage, class = void>
struct storage_keeps_tombstones : std::false_type {};
/// Detected: `Storage::keeps_tombstones`.
template <class Storage>
struct storage_keeps_tombstones<Storage, std::enable_if_t<Storage::keeps_tombstones>> : std::true_type {};

/// Shorthand for `storage_keeps_tombstones<Storage>::value`.
template <class Storage>
inline constexpr bool storage_keeps_tombstones_v = storage_keeps_tombstones<Storage>::value;

namespace detail {

template <class Session, class = void>
struct session_offers_tombstones : std::false_type {};
template <class Session>
struct session_offers_tombstones<
    Session,
    std::enable_if_t<
        std::is_same_v<decltype(std::declval<Session&>().retire(std::string_view{})), tombstone_result> &&
        std::is_same_v<decltype(std::declval<Session&>().unretire(std::string_view{})), tombstone_result> &&
        std::is_convertible_v<decltype(std::declval<Session&>().hard_delete(std::string_view{})), bool> &&
        std::is_convertible_v<decltype(std::declval<const Session&>().exists(std::string_view{})), bool> &&
        std::is_convertible_v<decltype(std::declval<const Session&>().exists_anywhere(std::string_view{})), bool>>>
    : std::true_type {};

/// Fails compilation with one sentence when a tombstone operation is used
/// on a registry whose storage keeps no tombstones.
template <class Storage>
constexpr bool check_tombstone_storage() {
    static_assert(storage_keeps_tombstones_v<Storage>,
                  "procreg: retire/unretire/hard_delete/exists/exists_anywhere/list_active need a storage "
                  "policy that keeps tombstones (such as storage::record_files), and this registry's storage "
                  "does not");
    return storage_keeps_tombstones_v<Storage>;
}

/// As `check_tombstone_storage`, for a session type; also fails when the
/// session claims tombstones but lacks one of their members.
template <class Session>
constexpr bool check_tombstone_session() {
    if constexpr (check_tombstone_storage<Session>()) {
        static_assert(session_offers_tombstones<Session>::value,
                      "procreg: the storage declares keeps_tombstones but its session lacks one of "
                      "retire(key), unretire(key), hard_delete(key), exists(key), exists_anywhere(key) "
                      "(see procreg/tombstones.hpp)");
    }
    return storage_keeps_tombstones_v<Session> && session_offers_tombstones<Session>::value;
}

}  // namespace detail
}  // namespace procreg
