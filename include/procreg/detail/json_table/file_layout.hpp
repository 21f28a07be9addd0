// procreg/detail/json_table/file_layout.hpp — a table file's top level, read strictly from its bytes.
//
// A json_table file is `{"<array_key>": [ {record}, ... ], <other keys>}`.
// The direct load (detail/json_table/load.hpp) takes it apart here in one
// pass, without a JSON tree of the whole: the punctuation and whitespace of
// the top-level object and of the records array are checked here; each
// record is offered first to `read_record` (the plain-record reader, which
// checks every byte of what it accepts); anything else — a record it does
// not take, any other top-level member's value — is delimited here and
// handed to `other_record` / `member` as a span, which the caller parses
// strictly (parse_refusing_duplicates and the number check), so every byte
// of the file is checked by one of the three.
//
// The bytes are not trusted: every read is bounds-checked, and a span
// found by bracket counting is only a candidate — the strict parse of it
// decides. The scan gives up (returns false) on anything it does not
// handle — a top level that is not an object, a top-level key with an
// escape or a byte outside printable ASCII (the raw bytes would not say
// which key it is), a repeated top-level key, a records member that is not
// an array of objects, bytes after the top level — and the caller then
// takes the general load, which parses the whole file and words the error.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace procreg::detail::json_table_impl {

// Byte classes for the scan.
struct layout_bytes {
    bool in_string[256] = {};  // ends a run of plain bytes in a string
    bool in_nested[256] = {};  // ends a run of bytes that change no nesting
    bool after_scalar[256] = {};
    constexpr layout_bytes() {
        in_string[static_cast<unsigned char>('"')] = in_string[static_cast<unsigned char>('\\')] = true;
        for (const char c : {'"', '{', '}', '[', ']'}) in_nested[static_cast<unsigned char>(c)] = true;
        for (const char c : {',', '}', ']', ' ', '\n', '\r', '\t'}) after_scalar[static_cast<unsigned char>(c)] = true;
    }
};

/// What `read_record` returns to stop the walk.
constexpr std::size_t stop_walk = std::string_view::npos - 1;

inline bool is_json_space(char c) noexcept { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

/// The end of the JSON value starting at `at` in `file` as bracket counting
/// outside strings finds it, or npos when the bytes run out first. Only a
/// candidate: the caller parses the span strictly.
inline std::size_t skip_value(std::string_view file, std::size_t at) {
    static constexpr layout_bytes classes{};
    constexpr std::size_t npos = std::string_view::npos;
    const std::size_t size = file.size();
    const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(file[i]); };
    const auto skip_string = [&](std::size_t i) -> std::size_t {  // i at the opening quote
        for (++i; i < size;) {
            if (!classes.in_string[byte(i)]) {
                ++i;
                continue;
            }
            if (file[i] == '"') return i + 1;
            i += 2;  // a backslash and the byte it escapes
        }
        return npos;
    };
    if (at >= size) return npos;
    if (file[at] == '"') return skip_string(at);
    if (file[at] != '{' && file[at] != '[') {  // a number or a literal
        while (at < size && !classes.after_scalar[byte(at)]) ++at;
        return at;
    }
    std::size_t depth = 0;
    while (at < size) {
        if (!classes.in_nested[byte(at)]) {
            ++at;
            continue;
        }
        const char c = file[at];
        if (c == '"') {
            at = skip_string(at);
            if (at == npos) return npos;
            continue;
        }
        if (c == '{' || c == '[') ++depth;
        if (c == '}' || c == ']') --depth;
        ++at;
        if (depth == 0) return at;
    }
    return npos;
}

/// Walks the top level of `file` (see the file comment), calling
///  - `member(key, value_span)` for each top-level member but the records,
///    in file order, and `records_here()` where the records member is;
///  - `read_record(start)` for each record: the end of the record it read
///    from `start`, npos when it does not take it, or stop_walk;
///  - `other_record(span)` for a record `read_record` did not take.
/// Each callback returns false to stop the scan (the scan then returns
/// false). True when the whole file was walked.
template <class Member, class RecordsHere, class ReadRecord, class OtherRecord>
bool walk_layout(std::string_view file, std::string_view array_key, Member&& member, RecordsHere&& records_here,
                 ReadRecord&& read_record, OtherRecord&& other_record) {
    constexpr std::size_t npos = std::string_view::npos;
    const std::size_t size = file.size();
    std::size_t at = 0;
    const auto skip_space = [&] {
        while (at < size && is_json_space(file[at])) ++at;
    };
    const auto expect = [&](char c) {
        skip_space();
        if (at >= size || file[at] != c) return false;
        ++at;
        return true;
    };
    std::vector<std::string_view> keys;
    if (!expect('{')) return false;
    skip_space();
    if (at < size && file[at] == '}') {
        ++at;
    } else {
        for (;;) {
            if (!expect('"')) return false;
            const std::size_t key_start = at;
            while (at < size && file[at] != '"') {
                const auto b = static_cast<unsigned char>(file[at]);
                if (b < 0x20 || b >= 0x7f || b == '\\') return false;  // an escape or non-ASCII: the general load
                ++at;
            }
            if (at >= size) return false;
            const std::string_view key = file.substr(key_start, at - key_start);
            ++at;
            for (const std::string_view seen : keys) {
                if (seen == key) return false;  // the general load names the repeated member
            }
            if (keys.size() >= 64) return false;  // many top-level keys: not a table this handles
            keys.push_back(key);
            if (!expect(':')) return false;
            skip_space();
            if (key == array_key) {
                if (at >= size || file[at] != '[' || !records_here()) return false;
                ++at;
                skip_space();
                if (at < size && file[at] == ']') {
                    ++at;
                } else {
                    for (;;) {
                        skip_space();
                        if (at >= size || file[at] != '{') return false;
                        std::size_t end = read_record(at);
                        if (end == stop_walk) return false;
                        if (end == npos) {
                            end = skip_value(file, at);
                            if (end == npos || !other_record(file.substr(at, end - at))) return false;
                        }
                        at = end;
                        skip_space();
                        if (at < size && file[at] == ',') {
                            ++at;
                            continue;
                        }
                        if (!expect(']')) return false;
                        break;
                    }
                }
            } else {
                const std::size_t end = skip_value(file, at);
                if (end == npos || !member(key, file.substr(at, end - at))) return false;
                at = end;
            }
            skip_space();
            if (at < size && file[at] == ',') {
                ++at;
                continue;
            }
            if (!expect('}')) return false;
            break;
        }
    }
    skip_space();
    return at == size;
}

/// Each element of the records array of `file`, a text that has parsed as
/// JSON, in order; nothing when the walk gives up (see walk_layout).
inline std::vector<std::string_view> record_spans(std::string_view file, std::string_view array_key) {
    std::vector<std::string_view> out;
    const bool ok = walk_layout(
        file, array_key, [](std::string_view, std::string_view) { return true; }, [] { return true; },
        [](std::size_t) { return std::string_view::npos; },
        [&](std::string_view span) {
            out.push_back(span);
            return true;
        });
    if (!ok) out.clear();
    return out;
}

}  // namespace procreg::detail::json_table_impl
