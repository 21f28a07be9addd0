// procreg/detail/json_table/save.hpp — a session's state into the text of a table file.
//
// The file is what detail::pretty_print writes for the top-level object
// with the records array in it (serde_json's to_string_pretty: the seeds'
// format, byte for byte). Each record's text is written once: a record
// loaded and not changed since keeps its bytes from the file when they are
// exactly its encoding (verified while loading, or found equal to it
// here), and only a changed record is encoded — and proven to read back
// within the reader's limits (detail::read_back) before anything is
// written, so no commit writes a file its readers refuse.
//
// Invariant: after `adopt_layout`, every record's text is a verified span
// of the state's bytes, which are exactly the file just written, so the
// next save of an unchanged-file session copies them through again.
#pragma once

#include <procreg/detail/json_codec.hpp>
#include <procreg/detail/json_table/plain_records.hpp>
#include <procreg/detail/json_table/state.hpp>
#include <procreg/detail/quote_untrusted.hpp>
#include <procreg/error.hpp>
#include <procreg/record_traits.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <cstring>
#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace procreg::detail::json_table_impl {

/// The limits one record's text is held to: the file's, less what the file
/// adds around it. lay_out() nests a record two levels down (the top-level
/// object, the array) and writes at least `{\n  "<array_key>": [\n    `
/// and `\n  ]\n}` around it. The whole table's size is checked once
/// laid out (check_table_size).
inline json_limits record_limits(std::size_t max_depth, std::size_t max_file_bytes, const std::string& array_key) {
    json_limits limits{max_depth, max_file_bytes};
    limits.outer_depth = 2;
    limits.outer_bytes = 18 + boost::json::serialize(boost::json::string_view(array_key)).size();
    return limits;
}

/// Refuses (errc::invalid_record, before anything is written) a laid-out
/// table of `size` bytes above `max_file_bytes`, which readers would refuse:
/// each record fits on its own, the table does not. Names `last_encoded`,
/// the last record encoded, when there is one.
template <class Record>
void check_table_size(std::size_t size, std::size_t max_file_bytes, const Record* last_encoded,
                      const std::filesystem::path& path) {
    if (size <= max_file_bytes) return;
    std::string key = last_encoded ? std::string(key_of(*last_encoded)) : "";
    const std::string what = (key.empty() ? std::string("cannot store the table")
                                          : "cannot store the record " + quote_untrusted(key)) +
                             ": the table would be " + std::to_string(size) + " bytes, above the limit of " +
                             std::to_string(max_file_bytes) + " bytes (max_file_bytes) that readers accept";
    throw error(errc::invalid_record, path, what, error::details{std::move(key), {}, 0});
}

/// Gives the slot `s` of `state` the text it will have in the file. The
/// record then holds what reading that text back gives (value and object),
/// as a fresh load of the file would: the unchanged-file shortcut serves
/// what the file says. A record whose encoding equals its bytes in the file
/// just loaded keeps them without the proof: the load parsed and decoded
/// those very bytes within the same limits (the file's size and depth, two
/// levels down). Returns whether the record got a new text (proven).
template <class Record>
bool encode_slot(table_state<Record>& state, typename table_state<Record>::slot& s, const json_limits& limits,
                 std::string& scratch, const std::filesystem::path& path) {
    stored_record<Record>& entry = *s.record;
    // `scratch`, proven, becomes the slot's text among the texts this save encodes.
    const auto take_scratch = [&] {
        s.offset = state.fresh.size();
        s.length = scratch.size();
        s.in_fresh = true;
        s.verified = true;
        state.fresh += scratch;
        return true;
    };
    if constexpr (encodes_plainly<Record>::value) {
        // The usual case, written without a JSON tree: when the file holds
        // exactly the record's members in order (the bytes equal), its
        // object has no other key for a merge to add, so this is also what
        // the merge below would write.
        if (s.has_span() || entry.json.empty()) {
            scratch.clear();
            append_plain_pretty(scratch, entry.value, 2);
            if (s.has_span() && scratch == state.span(s)) {
                s.verified = true;
                return false;
            }
        }
        // A record with no key the type does not know (a new one, stamped
        // with no identity): its object is its members only, so the merge
        // below would write these very bytes. The proof that they read back
        // is then the one the next load makes of them (load_directly reads
        // a plain record by read_canonical, which holds it to exactly this
        // encoding and decodes it), not a JSON parse and decode: the same
        // acceptance for a fraction of the cost (issue 17). Anything it
        // does not take (a byte outside ASCII, which the strict parser must
        // check is UTF-8; a record above the size limit, which read_back
        // words; a depth limit below the records' level) takes the general
        // path below, unchanged.
        if (entry.json.empty() && limits.max_depth >= 3 &&
            scratch.size() <= limits.max_bytes - std::min(limits.max_bytes, limits.outer_bytes)) {
            Record decoded{};
            std::size_t end = 0;
            if (read_canonical(scratch, end, decoded) && end == scratch.size()) {
                entry.value = std::move(decoded);  // what the next load will see, as read_back hands out
                return take_scratch();
            }
        }
    }
    try {
        const boost::json::value merged(merge_over(entry.json, entry.value));
        scratch.clear();
        pretty_print_into(scratch, merged, 2);  // indent level 2: inside the top-level object's array
        if (s.has_span() && scratch == state.span(s)) {
            s.verified = true;
            return false;
        }
        read_back<Record>(scratch, limits, &entry.value, &entry.json);
        return take_scratch();
    } catch (const decode_error& e) {
        const std::string key(key_of(entry.value));
        throw error(errc::invalid_record, path,
                    "cannot store the record " + quote_untrusted(key) + ": " + e.what(), error::details{key, {}, 0});
    }
}

/// Where one piece of a file's text lies: a run of the state's `bytes`, a
/// text among `fresh`, or among the layout's own `frame`.
enum class piece_source : unsigned char { bytes, fresh, frame };
struct text_piece {
    piece_source source;
    std::size_t offset;
    std::size_t length;
};

/// A table file as pieces of text already in memory: the records' texts
/// where they are, the punctuation and top level around them in `frame`,
/// and wherever the state's `bytes` hold the very text that comes next
/// (the usual case: the file this state was read from or last wrote, in
/// the pretty layout), a run of `bytes` instead — so the file is written
/// from a few runs (one writev) and its text made in place (adopt_layout),
/// with no copy of the whole table.
struct file_layout {
    std::string frame;
    std::vector<text_piece> pieces;   // the file, in order
    std::vector<std::size_t> places;  // each record's offset in the file
    std::size_t size = 0;
};

/// The file as detail::pretty_print writes the top-level object with the
/// records array in it (the array takes its place among the other keys, or
/// comes last when the file had none), laid out from the records' texts:
/// each record without one is given its text first (`encode(slot)`, which
/// may throw: the state is then as consistent as before, with the records
/// encoded so far holding their new text). The state must be compacted.
template <class Record, class Encode>
file_layout lay_out(table_state<Record>& state, const std::string& array_key, Encode&& encode) {
    if (state.top.find(array_key) == state.top.end()) state.top[array_key] = boost::json::array();
    file_layout out;
    out.places.reserve(state.slots.size());
    const std::string_view bytes = state.bytes;
    // A run of `bytes` (merged with the run before when it continues it).
    const auto add_run = [&](std::size_t offset, std::size_t length) {
        if (!out.pieces.empty()) {
            text_piece& last = out.pieces.back();
            if (last.source == piece_source::bytes && last.offset + last.length == offset) {
                last.length += length;
                out.size += length;
                return;
            }
        }
        out.pieces.push_back({piece_source::bytes, offset, length});
        out.size += length;
    };
    // Text of the frame: taken from `bytes` when they hold it right where
    // the last run ended (or at the start), else kept in `frame`.
    const auto add_frame = [&](std::string_view text) {
        if (text.empty()) return;
        std::size_t here = 0;
        bool after_run = out.pieces.empty();
        if (!after_run && out.pieces.back().source == piece_source::bytes) {
            here = out.pieces.back().offset + out.pieces.back().length;
            after_run = true;
        }
        if (after_run && here + text.size() <= bytes.size() && bytes.compare(here, text.size(), text) == 0) {
            add_run(here, text.size());
            return;
        }
        out.pieces.push_back({piece_source::frame, out.frame.size(), text.size()});
        out.frame += text;
        out.size += text.size();
    };
    std::string text;  // one member's text at a time
    text += '{';
    bool first_key = true;
    for (const auto& item : state.top) {
        if (!first_key) text += ',';
        first_key = false;
        text += "\n  ";
        append_json_string(text, item.key());
        text += ": ";
        if (item.key() != array_key) {
            pretty_print_into(text, item.value(), 1);
            continue;
        }
        if (state.slots.empty()) {
            text += "[]";
            continue;
        }
        text += '[';
        bool first = true;
        for (auto& s : state.slots) {
            if (!s.has_text()) encode(s);
            text += first ? "\n    " : ",\n    ";
            first = false;
            add_frame(text);
            text.clear();
            out.places.push_back(out.size);
            if (s.in_fresh) {
                out.pieces.push_back({piece_source::fresh, s.offset, s.length});
                out.size += s.length;
            } else {
                add_run(s.offset, s.length);
            }
        }
        text += "\n  ]";
    }
    text += "\n}";
    add_frame(text);
    return out;
}

/// The text of `piece` in `state`'s buffers or the layout's frame.
template <class Record>
std::string_view piece_text(const table_state<Record>& state, const file_layout& layout, const text_piece& piece) {
    const std::string& buffer = piece.source == piece_source::bytes   ? state.bytes
                                : piece.source == piece_source::fresh ? state.fresh
                                                                      : layout.frame;
    return std::string_view(buffer).substr(piece.offset, piece.length);
}

/// Every piece's text, in file order: what the publication writes (one
/// writev). Taken after `prepare_adoption`, which may move the kept text.
template <class Record>
std::vector<std::string_view> piece_texts(const table_state<Record>& state, const file_layout& layout) {
    std::vector<std::string_view> out;
    out.reserve(layout.pieces.size());
    for (const text_piece& piece : layout.pieces) out.push_back(piece_text(state, layout, piece));
    return out;
}

/// What making the kept text into the file's text needs, made before the
/// file is published (`prepare_adoption`) so that, once it is, the step
/// cannot fail: a commit whose file is visible must not throw.
struct adoption {
    std::vector<std::size_t> target;  // each piece's offset in the file
    bool in_place = true;             // the runs of `bytes` lie in file order
    std::string text;                 // the file's text, made apart when they do not
};

/// Each piece's place, and room for the file's text in `bytes` (a reserve
/// that may move the text: piece texts are to be taken after it); for runs
/// out of order (not made by any load or save, but not assumed), or a
/// buffer far larger than the table, the text itself, made apart.
template <class Record>
adoption prepare_adoption(table_state<Record>& state, const file_layout& layout) {
    adoption out;
    out.target.resize(layout.pieces.size());
    std::size_t at = 0, run_end = 0;
    for (std::size_t i = 0; i < layout.pieces.size(); ++i) {
        const text_piece& p = layout.pieces[i];
        out.target[i] = at;
        at += p.length;
        if (p.source != piece_source::bytes) continue;
        if (p.offset < run_end) out.in_place = false;
        run_end = p.offset + p.length;
    }
    // The text's buffer is sized to the table (text_room): after a table
    // shrank, the text is made apart and the old buffer freed with the
    // adoption.
    if (oversized_for(state.bytes.capacity(), layout.size)) out.in_place = false;
    if (!out.in_place) {
        out.text.reserve(text_room(layout.size));
        for (const text_piece& p : layout.pieces) out.text += piece_text(state, layout, p);
    } else if (state.bytes.capacity() < layout.size) {
        state.bytes.reserve(text_room(layout.size));
    }
    return out;
}

/// After the file laid out by `layout` is written: `bytes` becomes its
/// text — made in place, each run of `bytes` moved to its place (those
/// moving left in file order, then those moving right in reverse order, so
/// no run is overwritten before it has moved: the runs lie in file order
/// in both texts), then the other pieces copied in; or the text prepared
/// apart — every record's text a verified span of it, and `fresh` emptied.
/// Allocates nothing (`prepare_adoption` made the room).
template <class Record>
void adopt_layout(table_state<Record>& state, const file_layout& layout, adoption& prepared) noexcept {
    const std::vector<std::size_t>& target = prepared.target;
    std::string& bytes = state.bytes;
    if (!prepared.in_place) {
        bytes.swap(prepared.text);
    } else {
        if (layout.size > bytes.size()) bytes.resize(layout.size);  // within the capacity made
        const auto move_run = [&](std::size_t i) {
            const text_piece& p = layout.pieces[i];
            if (p.source == piece_source::bytes && target[i] != p.offset) {
                std::memmove(&bytes[target[i]], &bytes[p.offset], p.length);
            }
        };
        for (std::size_t i = 0; i < layout.pieces.size(); ++i) {
            if (target[i] < layout.pieces[i].offset) move_run(i);
        }
        for (std::size_t i = layout.pieces.size(); i-- > 0;) {
            if (target[i] > layout.pieces[i].offset) move_run(i);
        }
        for (std::size_t i = 0; i < layout.pieces.size(); ++i) {
            const text_piece& p = layout.pieces[i];
            if (p.source != piece_source::bytes) std::memcpy(&bytes[target[i]], piece_text(state, layout, p).data(), p.length);
        }
        bytes.resize(layout.size);
    }
    for (std::size_t i = 0; i < state.slots.size(); ++i) {
        auto& s = state.slots[i];
        s.offset = layout.places[i];
        s.verified = true;
        s.in_fresh = false;
    }
    // The encoded texts are in `bytes` now; a large buffer is not kept.
    if (state.fresh.capacity() > (std::size_t{64} << 10)) {
        std::string().swap(state.fresh);
    } else {
        state.fresh.clear();
    }
}

}  // namespace procreg::detail::json_table_impl
