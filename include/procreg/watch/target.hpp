// procreg/watch/target.hpp — what a storage tells a watcher to look at.
//
// A change source is a storage capability: a storage that keeps its records
// in local directories offers `watch_targets()`, the directories whose
// entries hold its records and which names among them matter. The watcher
// (procreg/watch/watcher.hpp) watches each directory — never a file, since
// the atomic replace swaps the file's inode — and names no storage itself.
//
// A storage without local directories is a change source of another kind:
// it offers a change feed (`open_change_feed()`, detail/policy_checks.hpp),
// whose `drain()` says what changed (`change_news`) and whose `fd()` polls
// readable when it may have news.
//
// Invariant: every file whose appearance, replacement or removal changes
// what a transaction reads lies in one of the targets and matches its filter;
// a change feed reports every change after it was opened.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace procreg {

/// One directory a storage keeps records in, and which of its entries matter.
struct watch_target {
    /// The directory (watched itself; its parent is watched for its replacement).
    std::filesystem::path directory;
    /// The one entry that matters (json_table's file, a claim file); empty: see `suffix`.
    std::string name;
    /// With `name` empty: every entry not starting with '.' (temp files,
    /// lock files) whose name ends with this (record_files' `.json`).
    std::string suffix;

    /// Whether a change of the entry `entry` may change what is read.
    bool matches(std::string_view entry) const noexcept {
        if (!name.empty()) return entry == name;
        if (entry.empty() || entry.front() == '.') return false;
        return entry.size() >= suffix.size() && entry.substr(entry.size() - suffix.size()) == suffix;
    }
};

/// What a storage's change feed reports when drained (the other kind of
/// change source: a storage without local directories, such as
/// storage::etcd_store, streams its changes instead; detail::has_change_feed).
struct change_news {
    /// Some record may have changed: read the state again.
    bool changed = false;
    /// The feed lost track (its history was compacted away): read the whole
    /// state again, as after a lost inotify watch.
    bool resync = false;
    /// Keys removed because their owner ended (its lease expired or was
    /// revoked): reported owner_died, then removed.
    std::vector<std::string> owner_gone;
};

namespace detail {

/// Whether `Storage` is a change source (offers `watch_targets()`).
template <class Storage, class = void>
struct is_change_source : std::false_type {};
template <class Storage>
struct is_change_source<Storage, std::void_t<decltype(std::vector<watch_target>(
                                     std::declval<const Storage&>().watch_targets()))>> : std::true_type {};

/// Whether a liveness policy can watch an owner (offers `watch_owner(pid)`
/// returning a descriptor that polls readable when the owner exits, or -1).
template <class Liveness, class = void>
struct can_watch_owner : std::false_type {};
template <class Liveness>
struct can_watch_owner<Liveness, std::void_t<decltype(int(std::declval<const Liveness&>().watch_owner(0u)))>>
    : std::true_type {};

/// A visitor accepting anything, to detect visiting members.
struct ignore_visit {
    template <class T>
    void operator()(const T&) const noexcept {}
};

/// Whether a session lists its tombstones (offers `for_each_retired(visit)`).
template <class Session, class = void>
struct lists_retired : std::false_type {};
template <class Session>
struct lists_retired<Session,
                     std::void_t<decltype(std::declval<const Session&>().for_each_retired(ignore_visit{}))>>
    : std::true_type {};

}  // namespace detail
}  // namespace procreg
