// procreg/storage/claim_file/formats.hpp — how a claim looks on disk.
//
// A claim format turns the bytes of a claim file into the JSON object the
// registry sees, and back: trusty-memory's `<pid>\n` (`pid_text_format`)
// and INSOMNIA's pretty-printed JSON object (`json_record_format`). Users
// include procreg/storage/claim_file.hpp, which includes this.
//
// Invariants:
// - a format never drops data silently: `serialize` refuses (with the
//   reason) a record it has no room for;
// - `decode_claim` is the one reader of claim bytes: the storage's loads,
//   its peeks and the read-back proof before a publish all go through it,
//   under the same limits, so what a writer publishes is what its readers
//   accept.
#pragma once

#include <procreg/detail/json_codec.hpp>
#include <procreg/detail/json_strict_parse.hpp>
#include <procreg/stored_record.hpp>

#include <boost/json.hpp>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace procreg::storage {

/// Claim format: the plain text `<pid>\n` of trusty-memory's `daemon.lock`.
/// The record seen by the registry is the JSON object `{"pid": <pid>}`.
struct pid_text_format {
    /// Name used in error messages.
    static constexpr const char* name = "pid text";

    /// Reads "<pid>" surrounded by optional whitespace (what Rust's
    /// `trim().parse::<u32>()` accepts, a leading '+' included). Returns
    /// nothing, with the reason in `why`, for an empty or malformed file.
    static std::optional<boost::json::object> parse(std::string_view bytes, const detail::json_limits& /*limits*/,
                                                    std::string& why) {
        const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
        while (!bytes.empty() && is_space(bytes.front())) bytes.remove_prefix(1);
        while (!bytes.empty() && is_space(bytes.back())) bytes.remove_suffix(1);
        if (bytes.empty()) {
            why = "the file is empty";
            return std::nullopt;
        }
        std::string_view digits = bytes;
        if (digits.front() == '+') digits.remove_prefix(1);
        if (digits.empty()) {
            why = "not a pid";
            return std::nullopt;
        }
        std::uint64_t pid = 0;
        for (const char c : digits) {
            if (c < '0' || c > '9') {
                why = "not a pid: " + detail::quote_untrusted(bytes, 32);  // escaped: file bytes in a log line
                return std::nullopt;
            }
            const auto digit = static_cast<std::uint64_t>(c - '0');
            if (pid > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) {
                why = "pid out of range";
                return std::nullopt;
            }
            pid = pid * 10 + digit;
        }
        boost::json::object out;
        out["pid"] = pid;
        return out;
    }

    /// Writes `<pid>\n`. Refuses (returns nothing, reason in `why`) a record
    /// with any non-null field besides a non-negative integer `pid`: the
    /// format has no room for it and dropping it silently would lose data.
    /// Keys starting with `procreg_` are procreg's own bookkeeping (the owner
    /// identity a liveness policy stamps) and are dropped instead: such a
    /// claim is then judged by its pid alone, as one the seed wrote.
    static std::optional<std::string> serialize(const boost::json::object& record, std::string& why) {
        const auto found = record.find("pid");
        if (found == record.end()) {
            why = "the record has no \"pid\" field";
            return std::nullopt;
        }
        for (const auto& item : record) {
            if (item.key() == "pid" || item.value().is_null()) continue;  // null (an empty optional) loses nothing
            if (item.key().substr(0, 8) == "procreg_") continue;          // bookkeeping: see above
            why = "the pid text format holds only a pid; the record also has " +
                  detail::quote_untrusted(item.key());
            return std::nullopt;
        }
        const boost::json::value& pid = found->value();
        if (pid.is_uint64()) return std::to_string(pid.get_uint64()) + "\n";
        if (pid.is_int64() && pid.get_int64() >= 0) return std::to_string(pid.get_int64()) + "\n";
        why = "\"pid\" is not a non-negative integer";
        return std::nullopt;
    }
};

/// Claim format: one JSON object, pretty-printed like serde_json's
/// `to_string_pretty` without a trailing newline (INSOMNIA's lock file).
struct json_record_format {
    /// Name used in error messages.
    static constexpr const char* name = "JSON record";

    /// Parses one JSON object within the depth limit.
    static std::optional<boost::json::object> parse(std::string_view bytes, const detail::json_limits& limits,
                                                    std::string& why) {
        auto parsed = detail::parse_json(bytes, limits, why);
        if (!parsed) {
            why = "cannot parse JSON: " + why;
            return std::nullopt;
        }
        if (!parsed->is_object()) {
            why = "the top level is not a JSON object";
            return std::nullopt;
        }
        return std::move(parsed->as_object());
    }

    /// Pretty-prints the object.
    static std::optional<std::string> serialize(const boost::json::object& record, std::string& /*why*/) {
        return detail::pretty_print(record);
    }
};

namespace detail_claim {

template <class Format, class = void>
struct is_format : std::false_type {};
template <class Format>
struct is_format<Format,
                 std::enable_if_t<std::is_same_v<decltype(Format::parse(std::string_view{},
                                                                        std::declval<const detail::json_limits&>(),
                                                                        std::declval<std::string&>())),
                                                 std::optional<boost::json::object>> &&
                                  std::is_same_v<decltype(Format::serialize(std::declval<const boost::json::object&>(),
                                                                            std::declval<std::string&>())),
                                                 std::optional<std::string>> &&
                                  std::is_convertible_v<decltype(Format::name), const char*>>> : std::true_type {};

/// Parses and decodes claim bytes; nothing (reason in `why`) when they are
/// not a `Record` in `Format` within `limits`.
template <class Format, class Record>
std::optional<stored_record<Record>> decode_claim(std::string_view bytes, const detail::json_limits& limits,
                                                  std::string& why) {
    if (bytes.size() > limits.max_bytes) {  // whatever the format: the reader's fstat check
        why = "too big: " + std::to_string(bytes.size()) + " bytes, above the limit of " +
              std::to_string(limits.max_bytes) + " bytes";
        return std::nullopt;
    }
    auto object = Format::parse(bytes, limits, why);
    if (!object) return std::nullopt;
    try {
        Record value = detail::decode_value<Record>(boost::json::value(*object), "");
        return stored_record<Record>{std::move(value), std::move(*object)};
    } catch (const detail::decode_error& e) {
        why = e.what();
        return std::nullopt;
    }
}

}  // namespace detail_claim

}  // namespace procreg::storage
