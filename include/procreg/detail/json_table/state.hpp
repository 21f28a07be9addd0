// procreg/detail/json_table/state.hpp — what one json_table session holds: the records, their texts, the file.
//
// Records are kept in file order with their key index (key_index.hpp). Each
// record's text — its bytes as they are or will be in the file — lives
// either in `bytes`, the text of the file this state was loaded from or
// last saved as (one buffer for the whole table, so a loaded table is not
// one string per record, and dropping it is one free), or, for a record
// encoded since, in `fresh`, one buffer for the texts of a save.
//
// Invariants:
// - a slot with a span names bytes of `bytes` (or of `fresh`, when
//   `in_fresh`); with `verified`, those bytes are exactly what encoding the
//   record writes (so a save copies them through); without, they are what
//   the file held for the record, to be compared with its encoding at the
//   next save;
// - a slot without a verified span is encoded (and its encoding proven to
//   read back) at the next save;
// - `index` names exactly the slots that hold a record; an erased record
//   leaves a hole (no record) until the next save compacts the slots.
#pragma once

#include <procreg/detail/file_io.hpp>
#include <procreg/detail/json_table/key_index.hpp>
#include <procreg/record_traits.hpp>
#include <procreg/stored_record.hpp>

#include <boost/json/object.hpp>

#include <cstddef>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/stat.h>

namespace procreg::detail::json_table_impl {

// What identifies one version of the table file. With the inode pinned
// by an open descriptor, (device, inode) names one file; size, mtime and
// ctime change with any write to it.
struct file_identity {
    dev_t device = 0;
    ino_t inode = 0;
    off_t size = 0;
    struct timespec modified {};
    struct timespec changed {};

    static file_identity of(const struct ::stat& st) noexcept {
        return file_identity{st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim};
    }
    bool matches(const struct ::stat& st) const noexcept {
        return S_ISREG(st.st_mode) && st.st_dev == device && st.st_ino == inode && st.st_size == size &&
               st.st_mtim.tv_sec == modified.tv_sec && st.st_mtim.tv_nsec == modified.tv_nsec &&
               st.st_ctim.tv_sec == changed.tv_sec && st.st_ctim.tv_nsec == changed.tv_nsec;
    }
};

// One version of the table file: its identity, and the descriptor (always
// open) that pins its inode. Taken only with `reuse_unchanged`.
struct pinned_file {
    file_identity identity;
    unique_fd pin;
};

/// The capacity a table's text of `size` bytes is given: room to grow in
/// place by a thirty-second (about 4,000 records of 150 bytes at 19.5 MB),
/// since a save makes the new text in the old one's buffer.
inline std::size_t text_room(std::size_t size) noexcept { return size + size / 32 + 4096; }

/// Whether a buffer of `capacity` is far more than a text of `size` needs
/// (twice its room, and above 1 MiB): a table that shrank does not keep it.
inline bool oversized_for(std::size_t capacity, std::size_t size) noexcept {
    return capacity > 2 * text_room(size) && capacity > (std::size_t{1} << 20);
}

template <class Record>
struct table_state {
    static constexpr std::size_t no_span = static_cast<std::size_t>(-1);

    struct slot {
        std::optional<stored_record<Record>> record;  ///< the record; empty for a hole
        std::size_t offset = no_span;                 ///< its text's place in `bytes` (or `fresh`), or no_span
        std::size_t length = 0;
        bool verified = false;  ///< the span is exactly the record's encoding
        bool in_fresh = false;  ///< the span is in `fresh`, not `bytes`

        bool has_span() const noexcept { return offset != no_span; }
        /// The text a save writes for it is known (no encoding needed).
        bool has_text() const noexcept { return has_span() && verified; }
        void forget_text() noexcept {
            offset = no_span;
            length = 0;
            verified = false;
            in_fresh = false;
        }
    };

    boost::json::object top;  // the file's top-level members but the records (an empty array holds their place)
    std::vector<slot> slots;  // file order, with holes
    key_index index;          // key -> position in slots
    std::string bytes;        // the file text the spans point into
    std::string fresh;        // the texts encoded since `bytes` was read or written
    // Holds no table text: the scratch buffer through which the next read of a file
    // another process wrote is compared with `bytes` (detail/read_edit.hpp),
    // kept for its capacity.
    std::string spare;
    std::size_t first_hole = no_span;  // no hole before it (no_span: no hole)

    std::string_view span(const slot& s) const noexcept {
        return std::string_view(s.in_fresh ? fresh : bytes).substr(s.offset, s.length);
    }

    // key_index's access to the keys it indexes.
    auto key_at() const {
        return [this](std::size_t position) { return key_of(slots[position].record->value); };
    }
    std::size_t find(std::string_view key) const { return index.find(key, key_at()); }

    /// Leaves a hole at `position` (see `compact`).
    void erase_at(std::size_t position) {
        index.erase(key_of(slots[position].record->value), key_at());
        slots[position].record.reset();
        slots[position].forget_text();
        if (first_hole == no_span || position < first_hole) first_hole = position;
    }

    /// Removes the holes, renumbering the index. Only the slots from the
    /// first hole on move (an erase near the end costs little).
    void compact() {
        if (index.size() == slots.size()) return;  // no holes
        std::size_t first = first_hole < slots.size() ? first_hole : 0;
        while (slots[first].record) ++first;  // there is a hole
        first_hole = no_span;
        std::vector<std::size_t> moved(slots.size() - first, 0);
        std::size_t to = first;
        for (std::size_t from = first; from < slots.size(); ++from) {
            if (!slots[from].record) continue;
            if (to != from) slots[to] = std::move(slots[from]);
            moved[from - first] = to++;
        }
        slots.resize(to);
        index.renumber(first, moved);
    }
};

// The state a clean session handed back to its storage, with the file it
// is exactly the contents of and the record type it was made for (one
// address per type: a kept state is only reused by sessions of that type).
struct kept_base {
    kept_base(const void* type_tag, pinned_file&& f) : type(type_tag), file(std::move(f)) {}
    virtual ~kept_base() = default;
    const void* type;  // the tag of the derived kept<Record>
    pinned_file file;
};
template <class Record>
struct kept final : kept_base {
    kept(const void* type_tag, table_state<Record>&& s, pinned_file&& f)
        : kept_base(type_tag, std::move(f)), state(std::move(s)) {}
    table_state<Record> state;
};

}  // namespace procreg::detail::json_table_impl
