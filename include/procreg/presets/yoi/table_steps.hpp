// procreg/presets/yoi/table_steps.hpp — the steps yoi's operations are built from.
//
// The transaction check every operation starts with, rule normalisation,
// removing a pod with the reparenting of its children, and the scope errors
// the operations throw (`write_conflict`, `duplicate_pod_name`,
// `unknown_pod`), each naming the pods involved.
//
// Invariants: removing a pod reparents its children to its own parent, so
// the delegation tree stays connected; every pod name or path read from
// the table reaches a message only through `quote_untrusted`, so a
// hand-edited file cannot forge a log line.
#pragma once

#include <procreg/detail/quote_untrusted.hpp>
#include <procreg/presets/yoi/allocation.hpp>
#include <procreg/presets/yoi/error.hpp>
#include <procreg/presets/yoi/scope.hpp>
#include <procreg/presets/yoi/scope_table.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace procreg::yoi {

namespace detail {

template <class Tx, class = void>
struct is_pod_transaction : std::false_type {};
template <class Tx>
struct is_pod_transaction<
    Tx, std::enable_if_t<std::is_same_v<decltype(std::declval<const Tx&>().find(std::string_view{})), const allocation*>>>
    : std::true_type {};

template <class Tx>
constexpr bool check_transaction() {
    static_assert(is_pod_transaction<Tx>::value,
                  "procreg::yoi: operations take the transaction of a registry whose Record is yoi::allocation");
    return true;
}

template <class Tx>
std::filesystem::path table_path(const Tx& tx) {
    return tx.storage_session().path();
}

// A pod name (or another string of the table) for a message: read from the
// file, so quoted by the one function that escapes what could forge a log line.
inline std::string quote_name(std::string_view s) { return procreg::detail::quote_untrusted(s, 256); }

/// `rules` with normalised targets; an invalid one is `invalid_scope`.
template <class Tx>
std::vector<scope_rule> normalize_rules(const Tx& tx, const std::vector<scope_rule>& rules, const std::string& pod) {
    std::vector<scope_rule> out;
    out.reserve(rules.size());
    for (const auto& rule : rules) {
        std::string why;
        auto fixed = normalized(rule, why);
        if (!fixed) {
            scope_error_details details;
            details.pod = pod;
            details.rule = rule;
            const std::string who = pod.empty() ? std::string() : "pod " + quote_name(pod) + ": ";
            throw scope_error(errc::invalid_scope, table_path(tx),
                              who + "scope rule target " + quote_name(rule.target) + ": " + why, pod, std::move(details));
        }
        out.push_back(std::move(*fixed));
    }
    return out;
}

/// Points the children of `removed` at `removed`'s own parent, so the
/// delegation tree stays connected (the seed's reparenting).
template <class Tx>
void reparent_children(Tx& tx, const allocation& removed) {
    std::optional<std::string> new_parent = removed.delegated_from;
    if (new_parent && *new_parent == removed.pod_name) new_parent.reset();
    std::vector<std::string> children;
    tx.for_each([&](const allocation& a) {
        if (a.delegated_from && *a.delegated_from == removed.pod_name && a.pod_name != removed.pod_name) {
            children.push_back(a.pod_name);
        }
    });
    for (const auto& child : children) {
        tx.modify(child, [&](allocation& a) { a.delegated_from = new_parent; });
    }
}

/// Removes `pod`'s allocation, if there is one, reparents its children and
/// returns it.
template <class Tx>
std::optional<allocation> remove_pod(Tx& tx, std::string_view pod) {
    const allocation* found = tx.find(pod);
    if (!found) return std::nullopt;
    allocation removed = *found;
    tx.erase(pod);
    reparent_children(tx, removed);
    return removed;
}

template <class Tx>
[[noreturn]] void throw_write_conflict(const Tx& tx, const std::string& pod, const scope_rule& rule,
                                       const conflict_owner& owner) {
    scope_error_details details;
    details.pod = pod;
    details.competitor = owner.pod_name;
    details.rule = rule;
    details.competitor_rule = owner.rule;
    throw scope_error(errc::write_conflict, table_path(tx),
                      "pod " + quote_name(pod) + ": requested " + describe(rule) + " conflicts with pod " +
                          quote_name(owner.pod_name) + " holding " + describe(owner.rule),
                      owner.pod_name, std::move(details));
}

template <class Tx>
[[noreturn]] void throw_duplicate(const Tx& tx, const std::string& pod) {
    scope_error_details details;
    details.pod = pod;
    throw scope_error(errc::duplicate_pod_name, table_path(tx), "pod " + quote_name(pod) + " is already registered", pod,
                      std::move(details));
}

template <class Tx>
[[noreturn]] void throw_unknown(const Tx& tx, std::string_view pod) {
    scope_error_details details;
    details.pod = std::string(pod);
    throw scope_error(errc::unknown_pod, table_path(tx), "pod " + quote_name(pod) + " is not registered",
                      std::string(pod), std::move(details));
}

}  // namespace detail

}  // namespace procreg::yoi
