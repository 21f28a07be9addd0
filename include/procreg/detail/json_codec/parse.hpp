// procreg/detail/json_codec/parse.hpp — reading JSON text within limits.
//
// Every text procreg reads goes through `parse_json`, held to `json_limits`
// (size and depth, less what the file adds around a record's text).
//
// Invariants: a parsed value never holds a number that is infinite or NaN
// (Boost.JSON 1.81 reads `1e400` as infinity, which the next save would
// write as `Infinity`, not JSON), and never an object with a repeated member
// name (procreg/detail/json_strict_parse.hpp); either is a parse error.
#pragma once

#include <procreg/detail/json_strict_parse.hpp>

#include <boost/json.hpp>

#include <cmath>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace procreg::detail {

/// Limits applied to every file procreg parses, and so to every text it
/// writes: a write is proven against the limits its reader will apply
/// (`read_back`), so no procreg program can write a file that readers
/// refuse as too big or too deep (docs/reliability.md, "Limits").
struct json_limits {
    /// Maximum nesting depth of the whole file (Boost.JSON's `max_depth`:
    /// `{}` is one level, `{"a": []}` two).
    std::size_t max_depth = 32;
    /// Maximum size of the whole file in bytes.
    std::size_t max_bytes = static_cast<std::size_t>(-1);
    /// For a text that is only part of its file (a json_table record): the
    /// levels the file opens around it and the fewest bytes it adds, so the
    /// text is held to what is left of the file's limits. 0 for a whole file.
    std::size_t outer_depth = 0;
    std::size_t outer_bytes = 0;  ///< see `outer_depth`
};

/// The path (`a.b[2]`, "" for the top) of the first number in `value` that
/// is infinite or NaN, or nothing when every number is finite. Recursion is
/// bounded by the parse depth limit (or, for encoded records, by the type).
inline std::optional<std::string> non_finite_number(const boost::json::value& value) {
    switch (value.kind()) {
    case boost::json::kind::double_:
        if (std::isfinite(value.get_double())) return std::nullopt;
        return std::string();
    case boost::json::kind::array: {
        const auto& array = value.get_array();
        for (std::size_t i = 0; i < array.size(); ++i) {
            if (auto where = non_finite_number(array[i])) return "[" + std::to_string(i) + "]" + *where;
        }
        return std::nullopt;
    }
    case boost::json::kind::object:
        for (const auto& item : value.get_object()) {
            if (auto where = non_finite_number(item.value())) {
                // A key from a file may hold anything: quote it unless plain.
                bool plain = !item.key().empty();
                for (const char c : item.key()) {
                    plain = plain && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                                      c == '_' || c == '-');
                }
                const std::string key = plain ? std::string(item.key()) : boost::json::serialize(item.key());
                return "." + key + *where;
            }
        }
        return std::nullopt;
    default:
        return std::nullopt;
    }
}

/// `non_finite_number`'s path without its leading dot, for messages.
inline std::string describe_json_path(const std::string& where) {
    if (where.empty()) return "the top level";
    return where.front() == '.' ? where.substr(1) : where;
}

/// Parses `text` within the size and depth limits (of what is left of
/// them, for a text with `outer_depth` / `outer_bytes`); returns the error
/// text on failure. An object that repeats a member name is an error
/// (procreg/detail/json_strict_parse.hpp).
/// A number outside the double range is an error (see the file comment).
inline std::optional<boost::json::value> parse_json(std::string_view text, const json_limits& limits,
                                                     std::string& error_text) {
    if (text.size() > limits.max_bytes || limits.outer_bytes > limits.max_bytes - text.size()) {
        error_text = "too big: " + std::to_string(text.size()) + " bytes" +
                     (limits.outer_bytes == 0
                          ? std::string()
                          : " (and at least " + std::to_string(limits.outer_bytes) + " around it in its file)") +
                     ", above the limit of " + std::to_string(limits.max_bytes) + " bytes";
        return std::nullopt;
    }
    boost::json::parse_options options;
    options.max_depth = limits.max_depth > limits.outer_depth ? limits.max_depth - limits.outer_depth : 0;
    boost::system::error_code ec;
    boost::json::value value = parse_refusing_duplicates(text, options, ec, error_text);
    if (ec == boost::json::error::too_deep) {
        error_text = "too deep: nested past the limit of " + std::to_string(limits.max_depth) + " levels" +
                     (limits.outer_depth == 0 ? std::string()
                                              : " (counting the " + std::to_string(limits.outer_depth) +
                                                    " levels around it in its file)");
    }
    if (ec) return std::nullopt;
    if (auto where = non_finite_number(value)) {
        error_text = "number out of range at " + describe_json_path(*where);
        return std::nullopt;
    }
    return value;
}

}  // namespace procreg::detail
