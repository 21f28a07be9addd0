// procreg/detail/json_codec/pretty.hpp — JSON text as the seeds write it.
//
// Output is pretty-printed like serde_json::to_string_pretty (two spaces),
// which keeps the seeds' files diffable by their own tools. Records whose
// members are all plain (strings, bools, integers) are written member by
// member without building a JSON value first (`append_plain_pretty`).
//
// Invariant: every path here writes, byte for byte, what
// `pretty_print(value_from(record))` writes: strings are escaped exactly as
// boost::json::serialize (and serde_json) escape them, and doubles go to
// Boost.JSON's own formatter.
#pragma once

#include <procreg/detail/json_codec/records.hpp>

#include <boost/describe/bases.hpp>
#include <boost/describe/members.hpp>
#include <boost/describe/modifiers.hpp>
#include <boost/json.hpp>
#include <boost/mp11/algorithm.hpp>

#include <charconv>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>

namespace procreg::detail {

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
    // An object or an array: `empty` when it has no items, else `open`, each
    // item on a line of its own one level deeper (`print_item` writes it),
    // and `close` on a line at this level.
    const auto container = [&](const auto& items, const char* empty, char open, char close, auto&& print_item) {
        if (items.empty()) {
            out += empty;
            return;
        }
        out += open;
        bool first = true;
        for (const auto& item : items) {
            if (!first) out += ',';
            first = false;
            newline(indent + 1);
            print_item(item);
        }
        newline(indent);
        out += close;
    };
    switch (value.kind()) {
    case boost::json::kind::object:
        container(value.get_object(), "{}", '{', '}', [&](const boost::json::key_value_pair& item) {
            append_json_string(out, item.key());
            out += ": ";
            pretty_print_into(out, item.value(), indent + 1);
        });
        return;
    case boost::json::kind::array:
        container(value.get_array(), "[]", '[', ']',
                  [&](const boost::json::value& item) { pretty_print_into(out, item, indent + 1); });
        return;
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
