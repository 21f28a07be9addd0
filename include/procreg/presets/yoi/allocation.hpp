// procreg/presets/yoi/allocation.hpp — one pod's allocation, the record of
// the yoi registry, and its JSON form (the seed's `PodAllocation`).
//
// Invariant: the JSON form is the seed's, field for field; unknown fields
// of a stored allocation survive a rewrite through the storage's merge.
#pragma once

#include <procreg/presets/yoi/scope.hpp>
#include <procreg/record_traits.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace procreg::yoi {

/// One pod's scope allocation (the seed's `Allocation`).
struct allocation {
    std::string pod_name;                       ///< the pod's unique name (the record key)
    std::uint32_t pid = 0;                      ///< the owning process, probed for liveness
    std::string socket;                         ///< the pod's Unix-domain socket path
    std::vector<scope_rule> scope_allow;        ///< every rule granted (write and read)
    std::vector<scope_rule> scope_deny;         ///< write rules taken back out of `scope_allow`
    std::optional<std::string> delegated_from;  ///< the spawner, or none for a top-level pod
    std::optional<std::string> segment_id;      ///< the session segment it writes; none for a pre-reservation

    /// Field-wise equality.
    friend bool operator==(const allocation& a, const allocation& b) {
        return a.pod_name == b.pod_name && a.pid == b.pid && a.socket == b.socket && a.scope_allow == b.scope_allow &&
               a.scope_deny == b.scope_deny && a.delegated_from == b.delegated_from && a.segment_id == b.segment_id;
    }
    /// Field-wise inequality.
    friend bool operator!=(const allocation& a, const allocation& b) { return !(a == b); }
};

/// Encodes an allocation with the seed's field names, in the seed's order;
/// absent `delegated_from` / `segment_id` are written as null.
inline void tag_invoke(boost::json::value_from_tag, boost::json::value& out, const allocation& a) {
    boost::json::array allow;
    for (const auto& rule : a.scope_allow) allow.push_back(boost::json::value_from(rule));
    boost::json::array deny;
    for (const auto& rule : a.scope_deny) deny.push_back(boost::json::value_from(rule));
    boost::json::object object;
    object["pod_name"] = a.pod_name;
    object["pid"] = a.pid;
    object["socket"] = a.socket;
    object["scope_allow"] = std::move(allow);
    object["scope_deny"] = std::move(deny);
    object["delegated_from"] = a.delegated_from ? boost::json::value(*a.delegated_from) : boost::json::value(nullptr);
    object["segment_id"] = a.segment_id ? boost::json::value(*a.segment_id) : boost::json::value(nullptr);
    out = std::move(object);
}

namespace detail {

inline std::string json_string(const boost::json::value& value, const char* field) {
    if (!value.is_string()) throw std::invalid_argument(std::string(field) + ": expected a string");
    const auto& s = value.get_string();
    return std::string(s.data(), s.size());
}

inline std::optional<std::string> json_optional_string(const boost::json::object& object, const char* field) {
    const boost::json::value* value = object.if_contains(field);
    if (!value || value->is_null()) return std::nullopt;
    return json_string(*value, field);
}

inline std::vector<scope_rule> json_rules(const boost::json::value& value, const char* field) {
    const boost::json::array* array = value.if_array();
    if (!array) throw std::invalid_argument(std::string(field) + ": expected an array");
    std::vector<scope_rule> out;
    out.reserve(array->size());
    for (std::size_t i = 0; i < array->size(); ++i) {
        try {
            out.push_back(boost::json::value_to<scope_rule>((*array)[i]));
        } catch (const std::exception& e) {
            throw std::invalid_argument(std::string(field) + "[" + std::to_string(i) + "]: " + e.what());
        }
    }
    return out;
}

}  // namespace detail

/// Decodes an allocation as serde would: unknown keys ignored, a missing
/// `scope_deny` is empty (files written before deny rules existed), a
/// missing or null `delegated_from` / `segment_id` is none. Errors name the
/// field.
inline allocation tag_invoke(boost::json::value_to_tag<allocation>, const boost::json::value& value) {
    const boost::json::object* object = value.if_object();
    if (!object) throw std::invalid_argument("expected an object");
    const auto required = [&](const char* field) -> const boost::json::value& {
        const boost::json::value* found = object->if_contains(field);
        if (!found) throw std::invalid_argument(std::string(field) + ": missing field");
        return *found;
    };
    allocation a;
    a.pod_name = detail::json_string(required("pod_name"), "pod_name");
    try {
        a.pid = boost::json::value_to<std::uint32_t>(required("pid"));
    } catch (const std::invalid_argument&) {
        throw;
    } catch (const std::exception& e) {
        throw std::invalid_argument(std::string("pid: ") + e.what());
    }
    a.socket = detail::json_string(required("socket"), "socket");
    a.scope_allow = detail::json_rules(required("scope_allow"), "scope_allow");
    if (const boost::json::value* deny = object->if_contains("scope_deny"); deny && !deny->is_null()) {
        a.scope_deny = detail::json_rules(*deny, "scope_deny");
    }
    a.delegated_from = detail::json_optional_string(*object, "delegated_from");
    a.segment_id = detail::json_optional_string(*object, "segment_id");
    return a;
}

}  // namespace procreg::yoi

namespace procreg {
/// Allocations are keyed by pod name; the pod's pid decides liveness.
template <>
struct record_traits<yoi::allocation> {
    /// The pod name.
    static std::string_view key(const yoi::allocation& a) noexcept { return a.pod_name; }
    /// The owning process.
    static std::uint32_t pid(const yoi::allocation& a) noexcept { return a.pid; }
};
}  // namespace procreg
