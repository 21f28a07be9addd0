// procreg/detail/json_table/file_layout.hpp — where each part of a table file lies in its bytes.
//
// A json_table file is `{"<array_key>": [ {record}, ... ], <other keys>}`.
// The load reads the records from their own bytes (a record in the pretty
// format is decoded straight from them and later copied through unchanged,
// detail/json_table/plain_records.hpp), so it needs each record's span and
// each other top-level member's; this finds them in one scan.
//
// Precondition: the text has passed json_is_strictly_valid (or parsed as
// JSON), so only well-formed input is scanned and every bracket, quote and
// escape is balanced. The scan gives up (`ok == false`) on what it cannot
// answer from the raw bytes alone — a top-level key holding an escape (the
// raw text does not say which key it is), a top level that is not an
// object, a records member that is not an array of objects — and the
// caller then takes the general path, which also words the error.
#pragma once

#include <cstddef>
#include <string_view>
#include <utility>
#include <vector>

namespace procreg::detail::json_table_impl {

struct file_layout {
    bool ok = false;
    /// The top-level members in file order, key (unescaped: it holds no
    /// escape) and value text; the records member is among them.
    std::vector<std::pair<std::string_view, std::string_view>> members;
    /// Each element of the records array, in order (empty when the file has
    /// no records member).
    std::vector<std::string_view> records;
};

// Byte classes for the scan: what ends a run inside a string, inside a
// nested value, and what ends a number or literal.
struct layout_bytes {
    bool in_string[256] = {};
    bool in_nested[256] = {};
    bool after_scalar[256] = {};
    constexpr layout_bytes() {
        in_string[static_cast<unsigned char>('"')] = in_string[static_cast<unsigned char>('\\')] = true;
        for (const char c : {'"', '{', '}', '[', ']'}) in_nested[static_cast<unsigned char>(c)] = true;
        for (const char c : {',', '}', ']', ' ', '\n', '\r', '\t'}) after_scalar[static_cast<unsigned char>(c)] = true;
    }
};

/// The layout of `file` (see the file comment).
inline file_layout scan_layout(std::string_view file, std::string_view array_key) {
    static constexpr layout_bytes classes{};
    file_layout out;
    const char* const begin = file.data();
    const char* const end = begin + file.size();
    const char* at = begin;
    const auto byte = [](const char* p) { return static_cast<unsigned char>(*p); };
    const auto skip_space = [&] {
        while (at < end && (*at == ' ' || *at == '\n' || *at == '\r' || *at == '\t')) ++at;
    };
    const auto skip_string = [&] {  // at the opening quote; returns whether it held an escape
        bool escaped = false;
        ++at;
        for (;;) {
            while (!classes.in_string[byte(at)]) ++at;  // valid JSON: the closing quote comes
            if (*at == '"') break;
            escaped = true;
            at += 2;  // the backslash and the escaped byte (`\uXXXX` goes on as plain bytes)
        }
        ++at;
        return escaped;
    };
    const auto skip_value = [&] {
        if (*at == '"') {
            skip_string();
            return;
        }
        if (*at != '{' && *at != '[') {  // a number or a literal
            while (at < end && !classes.after_scalar[byte(at)]) ++at;
            return;
        }
        std::size_t depth = 0;
        do {
            while (!classes.in_nested[byte(at)]) ++at;
            const char c = *at;
            if (c == '"') {
                skip_string();
                continue;
            }
            if (c == '{' || c == '[') ++depth;
            if (c == '}' || c == ']') --depth;
            ++at;
        } while (depth > 0);
    };
    const auto view = [&](const char* from, const char* to) {
        return std::string_view(from, static_cast<std::size_t>(to - from));
    };
    skip_space();
    if (at >= end || *at != '{') return out;
    ++at;
    for (;;) {
        skip_space();
        if (*at != '"') break;  // `}`: the end of the top level
        const char* const key_start = at + 1;
        if (skip_string()) return out;
        const std::string_view key = view(key_start, at - 1);
        skip_space();
        ++at;  // ':'
        skip_space();
        const char* const value_start = at;
        if (key == array_key) {
            if (*at != '[') return out;
            ++at;
            for (;;) {
                skip_space();
                if (*at == ']') break;
                if (*at != '{') return out;
                const char* const start = at;
                skip_value();
                out.records.push_back(view(start, at));
                skip_space();
                if (*at == ',') ++at;
            }
            ++at;
        } else {
            skip_value();
        }
        out.members.emplace_back(key, view(value_start, at));
        skip_space();
        if (*at == ',') ++at;
    }
    out.ok = true;
    return out;
}

}  // namespace procreg::detail::json_table_impl
