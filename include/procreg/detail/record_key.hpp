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
//
// A storage may instead accept every key that is safe as a file name
// (`record_key_rule::file_name`), for a seed whose files carry names the
// pattern refuses (AgentMux lists `bad name.json`). Still refused then: "",
// "." and "..", '/' and NUL (a key names one file in one directory), keys
// longer than the storage allows (its temp names add a suffix to
// `<key>.json` and must stay within NAME_MAX), and the shape of procreg's
// temp files (".<name>.json.tmp-…"), which the stale-temp sweep removes.
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

/// Which keys a file-per-record storage accepts as file names.
enum class record_key_rule {
    pattern,    ///< `record_key_pattern` (the default): portable, never hidden, never option-like
    file_name,  ///< every key safe as `<key>.json` (see `file_name_key_problem`)
};

/// Why `key` is not safe as the stem of `<key>.json` in a registry
/// directory, or null when it is: empty, "." or "..", a '/' or NUL, longer
/// than `max_length` bytes, or of the shape of procreg's temp files.
inline const char* file_name_key_problem(std::string_view key, std::size_t max_length) noexcept {
    if (key.empty()) return "is empty";
    if (key == "." || key == "..") return "names a directory";
    if (key.find('/') != std::string_view::npos) return "contains a '/'";
    if (key.find('\0') != std::string_view::npos) return "contains a NUL byte";
    if (key.size() > max_length) return "is too long for a file name with room for its temp names";
    if (key.front() == '.' && key.find(".json.tmp-") != std::string_view::npos) {
        return "has the shape of procreg's temp files";
    }
    return nullptr;
}

/// Whether `key` is accepted under `rule` (`max_length` bounds `file_name` keys).
inline bool is_accepted_record_key(std::string_view key, record_key_rule rule, std::size_t max_length) noexcept {
    return rule == record_key_rule::pattern ? is_valid_record_key(key) : !file_name_key_problem(key, max_length);
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

/// Throws `errc::invalid_key` naming `key` unless `rule` accepts it.
inline void check_record_key(std::string_view key, const std::filesystem::path& where, record_key_rule rule,
                             std::size_t max_length) {
    if (rule == record_key_rule::pattern) return check_record_key(key, where);
    const char* problem = file_name_key_problem(key, max_length);
    if (!problem) return;
    std::string why = problem;
    if (key.size() > max_length) {
        why += " (" + std::to_string(key.size()) + " bytes, at most " + std::to_string(max_length) + ")";
    }
    throw error(errc::invalid_key, where,
                "record key " + quote_record_key(key) + " " + why + "; it cannot be used as a file name",
                error::details{std::string(key), {}, 0});
}

}  // namespace procreg::detail
