// procreg/presets/yoi/scope_table.hpp — the whole table's write scopes, for conflict questions.
//
// `detail::scope_table` is a read-only view of a transaction's allocations
// that answers the two questions every yoi operation asks: which pods'
// effective write scopes meet a requested rule (`owners`, the deepest in the
// delegation tree first), and whether a rule lies inside one pod's
// effective scope (`within_effective`). `conflict_owner` is its answer.
//
// Invariant: a pod's effective write scope is its write allow rules minus
// its write deny rules minus its children's write allow rules, exactly as
// procreg/presets/yoi.hpp states the rule. The view borrows the
// transaction's records, so it never outlives the next change to them.
#pragma once

#include <procreg/presets/yoi/allocation.hpp>
#include <procreg/presets/yoi/scope.hpp>

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace procreg::yoi {

/// A pod whose effective write scope meets a requested rule, and the rule of
/// its own through which it does.
struct conflict_owner {
    std::string pod_name;  ///< the pod
    scope_rule rule;       ///< its write allow rule that overlaps
};

namespace detail {

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

}  // namespace detail

}  // namespace procreg::yoi
