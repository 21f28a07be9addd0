// procreg/watch/event.hpp — what a watcher reports, and how it is computed.
//
// Informer style: a watcher keeps the last state it read (a `watch_snapshot`)
// and every event is the difference between that state and the next one
// read under the registry lock (`diff_snapshots`). So a burst of writes may
// be coalesced into one event per key, but the final state is never missed:
// after the last event of a resync, the snapshot is exactly what the
// registry held when it was read.
//
// Invariant: applying the events of one diff, in order, to `before` gives
// `after` (active records, retired records, and which owners are alive).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace procreg {

/// What happened to one key.
enum class watch_event_kind {
    added,       ///< a record appeared (record: the new one)
    changed,     ///< a record's stored JSON changed (record: the new one)
    removed,     ///< a record is gone (record: the last one seen)
    retired,     ///< a record moved to the retired tree (record_files; record: the retired one)
    unretired,   ///< a retired record came back (record_files; record: the active one)
    owner_died,  ///< the record stays but its owner is gone (record: the record; pid: the owner)
};

/// The kind's name, for logs.
inline const char* to_string(watch_event_kind kind) noexcept {
    switch (kind) {
    case watch_event_kind::added: return "added";
    case watch_event_kind::changed: return "changed";
    case watch_event_kind::removed: return "removed";
    case watch_event_kind::retired: return "retired";
    case watch_event_kind::unretired: return "unretired";
    case watch_event_kind::owner_died: return "owner_died";
    }
    return "?";
}

/// One event.
template <class Record>
struct watch_event {
    watch_event_kind kind = watch_event_kind::added;  ///< what happened
    std::string key;                ///< the record's key
    std::optional<Record> record;   ///< see watch_event_kind
    std::uint64_t pid = 0;          ///< the record's owner
    bool tombstone = false;         ///< `changed` / `removed` / `retired` of the retired copy only
};

/// One record as a watcher last saw it.
template <class Record>
struct watched_record {
    Record record;        ///< the decoded record
    std::string text;     ///< its stored JSON, serialized (what `changed` compares)
    std::uint64_t pid = 0;  ///< its owner
    bool alive = false;   ///< whether the owner was alive (active records only)
};

/// A registry's state as a watcher last read it.
template <class Record>
struct watch_snapshot {
    std::map<std::string, watched_record<Record>, std::less<>> active;   ///< active records by key
    std::map<std::string, watched_record<Record>, std::less<>> retired;  ///< retired records by key (record_files)

    /// The active record with `key`, or null.
    const watched_record<Record>* find(std::string_view key) const {
        const auto it = active.find(key);
        return it == active.end() ? nullptr : &it->second;
    }
};

/// Appends to `out` the events that turn `before` into `after`, key by key
/// in key order; for one key: the active transition (added, unretired,
/// changed, retired, removed), then the tombstone's own, then owner_died.
template <class Record>
void diff_snapshots(const watch_snapshot<Record>& before, const watch_snapshot<Record>& after,
                    std::deque<watch_event<Record>>& out) {
    std::set<std::string_view> keys;
    for (const auto* side : {&before.active, &after.active, &before.retired, &after.retired}) {
        for (const auto& item : *side) keys.insert(item.first);
    }
    using kind = watch_event_kind;
    const auto lookup = [](const auto& map, std::string_view key) -> const watched_record<Record>* {
        const auto it = map.find(key);
        return it == map.end() ? nullptr : &it->second;
    };
    const auto emit = [&](kind k, std::string_view key, const watched_record<Record>& r, bool tombstone) {
        out.push_back(watch_event<Record>{k, std::string(key), r.record, r.pid, tombstone});
    };
    for (const std::string_view key : keys) {
        const auto* a0 = lookup(before.active, key);
        const auto* a1 = lookup(after.active, key);
        const auto* r0 = lookup(before.retired, key);
        const auto* r1 = lookup(after.retired, key);
        const bool tomb_new = r1 && (!r0 || r0->text != r1->text);
        const bool moved_to_retired = a0 && !a1 && tomb_new;
        const bool came_back = !a0 && a1 && r0 && !r1;
        if (came_back) {
            emit(kind::unretired, key, *a1, false);
        } else if (!a0 && a1) {
            emit(kind::added, key, *a1, false);
        } else if (moved_to_retired) {
            emit(kind::retired, key, *r1, false);
        } else if (a0 && !a1) {
            emit(kind::removed, key, *a0, false);
        } else if (a0 && a1 && a0->text != a1->text) {
            emit(kind::changed, key, *a1, false);
        }
        if (!moved_to_retired) {
            if (r1 && !r0) emit(kind::retired, key, *r1, true);
            if (r0 && r1 && r0->text != r1->text) emit(kind::changed, key, *r1, true);
            if (r0 && !r1 && !came_back) emit(kind::removed, key, *r0, true);
        }
        if (a0 && a1 && a0->alive && !a1->alive && a0->pid == a1->pid) emit(kind::owner_died, key, *a1, false);
    }
}

/// Appends owner_died for each key of `gone` (keys a change feed says went
/// with their owner) that `before` holds alive and `after` no longer holds,
/// marking it dead in `before`; the diff then reports it removed.
template <class Record, class Keys>
void report_owners_gone(watch_snapshot<Record>& before, const watch_snapshot<Record>& after, const Keys& gone,
                        std::deque<watch_event<Record>>& out) {
    for (const std::string& key : gone) {
        const auto found = before.active.find(key);
        if (found == before.active.end() || !found->second.alive || after.active.count(key)) continue;
        found->second.alive = false;
        out.push_back(watch_event<Record>{watch_event_kind::owner_died, key, found->second.record,
                                          found->second.pid, false});
    }
}

}  // namespace procreg
