// procreg/presets/yoi/operations.hpp — yoi's table operations: register,
// delegate, release and reclaim pods over any registry transaction.
//
// Invariant (what every operation keeps): the effective write scopes of the
// allocations in the table never overlap (see procreg/presets/yoi.hpp for
// the rule). The operations are free functions over the transaction of any
// `procreg::registry<yoi::allocation, Lock, Storage, Liveness>`: steps of
// one transaction, so a throw writes nothing.
//
// Layout: the table view that answers scope questions is
// presets/yoi/scope_table.hpp, the shared steps (normalisation, removal with
// reparenting, the errors) presets/yoi/table_steps.hpp; this header holds the
// public operations.
#pragma once

#include <procreg/presets/yoi/allocation.hpp>
#include <procreg/presets/yoi/error.hpp>
#include <procreg/presets/yoi/scope.hpp>
#include <procreg/presets/yoi/scope_table.hpp>
#include <procreg/presets/yoi/table_steps.hpp>

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

/// The allocation writing to session segment `segment_id`, or null: the
/// lookup by the table's secondary unique key. Pre-reservations (no
/// segment) never match.
template <class Tx>
const allocation* find_by_segment(const Tx& tx, std::string_view segment_id) {
    static_assert(detail::check_transaction<Tx>());
    return tx.find_if([&](const allocation& a) { return a.segment_id && *a.segment_id == segment_id; });
}

/// Removes the allocations whose owner the registry's liveness policy finds
/// dead, reparenting each one's children to its parent, and returns them
/// (the seed's `reclaim_stale`, with the policy instead of a bare kill).
template <class Tx>
std::vector<allocation> reclaim_stale(Tx& tx) {
    static_assert(detail::check_transaction<Tx>());
    return tx.reap([](const allocation& removed, Tx& t) { detail::reparent_children(t, removed); });
}

/// As `reclaim_stale`, but `is_alive(std::uint32_t pid)` decides (the
/// seed's test seam `reclaim_stale_with`). The registry's liveness policy
/// is not consulted.
template <class Tx, class Probe>
std::vector<allocation> reclaim_stale_with(Tx& tx, Probe&& is_alive) {
    static_assert(detail::check_transaction<Tx>());
    static_assert(std::is_invocable_r_v<bool, Probe&, std::uint32_t>,
                  "procreg::yoi: reclaim_stale_with needs a probe callable as bool(std::uint32_t pid)");
    std::vector<std::string> dead;
    tx.for_each([&](const allocation& a) {
        if (!is_alive(a.pid)) dead.push_back(a.pod_name);
    });
    std::vector<allocation> removed;
    removed.reserve(dead.size());
    for (const auto& name : dead) {
        if (auto gone = detail::remove_pod(tx, name)) removed.push_back(std::move(*gone));
    }
    return removed;
}

namespace detail {

/// The prologue of every registration, in the seed's order: reclaim stale
/// allocations, then refuse a taken name (`duplicate_pod_name`).
template <class Tx>
void reclaim_and_check_new(Tx& tx, const std::string& pod) {
    reclaim_stale(tx);
    if (tx.contains(pod)) throw_duplicate(tx, pod);
}

}  // namespace detail

/// Every pod, other than `exempt`, whose effective write scope meets the
/// write rule `rule`, the deepest in the delegation tree first. A read
/// rule has no owners. `rule` is normalised (`invalid_scope` if refused).
template <class Tx>
std::vector<conflict_owner> find_conflict_owners(const Tx& tx, const scope_rule& rule,
                                                 std::optional<std::string_view> exempt = std::nullopt) {
    static_assert(detail::check_transaction<Tx>());
    const auto fixed = detail::normalize_rules(tx, {rule}, std::string());
    const detail::scope_table view(tx);
    return view.owners(fixed.front(), exempt, {});
}

/// Whether `rule` lies in `pod`'s effective scope. A write rule must be
/// covered by the pod's write allow rules and meet neither its deny rules
/// nor its children's write rules; a read rule must be covered by its allow
/// rules. False for an unknown pod. Children count until they are
/// reclaimed, which errs on the safe side. `rule` is normalised
/// (`invalid_scope` if refused).
template <class Tx>
bool is_within_effective_write(const Tx& tx, std::string_view pod, const scope_rule& rule) {
    static_assert(detail::check_transaction<Tx>());
    const auto fixed = detail::normalize_rules(tx, {rule}, std::string(pod));
    const detail::scope_table view(tx);
    return view.within_effective(pod, fixed.front());
}

/// How `register_pod_with_deny` lets its deny rules excuse a write conflict.
enum class deny_reading {
    /// The seed's rule, and the default: the conflicts of a requested write
    /// rule are excused only when every write allow rule through which a
    /// competitor meets it is fully covered by one write deny rule;
    /// otherwise the registration is refused, naming the first competitor
    /// (even one that is covered). A Rust pod and a C++ pod sharing
    /// `pods.json` then agree on who may write.
    competitors_covered,
    /// procreg's earlier reading: the deny rules are subtracted from the
    /// request, and only what is left must be clear of every other pod. It
    /// admits all the seed admits and more: a request its own deny rules
    /// cancel (write `/src/core`, deny `/src/core`, while another pod holds
    /// `/src`) is admitted where the seed refuses it.
    subtracted_from_request,
};

/// Registers a top-level pod whose write scope is `scope_allow` minus the
/// write rules of `scope_deny` (the seed's `register_pod_with_deny`).
///
/// Steps, in the seed's order: normalise every rule (`invalid_scope`);
/// reclaim stale allocations; refuse a taken name (`duplicate_pod_name`),
/// a segment another allocation writes (`segment_conflict`, naming it and
/// its socket), and any write rule that meets another pod's effective write
/// scope unless `scope_deny` excuses it as `reading` says (`write_conflict`,
/// naming the pod and both rules). The deny rules thus let a restored pod
/// re-register around what its children still hold. The check is
/// structural, as in the seed: it does not verify that what the deny rules
/// excuse belongs to this pod's descendants.
///
/// Inside the caller's transaction, a refusal undoes the reclaim with
/// everything else; the registry form below keeps it, as the seed does.
template <class Tx>
void register_pod_with_deny(Tx& tx, std::string pod_name, std::uint32_t pid, std::string socket,
                            std::vector<scope_rule> scope_allow, std::vector<scope_rule> scope_deny,
                            std::string segment_id, deny_reading reading = deny_reading::competitors_covered) {
    static_assert(detail::check_transaction<Tx>());
    scope_allow = detail::normalize_rules(tx, scope_allow, pod_name);
    scope_deny = detail::normalize_rules(tx, scope_deny, pod_name);
    detail::reclaim_and_check_new(tx, pod_name);
    if (const allocation* holder = find_by_segment(tx, segment_id)) {
        scope_error_details details;
        details.pod = pod_name;
        details.competitor = holder->pod_name;
        details.competitor_socket = holder->socket;
        details.segment_id = segment_id;
        throw scope_error(errc::segment_conflict, detail::table_path(tx),
                          "pod " + detail::quote_name(pod_name) + ": session segment " + detail::quote_name(segment_id) +
                              " is already held by pod " + detail::quote_name(holder->pod_name) + " at " +
                              detail::quote_name(holder->socket),
                          holder->pod_name, std::move(details));
    }
    {
        const detail::scope_table view(tx);
        const auto own_deny = detail::regions_of(scope_deny, permission::write);
        const auto excused = [&](const conflict_owner& owner) {
            return std::any_of(scope_deny.begin(), scope_deny.end(), [&](const scope_rule& deny) {
                return deny.perm == permission::write && covers_fully(deny, owner.rule);
            });
        };
        for (const auto& rule : scope_allow) {
            if (rule.perm != permission::write) continue;
            if (reading == deny_reading::subtracted_from_request) {
                const auto owners = view.owners(rule, std::nullopt, own_deny);
                if (!owners.empty()) detail::throw_write_conflict(tx, pod_name, rule, owners.front());
                continue;
            }
            const auto owners = view.owners(rule, std::nullopt, {}, true);
            if (owners.empty() || std::all_of(owners.begin(), owners.end(), excused)) continue;
            detail::throw_write_conflict(tx, pod_name, rule, owners.front());
        }
    }
    tx.insert(allocation{std::move(pod_name), pid, std::move(socket), std::move(scope_allow), std::move(scope_deny),
                         std::nullopt, std::move(segment_id)});
}

/// Registers a top-level pod (the seed's `register_pod`): as
/// `register_pod_with_deny` with no deny rules.
template <class Tx>
void register_pod(Tx& tx, std::string pod_name, std::uint32_t pid, std::string socket,
                  std::vector<scope_rule> scope_allow, std::string segment_id) {
    register_pod_with_deny(tx, std::move(pod_name), pid, std::move(socket), std::move(scope_allow), {},
                           std::move(segment_id));
}

/// Registers `spawned` with scope delegated from `spawner` (the seed's
/// `delegate_scope`). Every rule must be allowed by `scope` (`not_subset`),
/// which is the spawner's delegation authority, not what it holds; a write
/// rule may overlap the spawner but no other pod's effective write scope
/// (`write_conflict`). `spawner` must be registered (`unknown_pod`),
/// `spawned` must not (`duplicate_pod_name`). The child gets no segment
/// (a pre-reservation) and no deny rules.
template <class Tx>
void delegate_scope(Tx& tx, std::string_view spawner, std::string spawned, std::uint32_t pid, std::string socket,
                    std::vector<scope_rule> scope_allow, const delegation_scope& scope) {
    static_assert(detail::check_transaction<Tx>());
    scope_allow = detail::normalize_rules(tx, scope_allow, spawned);
    const delegation_scope authority{detail::normalize_rules(tx, scope.rules, std::string(spawner))};
    detail::reclaim_and_check_new(tx, spawned);
    if (!tx.contains(spawner)) detail::throw_unknown(tx, spawner);
    {
        const detail::scope_table view(tx);
        for (const auto& rule : scope_allow) {
            if (!authority.allows(rule)) {
                scope_error_details details;
                details.pod = spawned;
                details.spawner = std::string(spawner);
                details.rule = rule;
                throw scope_error(errc::not_subset, detail::table_path(tx),
                                  "pod " + detail::quote_name(spawned) + ": " + describe(rule) +
                                      " is not within the delegation scope of spawner " + detail::quote_name(spawner),
                                  std::string(spawner), std::move(details));
            }
            const auto owners = view.owners(rule, spawner, {});
            if (!owners.empty()) detail::throw_write_conflict(tx, spawned, rule, owners.front());
        }
    }
    tx.insert(allocation{std::move(spawned), pid, std::move(socket), std::move(scope_allow), {},
                         std::string(spawner), std::nullopt});
}

/// Removes `pod_name`'s allocation (`unknown_pod` if none); its children
/// are reparented to its own parent (the seed's `release_pod`).
template <class Tx>
void release_pod(Tx& tx, std::string_view pod_name) {
    static_assert(detail::check_transaction<Tx>());
    if (!detail::remove_pod(tx, pod_name)) detail::throw_unknown(tx, pod_name);
}

/// Takes a delegation back into its parent (the seed's
/// `reclaim_delegated_scope`). For each write rule of `delegated_scope`, at
/// most one exactly equal rule is removed from `parent`'s `scope_deny`, so
/// each call peels one deny layer; then `child`'s allocation, if still
/// there, is removed and its children reparented to its parent. Idempotent
/// when nothing matches; works when the child is already gone; no error
/// when either pod is missing. Rules are normalised (`invalid_scope`).
template <class Tx>
void reclaim_delegated_scope(Tx& tx, std::string_view parent, std::string_view child,
                             const std::vector<scope_rule>& delegated_scope) {
    static_assert(detail::check_transaction<Tx>());
    const auto delegated = detail::normalize_rules(tx, delegated_scope, std::string(child));
    if (const allocation* found = tx.find(parent)) {
        std::vector<scope_rule> deny = found->scope_deny;
        bool changed = false;
        for (const auto& rule : delegated) {
            if (rule.perm != permission::write) continue;
            const auto match = std::find(deny.begin(), deny.end(), rule);
            if (match != deny.end()) {
                deny.erase(match);
                changed = true;
            }
        }
        if (changed) tx.modify(parent, [&](allocation& a) { a.scope_deny = std::move(deny); });
    }
    detail::remove_pod(tx, child);
}

}  // namespace procreg::yoi
