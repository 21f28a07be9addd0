// procreg/detail/json_codec.hpp — JSON in and out, the same way for every storage.
//
// Why this exists rather than plain value_to/value_from:
// - Boost.JSON 1.81 refuses to convert an object with keys a described struct
//   does not know (`size_mismatch`). Registries are shared between programs
//   and versions, and procreg stores extra fields (owner identity), so
//   decoding must ignore unknown keys, as serde does by default.
// - A missing `std::optional` member decodes as empty (serde's `Option`).
// - Decode errors name the field ("sessions[3].pid: ...") so a corrupt file
//   can be fixed by hand.
// - Encoding merges the record over the object last read from disk, so keys
//   this program does not know survive a rewrite.
// - Output is pretty-printed like serde_json::to_string_pretty (two spaces),
//   which keeps the seeds' files diffable by their own tools.
// - Every number read or written is finite. Boost.JSON 1.81 reads a number
//   beyond the double range (`1e400`) as infinity and serializes infinity
//   and NaN as `Infinity` / `NaN`, which are not JSON: a file holding such
//   a number would load, and the next save would write a file that no
//   longer parses (found by fuzz/json_table_algocline). Such a number is
//   refused where it enters: a parse error on reading (serde_json also
//   says "number out of range"), a decode error on encoding.
#pragma once

#include <procreg/detail/json_strict_parse.hpp>

#include <boost/describe/bases.hpp>
#include <boost/describe/members.hpp>
#include <boost/describe/modifiers.hpp>
#include <boost/json.hpp>
#include <boost/mp11/algorithm.hpp>

#include <charconv>
#include <cmath>
#include <cstddef>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

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

/// A decode failure; `where` is the dotted path of the offending field.
class decode_error : public std::runtime_error {
public:
    explicit decode_error(const std::string& what) : std::runtime_error(what) {}
};

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};

template <class T>
struct is_vector : std::false_type {};
template <class T, class A>
struct is_vector<std::vector<T, A>> : std::true_type {};

// Described structs are decoded member by member so unknown keys are
// ignored; every other type goes through Boost.JSON's value_to (and so
// through the user's tag_invoke, if any).
template <class T>
constexpr bool uses_lenient_decoding_v =
    boost::describe::has_describe_members<T>::value && std::is_class_v<T>;

template <class T>
struct is_vector_of_described : std::false_type {};
template <class T, class A>
struct is_vector_of_described<std::vector<T, A>> : std::bool_constant<uses_lenient_decoding_v<T>> {};

template <class T>
T decode_value(const boost::json::value& value, const std::string& where);

template <class T>
T decode_described(const boost::json::value& value, const std::string& where) {
    const boost::json::object* object = value.if_object();
    if (!object) throw decode_error(where + ": expected an object");
    T out{};
    using members = boost::describe::describe_members<T, boost::describe::mod_public>;
    boost::mp11::mp_for_each<members>([&](auto member) {
        using member_type = std::remove_cv_t<std::remove_reference_t<decltype(out.*member.pointer)>>;
        const std::string field = where.empty() ? std::string(member.name) : where + "." + member.name;
        const auto found = object->find(member.name);
        if (found == object->end()) {
            if constexpr (is_optional<member_type>::value) {
                out.*member.pointer = std::nullopt;
                return;
            } else {
                throw decode_error(field + ": missing field");
            }
        }
        out.*member.pointer = decode_value<member_type>(found->value(), field);
    });
    return out;
}

template <class T>
T decode_value(const boost::json::value& value, const std::string& where) {
    if constexpr (is_optional<T>::value) {
        if (value.is_null()) return std::nullopt;
        return decode_value<typename T::value_type>(value, where);
    } else if constexpr (is_vector_of_described<T>::value) {
        const boost::json::array* array = value.if_array();
        if (!array) throw decode_error(where + ": expected an array");
        T out;
        out.reserve(array->size());
        for (std::size_t i = 0; i < array->size(); ++i) {
            out.push_back(decode_value<typename T::value_type>((*array)[i], where + "[" + std::to_string(i) + "]"));
        }
        return out;
    } else if constexpr (uses_lenient_decoding_v<T>) {
        return decode_described<T>(value, where);
    } else {
        try {
            return boost::json::value_to<T>(value);
        } catch (const std::exception& e) {
            throw decode_error((where.empty() ? std::string("value") : where) + ": " + e.what());
        }
    }
}

template <class T>
struct optional_value_type {
    using type = T;
};
template <class T>
struct optional_value_type<std::optional<T>> {
    using type = T;
};

/// Adds to `fresh` every key of `base` that `fresh` lacks. The record's own
/// fields (in `fresh`) win and keep their order; keys only `base` has
/// (unknown to this program, or stamped identity) follow them. Recursion
/// into an object present on both sides happens only where `T` says that
/// member is itself a described struct (AgentMux's `data`): its unknown keys
/// survive too. A map, or any object the type does not describe member by
/// member, is the record's to state whole — merging it would resurrect keys
/// the program removed. Arrays and scalars are never merged.
template <class T>
void merge_under(boost::json::object& fresh, const boost::json::object& base) {
    for (const auto& item : base) {
        auto existing = fresh.find(item.key());
        if (existing == fresh.end()) {
            fresh.emplace(item.key(), item.value());
            continue;
        }
        if constexpr (uses_lenient_decoding_v<T>) {
            if (!existing->value().is_object() || !item.value().is_object()) continue;
            using members = boost::describe::describe_members<T, boost::describe::mod_public>;
            boost::mp11::mp_for_each<members>([&](auto member) {
                if (item.key() != member.name) return;
                using member_type = std::remove_cv_t<std::remove_reference_t<decltype(std::declval<T&>().*member.pointer)>>;
                using inner = typename optional_value_type<member_type>::type;
                if constexpr (uses_lenient_decoding_v<inner>) {
                    merge_under<inner>(existing->value().as_object(), item.value().as_object());
                }
            });
        }
    }
}

/// `record` as a JSON object merged over `base` (the object last read from
/// disk, plus identity fields), so what `base` has that the record type does
/// not know is kept. Not yet proven to read back: see `read_back`.
template <class Record>
boost::json::object merge_over(const boost::json::object& base, const Record& record) {
    boost::json::value fresh = boost::json::value_from(record);
    if (!fresh.is_object()) throw decode_error("a record must convert to a JSON object");
    if (auto where = non_finite_number(fresh)) {
        throw decode_error(describe_json_path(*where) + ": the number is infinite or NaN, which JSON cannot hold");
    }
    boost::json::object& object = fresh.as_object();
    if (!base.empty()) merge_under<Record>(object, base);
    return std::move(object);
}

/// Proves that `text`, a record's JSON as it is about to be written, reads
/// back: parses it with `limits` (the reader's size and depth limits, less
/// what the file adds around `text`) and decodes it as `Record`, exactly as
/// the next load will. A record that would not (too big, too deep, a string
/// that is not UTF-8, a value the type's own decoder refuses, a number JSON
/// cannot hold) is a `decode_error` here, instead of a saved file that
/// every process then fails to read. With `value` / `json`, what the next load will see is
/// handed out (only on success), so a cache holds exactly what the file holds.
template <class Record>
void read_back(std::string_view text, const json_limits& limits, Record* value = nullptr,
               boost::json::object* json = nullptr) {
    std::string why;
    auto parsed = parse_json(text, limits, why);
    if (!parsed) throw decode_error("the record would not read back: " + why);
    if (!parsed->is_object()) throw decode_error("the record would not read back: not a JSON object");
    try {
        Record decoded = decode_value<Record>(*parsed, "");
        if (value) *value = std::move(decoded);
    } catch (const decode_error& e) {
        throw decode_error(std::string("the record would not read back: ") + e.what());
    }
    if (json) *json = std::move(parsed->as_object());
}

/// Encodes `record` over `base` (`merge_over`) and proves the result reads
/// back (`read_back` of its compact serialization) before anything is
/// written. With `read_back_value`, the decoded value is handed out.
template <class Record>
boost::json::object encode_over(const boost::json::object& base, const Record& record,
                                const json_limits& limits = {}, Record* read_back_value = nullptr) {
    boost::json::object object = merge_over(base, record);
    read_back<Record>(boost::json::serialize(object), limits, read_back_value);
    return object;
}

/// Appends `text` as a JSON string literal, escaped exactly as
/// boost::json::serialize (and serde_json) escape it: `"` and `\\`, the
/// control characters as \b \t \n \f \r or \u00xx (lower-case hex), every
/// other byte as is. Runs of bytes needing no escape are appended whole, so
/// the usual key or value costs one append, not a serializer and a string.
inline void append_json_string(std::string& out, std::string_view text) {
    static constexpr char hex[] = "0123456789abcdef";
    out += '"';
    std::size_t run = 0;  // start of the bytes not yet appended
    for (std::size_t i = 0; i < text.size(); ++i) {
        const auto byte = static_cast<unsigned char>(text[i]);
        if (byte >= 0x20 && byte != '"' && byte != '\\') continue;
        out.append(text.data() + run, i - run);
        run = i + 1;
        out += '\\';
        switch (byte) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '\b': out += 'b'; break;
        case '\t': out += 't'; break;
        case '\n': out += 'n'; break;
        case '\f': out += 'f'; break;
        case '\r': out += 'r'; break;
        default:
            out += "u00";
            out += hex[byte >> 4];
            out += hex[byte & 15];
        }
    }
    out.append(text.data() + run, text.size() - run);
    out += '"';
}

/// Appends `value` as boost::json::serialize writes it. Strings, integers
/// and literals are written here without a temporary string; doubles go to
/// Boost.JSON's own formatter, whose shortest round-trip output the files
/// already hold.
inline void append_json_scalar(std::string& out, const boost::json::value& value) {
    char digits[24];
    switch (value.kind()) {
    case boost::json::kind::string: append_json_string(out, value.get_string()); return;
    case boost::json::kind::int64: {
        const auto end = std::to_chars(digits, digits + sizeof digits, value.get_int64()).ptr;
        out.append(digits, static_cast<std::size_t>(end - digits));
        return;
    }
    case boost::json::kind::uint64: {
        const auto end = std::to_chars(digits, digits + sizeof digits, value.get_uint64()).ptr;
        out.append(digits, static_cast<std::size_t>(end - digits));
        return;
    }
    case boost::json::kind::bool_: out += value.get_bool() ? "true" : "false"; return;
    case boost::json::kind::null: out += "null"; return;
    default: out += boost::json::serialize(value); return;
    }
}

inline void pretty_print_into(std::string& out, const boost::json::value& value, int indent) {
    const auto newline = [&](int level) {
        out += '\n';
        out.append(static_cast<std::size_t>(level) * 2, ' ');
    };
    switch (value.kind()) {
    case boost::json::kind::object: {
        const auto& object = value.get_object();
        if (object.empty()) {
            out += "{}";
            return;
        }
        out += '{';
        bool first = true;
        for (const auto& item : object) {
            if (!first) out += ',';
            first = false;
            newline(indent + 1);
            append_json_string(out, item.key());
            out += ": ";
            pretty_print_into(out, item.value(), indent + 1);
        }
        newline(indent);
        out += '}';
        return;
    }
    case boost::json::kind::array: {
        const auto& array = value.get_array();
        if (array.empty()) {
            out += "[]";
            return;
        }
        out += '[';
        bool first = true;
        for (const auto& item : array) {
            if (!first) out += ',';
            first = false;
            newline(indent + 1);
            pretty_print_into(out, item, indent + 1);
        }
        newline(indent);
        out += ']';
        return;
    }
    default:
        append_json_scalar(out, value);
        return;
    }
}

// A member written straight from the C++ value, as value_from would
// convert it (the very dispatch Boost.JSON 1.81 applies): a string, a bool,
// or an integer other than a character type.
template <class T>
constexpr bool is_plain_member_v =
    (std::is_same_v<boost::json::detail::value_from_implementation<T>, boost::json::detail::string_like_conversion_tag> &&
     std::is_same_v<T, std::string>) ||
    (std::is_same_v<boost::json::detail::value_from_implementation<T>, boost::json::detail::bool_conversion_tag>) ||
    (std::is_same_v<boost::json::detail::value_from_implementation<T>, boost::json::detail::number_conversion_tag> &&
     std::is_integral_v<T> && !std::is_same_v<T, char> && !std::is_same_v<T, signed char> &&
     !std::is_same_v<T, unsigned char> && !std::is_same_v<T, wchar_t> && !std::is_same_v<T, char16_t> &&
     !std::is_same_v<T, char32_t>);

template <class Record, class Member>
using member_type_t = std::remove_cv_t<std::remove_reference_t<decltype(std::declval<Record&>().*Member::pointer)>>;

template <class Record, class Members>
struct all_members_plain;
template <class Record, template <class...> class List, class... Member>
struct all_members_plain<Record, List<Member...>>
    : std::bool_constant<(is_plain_member_v<member_type_t<Record, Member>> && ...)> {};

/// True for a record type that value_from converts as a described struct
/// (no conversion of its own, no bases) whose members are all plain
/// (`is_plain_member_v`): `append_plain_pretty` then writes exactly what
/// `pretty_print_into(value_from(record))` writes, without building it.
template <class Record, class = void>
struct encodes_plainly : std::false_type {};
template <class Record>
struct encodes_plainly<Record, std::enable_if_t<uses_lenient_decoding_v<Record>>>
    : std::bool_constant<
          std::is_same_v<boost::json::detail::value_from_implementation<Record>,
                         boost::json::detail::described_class_conversion_tag> &&
          boost::mp11::mp_empty<boost::describe::describe_bases<Record, boost::describe::mod_any_access>>::value &&
          all_members_plain<Record, boost::describe::describe_members<Record, boost::describe::mod_public>>::value> {};

/// Appends `record` as `pretty_print_into(out, value_from(record), indent)`
/// does, member by member (only for `encodes_plainly` types).
template <class Record>
void append_plain_pretty(std::string& out, const Record& record, int indent) {
    using members = boost::describe::describe_members<Record, boost::describe::mod_public>;
    const auto newline = [&](int level) {
        out += '\n';
        out.append(static_cast<std::size_t>(level) * 2, ' ');
    };
    if constexpr (boost::mp11::mp_empty<members>::value) {
        out += "{}";
    } else {
        out += '{';
        bool first = true;
        boost::mp11::mp_for_each<members>([&](auto member) {
            if (!first) out += ',';
            first = false;
            newline(indent + 1);
            append_json_string(out, member.name);
            out += ": ";
            const auto& field = record.*member.pointer;
            using field_type = std::remove_cv_t<std::remove_reference_t<decltype(field)>>;
            if constexpr (std::is_same_v<field_type, bool>) {
                out += field ? "true" : "false";
            } else if constexpr (std::is_integral_v<field_type>) {
                char digits[24];
                const auto end = std::to_chars(digits, digits + sizeof digits, field).ptr;
                out.append(digits, static_cast<std::size_t>(end - digits));
            } else {
                append_json_string(out, field);
            }
        });
        newline(indent);
        out += '}';
    }
}

/// Pretty-prints like serde_json's PrettyFormatter (two-space indent).
inline std::string pretty_print(const boost::json::value& value) {
    std::string out;
    pretty_print_into(out, value, 0);
    return out;
}

}  // namespace procreg::detail
