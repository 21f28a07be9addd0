// procreg/storage/record_files/tombstones.hpp — record_files' soft
// delete: moving a record between `<root>` and `<root>/retired/`, removing
// both copies, and the questions asked of both directories.
//
// Internal to procreg/storage/record_files.hpp (its invariants hold here;
// users include that header). Each step only reads and buffers: the moves
// happen at commit, each by one rename (detail::move_file_at), so a reader
// sees the record in one directory or the other, never torn. A move never
// takes an unsafe file, nor lands on a file that must not be overwritten.
#pragma once

// The storage first: this header defines its members. (Included on its own,
// the storage header includes this one back, which #pragma once skips.)
#include <procreg/storage/record_files.hpp>

#include <procreg/tombstones.hpp>

#include <string>
#include <string_view>
#include <utility>

namespace procreg::storage {

template <class Record>
tombstone_result record_files::session<Record>::retire(std::string_view key) {
    return move_between(key, true);
}

template <class Record>
tombstone_result record_files::session<Record>::unretire(std::string_view key) {
    return move_between(key, false);
}

// The one rule of both moves: nothing to move is `unchanged`; an unsafe
// source, or a destination that must not be overwritten, is `skipped`
// (the destination is read only once the source may move); else the
// session's view moves at once and the rename waits for commit.
template <class Record>
tombstone_result record_files::session<Record>::move_between(std::string_view key, bool retiring) {
    slot& s = slot_of(key);
    const char* const verb = retiring ? "retire" : "unretire";
    file_state& from = retiring ? load_active(s, key) : load_retired(s, key);
    if (from.kind == file_kind::absent) return {tombstone_status::unchanged, std::nullopt};
    if (!from.movable()) {
        return {tombstone_status::skipped, skipped_file{retiring ? active_file(key) : retired_file(key),
                                                        std::string("not ") + verb + "d: " + from.reason}};
    }
    file_state& to = retiring ? load_retired(s, key) : load_active(s, key);
    if (!to.writable()) {
        return {tombstone_status::skipped, skipped_file{retiring ? retired_file(key) : active_file(key),
                                                        std::string("not overwritten by ") + verb + ": " + to.reason}};
    }
    to = std::move(from);
    from = file_state::absent();
    add_op(s, key, op{retiring ? op_kind::retire : op_kind::unretire, {}});
    return {tombstone_status::moved, std::nullopt};
}

template <class Record>
bool record_files::session<Record>::hard_delete(std::string_view key) {
    slot& s = slot_of(key);
    file_state& active = load_active(s, key);
    file_state& retired = load_retired(s, key);
    bool removed = false;
    if (active.kind != file_kind::absent) {
        active = file_state::absent();
        add_op(s, key, op{op_kind::remove_active, {}});
        removed = true;
    }
    if (retired.kind != file_kind::absent) {
        retired = file_state::absent();
        add_op(s, key, op{op_kind::remove_retired, {}});
        removed = true;
    }
    return removed;
}

template <class Record>
template <class Visit>
void record_files::session<Record>::for_each_retired(Visit&& visit) const {
    for (const std::string& key : retired_keys()) {
        const file_state& retired = load_retired(slot_of(key), key);
        if (retired.kind == file_kind::valid) visit(*retired.record);
    }
}

template <class Record>
bool record_files::session<Record>::exists_anywhere(std::string_view key) const {
    slot& s = slot_of(key);
    return load_active(s, key).kind != file_kind::absent || load_retired(s, key).kind != file_kind::absent;
}

}  // namespace procreg::storage
