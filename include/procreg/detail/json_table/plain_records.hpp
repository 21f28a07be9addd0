// procreg/detail/json_table/plain_records.hpp — a plain record read straight from its pretty-printed bytes.
//
// A plain record (detail::encodes_plainly: a described struct of strings,
// integers and bools, algocline's) that this program wrote, or the seed
// (serde_json's to_string_pretty), lies in the table file exactly as
// detail::append_plain_pretty writes it at indent level 2. `read_canonical`
// recognises exactly those bytes — every separator, newline and indent in
// place, the members in declaration order with no other key, each string
// escaped as the serializer escapes it, each integer as std::to_chars
// writes it — and decodes the members from them on the way.
//
// Invariant: read_canonical returns true only when
// `append_plain_pretty(out, record, 2)` would write `text` byte for byte and
// decode_value<Record> of the parsed `text` would give `record`. So the
// first save after a load copies such a record's bytes through without
// encoding it or reading it back, and the record needs no JSON object (it
// has no key the type does not know). Anything else (another layout, an
// escape the serializer does not write, an unknown key, a number in another
// form) returns false, and the caller decodes the record through a JSON
// tree as before. The bytes are not trusted: all that this accepts is
// checked here (bounds, ASCII strings with the serializer's escapes,
// integers as to_chars writes them, which JSON allows), so a record it
// takes needs no other parse; its depth is fixed (one level in the file's
// three) and its keys are the type's distinct member names.
#pragma once

#include <procreg/detail/json_codec.hpp>

#include <boost/describe/members.hpp>
#include <boost/mp11/algorithm.hpp>

#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

namespace procreg::detail::json_table_impl {

// What the pretty printer writes before each member's value at indent level
// 2 (`{` before the first and `,` before the others, a newline, 6 spaces,
// the quoted name and `: `), and after the last value.
template <class Record>
struct plain_layout {
    using members = boost::describe::describe_members<Record, boost::describe::mod_public>;
    static constexpr std::size_t count = boost::mp11::mp_size<members>::value;
    std::array<std::string, count> before{};
    std::string after = "\n    }";

    plain_layout() {
        std::size_t i = 0;
        boost::mp11::mp_for_each<members>([&](auto member) {
            std::string& prefix = before[i];
            prefix += i == 0 ? '{' : ',';  // the record's opening brace comes before its first member
            prefix += "\n      ";
            append_json_string(prefix, member.name);
            prefix += ": ";
            ++i;
        });
    }
    static const plain_layout& get() {
        static const plain_layout layout;
        return layout;
    }
};

// The first byte from `at` on that a string's plain run cannot hold (a
// quote, a backslash, a control byte or one outside ASCII), or the end.
// Eight bytes at a time: this is most of a record's bytes.
inline std::size_t plain_run_end(std::string_view text, std::size_t at) {
    constexpr std::uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    const auto has_zero = [&](std::uint64_t v) { return (v - ones) & ~v & highs; };
    while (text.size() - at >= 8) {
        std::uint64_t w;
        std::memcpy(&w, text.data() + at, 8);
        const std::uint64_t special = has_zero(w ^ (ones * '"')) | has_zero(w ^ (ones * '\\')) |
                                      ((w - ones * 0x20) & ~w & highs) | (w & highs);
        if (special != 0) break;  // one of these 8 bytes ends the run: find it below
        at += 8;
    }
    while (at < text.size()) {
        const auto byte = static_cast<unsigned char>(text[at]);
        if (byte == '"' || byte == '\\' || byte < 0x20 || byte >= 0x80) break;
        ++at;
    }
    return at;
}

// Reads a string literal at `at` written as append_json_string writes it
// into `out`; advances `at` past it. False for any other spelling, and for
// a byte outside ASCII: such a string is left to the strict parser, which
// checks that it is UTF-8 (the bytes here are not trusted).
inline bool read_canonical_string(std::string_view text, std::size_t& at, std::string& out) {
    if (at >= text.size() || text[at] != '"') return false;
    ++at;
    std::size_t run = at;
    out.clear();
    for (;;) {
        at = plain_run_end(text, at);
        out.append(text.data() + run, at - run);
        if (at >= text.size()) return false;
        const char c = text[at];
        if (c == '"') {
            ++at;
            return true;
        }
        if (c != '\\' || at + 1 >= text.size()) return false;  // a control byte (not JSON) or non-ASCII
        char decoded = 0;
        switch (text[at + 1]) {
        case '"': decoded = '"'; break;
        case '\\': decoded = '\\'; break;
        case 'b': decoded = '\b'; break;
        case 't': decoded = '\t'; break;
        case 'n': decoded = '\n'; break;
        case 'f': decoded = '\f'; break;
        case 'r': decoded = '\r'; break;
        case 'u': {
            // Only \u00xx, lower-case hex, for a control character the
            // serializer has no short form for.
            if (text.size() - at < 6 || text[at + 2] != '0' || text[at + 3] != '0') return false;
            const auto hex = [](char h) { return h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : -1; };
            const int high = hex(text[at + 4]), low = hex(text[at + 5]);
            if (high < 0 || high > 1 || low < 0) return false;
            decoded = static_cast<char>(high * 16 + low);
            if (decoded == '\b' || decoded == '\t' || decoded == '\n' || decoded == '\f' || decoded == '\r') return false;
            out += decoded;
            at += 6;
            run = at;
            continue;
        }
        default: return false;  // `\/` and the like: the serializer never writes them
        }
        out += decoded;
        at += 2;
        run = at;
    }
}

// Reads an integer at `at` spelled as std::to_chars spells it.
template <class T>
bool read_canonical_integer(std::string_view text, std::size_t& at, T& out) {
    std::size_t end = at;
    while (end < text.size() && ((text[end] >= '0' && text[end] <= '9') || text[end] == '-')) ++end;
    const char* first = text.data() + at;
    const char* last = text.data() + end;
    const auto read = std::from_chars(first, last, out);
    if (read.ec != std::errc() || read.ptr != last) return false;
    char digits[24];
    const auto written = std::to_chars(digits, digits + sizeof digits, out).ptr;
    const auto length = static_cast<std::size_t>(written - digits);
    if (length != end - at || std::memcmp(digits, first, length) != 0) return false;  // `-0`, leading zeros
    at = end;
    return true;
}

// Whether `text` at `at` starts with `expected`; advances past it if so.
// The separators compared are short: compared inline, eight bytes at a
// time, rather than by a call to memcmp for each.
inline bool read_literal(std::string_view text, std::size_t& at, std::string_view expected) {
    std::size_t n = expected.size();
    if (text.size() - at < n) return false;
    const char* a = text.data() + at;
    const char* b = expected.data();
    for (; n >= 8; n -= 8, a += 8, b += 8) {
        std::uint64_t x, y;
        std::memcpy(&x, a, 8);
        std::memcpy(&y, b, 8);
        if (x != y) return false;
    }
    for (; n > 0; --n, ++a, ++b) {
        if (*a != *b) return false;
    }
    at += expected.size();
    return true;
}

/// Decodes the record at `at` in `text` (the file) into `out` when its
/// bytes are exactly its pretty encoding at indent level 2 (see the file
/// comment), advancing `at` past them; otherwise false, `out` then holding a
/// partial value and `at` anywhere.
template <class Record>
bool read_canonical(std::string_view text, std::size_t& at, Record& out) {
    using layout = plain_layout<Record>;
    if constexpr (layout::count == 0) {
        return read_literal(text, at, "{}");
    } else {
        const layout& expected = layout::get();
        std::size_t i = 0;
        bool ok = true;
        boost::mp11::mp_for_each<typename layout::members>([&](auto member) {
            if (!ok) return;
            if (!read_literal(text, at, expected.before[i++])) {
                ok = false;
                return;
            }
            auto& field = out.*member.pointer;
            using field_type = std::remove_cv_t<std::remove_reference_t<decltype(field)>>;
            if constexpr (std::is_same_v<field_type, bool>) {
                if (read_literal(text, at, "true")) {
                    field = true;
                } else if (read_literal(text, at, "false")) {
                    field = false;
                } else {
                    ok = false;
                }
            } else if constexpr (std::is_integral_v<field_type>) {
                ok = read_canonical_integer(text, at, field);
            } else {
                ok = read_canonical_string(text, at, field);
            }
        });
        return ok && read_literal(text, at, expected.after);
    }
}

}  // namespace procreg::detail::json_table_impl
