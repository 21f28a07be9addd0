// procreg/presets/yoi/operations.hpp — yoi's table operations: register,
// delegate, release and reclaim pods over any registry transaction.
//
// Invariant (what every operation keeps): the effective write scopes of the
// allocations in the table never overlap (see procreg/presets/yoi.hpp for
// the rule). The operations are free functions over the transaction of any
// `procreg::registry<yoi::allocation, Lock, Storage, Liveness>`: steps of
// one transaction, so a throw writes nothing.
#pragma once

#include <procreg/detail/quote_untrusted.hpp>
#include <procreg/presets/yoi/allocation.hpp>
#include <procreg/presets/yoi/error.hpp>
#include <procreg/presets/yoi/scope.hpp>

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

/// A pod whose effective write scope meets a requested rule, and the rule of
/// its own through which it does.
struct conflict_owner {
    std::string pod_name;  ///< the pod
    scope_rule rule;       ///< its write allow rule that overlaps
};

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

/// A read-only view of the table for scope questions: for each pod, its
/// write allow regions and what is subtracted from them (its write deny
/// rules and its children's write allow rules). The view borrows the
/// transaction's records (regions point into them), so it must not outlive
/// the next change to the transaction, and is neither copied nor moved.
class scope_table {
public:
    template <class Tx>
    explicit scope_table(const Tx& tx) {
        pods_.reserve(tx.size());
        tx.for_each([&](const allocation& a) { pods_.push_back(&a); });
        for (std::size_t i = 0; i < pods_.size(); ++i) index_.emplace(pods_[i]->pod_name, i);
        allow_w_.resize(pods_.size());
        subtracted_.resize(pods_.size());
        depth_.assign(pods_.size(), 0);
        for (std::size_t i = 0; i < pods_.size(); ++i) {
            allow_w_[i] = regions_of(pods_[i]->scope_allow, permission::write);
            subtracted_[i] = regions_of(pods_[i]->scope_deny, permission::write);
        }
        for (std::size_t j = 0; j < pods_.size(); ++j) {
            const auto parent = parent_of(j);
            if (!parent || *parent == j) continue;
            auto& into = subtracted_[*parent];
            into.insert(into.end(), allow_w_[j].begin(), allow_w_[j].end());
        }
        // Depth in the delegation tree, for naming the most specific owner
        // first. A cycle (only possible in a hand-edited file) stops the walk.
        for (std::size_t i = 0; i < pods_.size(); ++i) {
            std::size_t at = i;
            std::size_t steps = 0;
            while (steps < pods_.size()) {
                const auto parent = parent_of(at);
                if (!parent) break;
                at = *parent;
                ++steps;
            }
            depth_[i] = steps;
        }
    }

    scope_table(const scope_table&) = delete;
    scope_table& operator=(const scope_table&) = delete;

    /// The pods, other than `exempt`, whose effective write scope meets
    /// `request` outside `extra` (the requester's own deny rules), deepest
    /// in the delegation tree first, then in storage order. Each pod is
    /// listed once, with its first write rule that meets `request`; with
    /// `every_rule`, once for each such rule (what the seed's deny check
    /// must see: a competitor is excused only if all its overlapping rules are).
    std::vector<conflict_owner> owners(const scope_rule& request, std::optional<std::string_view> exempt,
                                       const std::vector<region>& extra, bool every_rule = false) const {
        struct hit {
            std::size_t pod;
            const scope_rule* rule;
        };
        std::vector<hit> hits;
        if (request.perm != permission::write) return {};
        const region wanted = region_of(request);
        for (std::size_t i = 0; i < pods_.size(); ++i) {
            if (exempt && pods_[i]->pod_name == *exempt) continue;
            for (const scope_rule* rule : claims(i, wanted, extra, every_rule)) hits.push_back(hit{i, rule});
        }
        std::stable_sort(hits.begin(), hits.end(),
                         [&](const hit& a, const hit& b) { return depth_[a.pod] > depth_[b.pod]; });
        std::vector<conflict_owner> out;
        out.reserve(hits.size());
        for (const auto& h : hits) out.push_back(conflict_owner{pods_[h.pod]->pod_name, *h.rule});
        return out;
    }

    /// Whether `rule` lies inside `pod`'s effective scope: for a write rule,
    /// inside its write allow rules and clear of its deny rules and of its
    /// children's write rules; for a read rule, inside its allow rules.
    bool within_effective(std::string_view pod, const scope_rule& rule) const {
        const auto found = index_.find(pod);
        if (found == index_.end()) return false;
        const std::size_t i = found->second;
        const region wanted = region_of(rule);
        if (rule.perm == permission::read) {
            return covered_by(wanted, regions_of(pods_[i]->scope_allow, std::nullopt));
        }
        if (!covered_by(wanted, allow_w_[i])) return false;
        for (const auto& taken : subtracted_[i]) {
            if (intersect(wanted, taken)) return false;
        }
        return true;
    }

private:
    /// The index of pod `i`'s parent, when it names a pod in the table.
    std::optional<std::size_t> parent_of(std::size_t i) const {
        const auto& parent = pods_[i]->delegated_from;
        if (!parent) return std::nullopt;
        const auto found = index_.find(*parent);
        if (found == index_.end()) return std::nullopt;
        return found->second;
    }

    /// The write allow rules of pod `i` through which its effective write
    /// scope meets `wanted` outside `extra`: the first one only, or with
    /// `every_rule` all of them.
    std::vector<const scope_rule*> claims(std::size_t i, const region& wanted, const std::vector<region>& extra,
                                          bool every_rule) const {
        std::vector<const scope_rule*> out;
        std::optional<std::vector<region>> cover;  // built only once a rule meets `wanted`
        std::size_t k = 0;                         // allow_w_[i][k] is the region of the k-th write rule
        for (const auto& rule : pods_[i]->scope_allow) {
            if (rule.perm != permission::write) continue;
            const auto shared = intersect(allow_w_[i][k++], wanted);
            if (!shared) continue;
            if (!cover) {
                cover = subtracted_[i];
                cover->insert(cover->end(), extra.begin(), extra.end());
            }
            if (covered_by(*shared, *cover)) continue;
            out.push_back(&rule);
            if (!every_rule) break;
        }
        return out;
    }

    std::vector<const allocation*> pods_;  ///< the transaction's records, in storage order
    std::unordered_map<std::string_view, std::size_t> index_;  ///< pod name -> index in pods_
    std::vector<std::vector<region>> allow_w_;     ///< each pod's write allow regions, in rule order
    std::vector<std::vector<region>> subtracted_;  ///< each pod's write deny regions and its children's write allow regions
    std::vector<std::size_t> depth_;               ///< each pod's depth in the delegation tree
};

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
