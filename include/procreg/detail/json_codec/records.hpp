// procreg/detail/json_codec/records.hpp — records to and from JSON objects.
//
// Decoding is lenient where serde is: a described struct is decoded member
// by member, so unknown keys are ignored and a missing `std::optional`
// member is empty; errors name the field ("sessions[3].pid: ..."). Encoding
// merges the record over the object last read from disk, so keys this
// program does not know survive a rewrite.
//
// Invariant: nothing is written that would not read back. `encode_over`
// proves the text it produced parses within the reader's limits and
// decodes as the record type (`read_back`) before any caller writes it; a
// record that would not is a `decode_error`, never a file nobody can load.
#pragma once

#include <procreg/detail/json_codec/parse.hpp>

#include <boost/describe/members.hpp>
#include <boost/describe/modifiers.hpp>
#include <boost/json.hpp>
#include <boost/mp11/algorithm.hpp>

#include <cstddef>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace procreg::detail {

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

}  // namespace procreg::detail
