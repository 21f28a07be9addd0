// procreg/detail/json_table/patch.hpp — a table file that differs from the
// kept one in one stretch, read by patching the kept state.
//
// When another process wrote the table last, its file usually differs from
// the one this storage kept (the stale state) in one place: a record
// inserted, changed or erased. Reading all of it again is a pass over every
// record and an index built anew; this reads only the stretch that differs.
// The file comes as an edit of the kept text (detail/read_edit.hpp: the
// common prefix and suffix, and the middle between them, read through a
// small buffer), narrowed here to whole records of the kept state: records
// wholly in the prefix keep their place and span, records wholly in the
// suffix keep their record and have their span moved by the difference in
// size, and the bytes between are read as the direct load reads a record
// (read_record_at, load.hpp) within the grammar of the records array — the
// commas and whitespace are checked here, and the parser must leave the
// stretch in the state the kept file's stretch left it (before a record, or
// before the closing bracket). The kept text is then edited in place into
// the file's: one text buffer, never two.
//
// Why this is what reading the whole file gives: the kept state is exactly
// the contents of its file, a file that was read whole and accepted; JSON's
// grammar is context free, so bytes identical to the kept file's, around a
// stretch that leaves the parser where the kept stretch left it, parse as
// they did; the stretch's records are read by the direct load's own reader,
// and their keys are checked against every other record's. Anything else —
// a change outside the records array, a stretch of more than `max_patched`
// records, a key twice, a record the reader does not take, a kept state
// without every record's span — returns false with the kept state
// untouched, and the direct load (then the general one, which words any
// error) runs as before.
//
// Invariant: on true, `stale` holds exactly the records of the new file (its
// `bytes` now that file's text), in file order, each with its span: what load_directly would
// have made of that file, except that a record carried over keeps the kept
// state's `verified` flag — a record a commit wrote is verified (its bytes
// are its encoding) where a fresh load could not tell without encoding it —
// as load_directly's own carry-over and the unchanged-file shortcut keep it.
// On false, or on a throw (only the allocations making room and the text's
// edit can throw, before anything else changes), `stale` is untouched.
#pragma once

#include <procreg/detail/json_table/file_layout.hpp>
#include <procreg/detail/json_table/load.hpp>
#include <procreg/detail/json_table/state.hpp>
#include <procreg/detail/read_edit.hpp>
#include <procreg/record_traits.hpp>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

namespace procreg::detail::json_table_impl {

/// The most records a patched stretch may hold; a file changed in more
/// places is read by the direct load, which carries unchanged records over.
constexpr std::size_t max_patched = 64;

/// Whether `stale` can be patched at all (read before the file is read as
/// an edit of it): records lie three levels down (a lower limit is the
/// general load's to refuse); every record has its span in the kept text (a
/// load gives all records one, or, the general load, none); a kept state
/// has no holes and nothing in `fresh`.
template <class Record>
bool can_patch(const table_state<Record>& stale, std::size_t max_depth) noexcept {
    return max_depth >= 3 && !stale.slots.empty() && stale.fresh.empty() && stale.index.size() == stale.slots.size() &&
           stale.slots.front().has_span() && stale.slots.back().has_span() && !stale.slots.front().in_fresh;
}

/// Makes `stale` the state of the file that `edit` makes of its text, by
/// reading only the stretch in which they differ (see the file comment); the
/// text is then edited in place. False, with the state untouched, when the
/// caller must load the file.
template <class Record>
bool patch_stale(table_state<Record>& stale, const text_edit& edit, std::size_t max_depth) {
    using slot = typename table_state<Record>::slot;
    constexpr std::size_t npos = std::string_view::npos;
    auto& slots = stale.slots;
    const std::string_view old_file = stale.bytes;
    const std::size_t prefix = edit.prefix;
    const std::size_t suffix = edit.suffix;
    const std::size_t new_size = edit.size;
    if (!can_patch(stale, max_depth)) return false;
    if (prefix > old_file.size() || suffix > old_file.size() - prefix || prefix + suffix > new_size ||
        edit.middle.size() != new_size - prefix - suffix) {
        return false;  // not an edit of this text
    }
    if (prefix == old_file.size() && prefix == new_size) return true;  // the same text: every span holds
    const auto end_of = [](const slot& s) { return s.offset + s.length; };

    // The kept records wholly in the prefix, [0, before), and wholly in the
    // suffix, [after, size); the old stretch is [start, stop) of the old text.
    const std::size_t before = static_cast<std::size_t>(
        std::partition_point(slots.begin(), slots.end(), [&](const slot& s) { return end_of(s) <= prefix; }) -
        slots.begin());
    const std::size_t after = static_cast<std::size_t>(
        std::partition_point(slots.begin() + static_cast<std::ptrdiff_t>(before), slots.end(),
                             [&](const slot& s) { return s.offset < old_file.size() - suffix; }) -
        slots.begin());
    std::size_t start = 0;
    if (before > 0) {
        start = end_of(slots[before - 1]);
    } else {  // just after the array's '['
        start = slots.front().offset;
        while (start > 0 && is_json_space(old_file[start - 1])) --start;
        if (start == 0 || old_file[start - 1] != '[' || start > prefix) return false;
    }
    std::size_t stop = 0;
    if (after < slots.size()) {
        stop = slots[after].offset;
    } else {  // at the array's ']'
        stop = end_of(slots.back());
        while (stop < old_file.size() && is_json_space(old_file[stop])) ++stop;
        if (stop >= old_file.size() || old_file[stop] != ']' || stop < old_file.size() - suffix) return false;
    }
    for (std::size_t i = before; i < after; ++i) {
        if (!slots[i].has_span() || slots[i].in_fresh) return false;
    }
    // The new file's [start, new stop): the kept bytes before the middle,
    // the middle, the kept bytes after it up to the stretch's end.
    std::string stretch;
    stretch.reserve(prefix - start + edit.middle.size() + (stop - (old_file.size() - suffix)));
    stretch.append(old_file.substr(start, prefix - start));
    stretch.append(edit.middle);
    stretch.append(old_file.substr(old_file.size() - suffix, stop - (old_file.size() - suffix)));

    // The stretch, in the records array's grammar: what follows `start` is
    // a record's place when no record precedes it, else a comma's.
    enum class next { first, record, comma } expected = before > 0 ? next::comma : next::first;
    std::vector<slot> read;
    for (std::size_t at = 0;;) {
        while (at < stretch.size() && is_json_space(stretch[at])) ++at;
        if (at == stretch.size()) break;
        if (expected == next::comma) {
            if (stretch[at] != ',') return false;
            ++at;
            expected = next::record;
            continue;
        }
        if (stretch[at] != '{' || read.size() == max_patched) return false;
        const std::size_t end = read_record_at<Record>(stretch, at, max_depth, read.emplace_back());
        if (end == npos) return false;
        read.back().offset += start;  // its place in the new file
        at = end;
        expected = next::comma;
    }
    // A record follows the stretch (after a comma, or first), or the ']'
    // does (after a record, or in an empty array).
    if (after < slots.size() ? expected == next::comma : expected == next::record) return false;
    for (std::size_t i = 0; i < read.size(); ++i) {
        const std::string_view key = key_of(read[i].record->value);
        const std::size_t at = stale.find(key);
        if (at != key_index::npos && (at < before || at >= after)) return false;  // a key twice: the loads name it
        for (std::size_t j = 0; j < i; ++j) {
            if (key_of(read[j].record->value) == key) return false;
        }
    }

    // From here on nothing refuses. The room is made first, then the text
    // edited (the last step that can throw, leaving the text as it was),
    // then the stretch's records replace the old ones, which cannot throw.
    const std::size_t count = slots.size() - (after - before) + read.size();
    slots.reserve(count);
    stale.index.reserve(count);
    edit.apply(stale.bytes);
    for (std::size_t i = before; i < after; ++i) stale.index.erase(key_of(slots[i].record->value), stale.key_at());
    const auto first = slots.begin() + static_cast<std::ptrdiff_t>(before);
    if (read.size() == after - before) {
        std::move(read.begin(), read.end(), first);
    } else {
        stale.index.shift(after, static_cast<std::ptrdiff_t>(read.size()) - static_cast<std::ptrdiff_t>(after - before));
        slots.erase(first, slots.begin() + static_cast<std::ptrdiff_t>(after));
        slots.insert(slots.begin() + static_cast<std::ptrdiff_t>(before), std::make_move_iterator(read.begin()),
                     std::make_move_iterator(read.end()));
    }
    for (std::size_t i = before; i < before + read.size(); ++i) {
        stale.index.insert(key_of(slots[i].record->value), i, stale.key_at());
    }
    if (new_size != old_file.size()) {
        const std::size_t moved = new_size - old_file.size();  // modulo 2^n: adding it moves either way
        for (std::size_t i = before + read.size(); i < slots.size(); ++i) slots[i].offset += moved;
    }
    return true;
}

/// `patch_stale` of the file whose whole text is `bytes` (in memory).
template <class Record>
bool patch_stale(table_state<Record>& stale, const std::string& bytes, std::size_t max_depth) {
    return patch_stale(stale, edit_between(stale.bytes, bytes), max_depth);
}

}  // namespace procreg::detail::json_table_impl
