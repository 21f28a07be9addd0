// procreg/detail/record_key.hpp — record keys that are safe to use as file names.
//
// Storages that keep one file per record turn the key into a file name
// (`<key>.json`). A key is therefore checked against one strict pattern
// before any file is touched:
//
//     [A-Za-z0-9][A-Za-z0-9._-]{0,127}
//
// - no '/' and no NUL, so a key can never name another directory;
// - the first character is a letter or digit, so "", ".", "..", hidden names
//   (".x", which is also the shape of procreg's temp files ".<name>.tmp-…")
//   and option-like names ("-rf") are all refused;
// - at most 128 characters, so "<key>.json" and its temp file name stay far
//   below NAME_MAX (255) on every Linux file system.
// UUIDs, slugs and dotted names ("agent-1", "a.b_c") all fit.
#pragma once

#include <procreg/detail/json_strict_parse.hpp>
#include <procreg/error.hpp>

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

namespace procreg::detail {

/// The longest key accepted.
inline constexpr std::size_t max_record_key_length = 128;

/// The pattern, for messages and documentation.
inline constexpr const char* record_key_pattern = "[A-Za-z0-9][A-Za-z0-9._-]{0,127}";

inline constexpr bool is_key_alnum(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/// Whether `key` matches `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`.
inline constexpr bool is_valid_record_key(std::string_view key) noexcept {
    if (key.empty() || key.size() > max_record_key_length) return false;
    if (!is_key_alnum(key.front())) return false;
    for (const char c : key) {
        if (!is_key_alnum(c) && c != '.' && c != '_' && c != '-') return false;
    }
    return true;
}

/// `key` quoted for an error message, as `quote_untrusted` quotes file bytes
/// (control and non-ASCII bytes escaped as \xNN, at most 80 characters
/// shown), so a hostile key cannot forge log lines.
inline std::string quote_record_key(std::string_view key) { return quote_untrusted(key, 80); }

/// Throws `errc::invalid_key` naming `key` unless it matches the pattern.
/// `where` is the directory the key would have been used in (for the message).
inline void check_record_key(std::string_view key, const std::filesystem::path& where) {
    if (is_valid_record_key(key)) return;
    std::string why;
    if (key.empty()) {
        why = "is empty";
    } else if (key.size() > max_record_key_length) {
        why = "is " + std::to_string(key.size()) + " characters long (at most " +
              std::to_string(max_record_key_length) + ")";
    } else {
        why = "does not match " + std::string(record_key_pattern);
    }
    throw error(errc::invalid_key, where,
                "record key " + quote_record_key(key) + " " + why + "; it cannot be used as a file name",
                error::details{std::string(key), {}, 0});
}

}  // namespace procreg::detail
