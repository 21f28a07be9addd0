// procreg/presets/yoi/scope.hpp — scope rules of the yoi pod registry and their algebra.
//
// A scope rule is (target path, read|write, recursive). It names a set of
// paths, its *coverage*:
//   - recursive:     the target and every path below it (`/src/**`);
//   - not recursive: the target and its direct children (`/src`, `/src/*`).
// Two rules overlap when their coverages intersect; a rule covers another
// when its coverage contains the other's and its permission is at least as
// strong (write implies read).
//
// Invariant: paths are compared by components, never by string prefix
// (`/src` does not contain `/srcx`), and every rule that enters the
// registry — from a caller or from the file — has a normalised target:
// absolute, no empty, `.` or `..` components, no trailing slash.
// `normalize_scope_path` documents the rules; a target it refuses is an
// invalid scope.
//
// The set algebra here is exact for these two shapes of coverage, so "a
// pod's effective write scope is its write allow rules minus its deny rules
// minus what its children hold" can be computed literally (yoi.hpp), rather
// than approximated rule by rule.
#pragma once

#include <procreg/detail/quote_untrusted.hpp>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>

#include <algorithm>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace procreg::yoi {

/// What a scope rule grants. Ordered: `write` implies `read`.
enum class permission {
    read = 0,   ///< may read the covered paths
    write = 1,  ///< may read and write the covered paths; write rules are exclusive between pods
};

/// The JSON spelling of a permission: "read" or "write".
inline const char* to_string(permission p) noexcept { return p == permission::write ? "write" : "read"; }

/// One scope rule (the seed's `manifest::ScopeRule`).
///
/// JSON: `{"target": "/src", "permission": "write", "recursive": true}`.
/// `target` is the field name of the Rust original; `"path"` is accepted
/// as an alias when reading. `permission` is read case-insensitively and
/// written in lower case. Unknown keys are ignored. A target that
/// `normalize_scope_path` refuses makes the record undecodable, so the file
/// is reported corrupt rather than silently widened or narrowed.
struct scope_rule {
    std::string target;                       ///< absolute, normalised path
    permission perm = permission::read;       ///< read or write
    bool recursive = false;                   ///< whole subtree (true) or the target and its direct children

    /// A write rule on `target` (not normalised here; operations normalise).
    static scope_rule write(std::string target, bool recursive) {
        return scope_rule{std::move(target), permission::write, recursive};
    }
    /// A read rule on `target` (not normalised here; operations normalise).
    static scope_rule read(std::string target, bool recursive) {
        return scope_rule{std::move(target), permission::read, recursive};
    }

    /// Field-wise equality (targets compared as stored, so compare normalised rules).
    friend bool operator==(const scope_rule& a, const scope_rule& b) {
        return a.target == b.target && a.perm == b.perm && a.recursive == b.recursive;
    }
    /// Field-wise inequality.
    friend bool operator!=(const scope_rule& a, const scope_rule& b) { return !(a == b); }
};

/// A human-readable form for messages: `write "/src" (recursive)`.
inline std::string describe(const scope_rule& rule) {
    // The target may come from the table file: quoted, so it cannot forge a log line.
    return std::string(to_string(rule.perm)) + " " + procreg::detail::quote_untrusted(rule.target, 256) +
           (rule.recursive ? " (recursive)" : " (shallow)");
}

/// Normalises a scope path lexically. Returns false and sets `why` when the
/// path is refused.
///
/// - the path must be absolute (start with `/`): a scope that depends on a
///   working directory means different things to different pods;
/// - it must not be empty nor contain a NUL byte;
/// - repeated slashes collapse, a trailing slash is dropped (`/src/` is
///   `/src`), and `.` components are removed (`/src/./core` is `/src/core`);
/// - `..` components are refused, not resolved: resolving them lexically
///   disagrees with the kernel as soon as a component is a symlink, and
///   comparing them as plain components would make `/src/../etc` look as if
///   it were inside `/src`;
/// - nothing else is touched: no symlink resolution, no case folding, no
///   Unicode normalisation. Callers who want physical scopes canonicalise
///   their paths before building rules.
inline bool normalize_scope_path(std::string_view path, std::string& out, std::string& why) {
    if (path.empty()) {
        why = "a scope path must not be empty";
        return false;
    }
    if (path.find('\0') != std::string_view::npos) {
        why = "a scope path must not contain a NUL byte";
        return false;
    }
    if (path.front() != '/') {
        why = "a scope path must be absolute (relative paths are refused)";
        return false;
    }
    std::string result;
    result.reserve(path.size());
    std::size_t pos = 0;
    while (pos < path.size()) {
        while (pos < path.size() && path[pos] == '/') ++pos;
        const std::size_t end = std::min(path.find('/', pos), path.size());
        const std::string_view component = path.substr(pos, end - pos);
        pos = end;
        if (component.empty() || component == ".") continue;
        if (component == "..") {
            why = "a scope path must not contain '..' components";
            return false;
        }
        result += '/';
        result.append(component.data(), component.size());
    }
    out = result.empty() ? std::string("/") : std::move(result);
    return true;
}

/// `rule` with its target normalised, or nothing (and `why` set) when the
/// target is refused by `normalize_scope_path`.
inline std::optional<scope_rule> normalized(const scope_rule& rule, std::string& why) {
    scope_rule out = rule;
    if (!normalize_scope_path(rule.target, out.target, why)) return std::nullopt;
    return out;
}

namespace detail {

/// The components of a path: `/src/core` → {"src", "core"}; `/` → {}.
/// Empty and `.` components are skipped, so slightly unnormalised input
/// still compares by components. Views point into `path`.
inline std::vector<std::string_view> components_of(std::string_view path) {
    std::vector<std::string_view> out;
    std::size_t pos = 0;
    while (pos < path.size()) {
        while (pos < path.size() && path[pos] == '/') ++pos;
        const std::size_t end = std::min(path.find('/', pos), path.size());
        const std::string_view component = path.substr(pos, end - pos);
        if (!component.empty() && component != ".") out.push_back(component);
        pos = end;
    }
    return out;
}

using components = std::vector<std::string_view>;

/// `a` is `b` or an ancestor of `b`.
inline bool is_prefix(const components& a, const components& b) {
    if (a.size() > b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (a[i] != b[i]) return false;
    }
    return true;
}

/// `parent` is the direct parent of `child`.
inline bool is_parent(const components& parent, const components& child) {
    return child.size() == parent.size() + 1 && is_prefix(parent, child);
}

/// The shapes a coverage, or an intersection of coverages, can take.
enum class shape {
    subtree,  ///< the path and everything below it
    shallow,  ///< the path and its direct children
    single,   ///< the path alone
};

/// A set of paths of one shape, rooted at `at`.
struct region {
    components at;
    shape kind;
};

inline region region_of(const scope_rule& rule) {
    return region{components_of(rule.target), rule.recursive ? shape::subtree : shape::shallow};
}

/// Whether the path `q` is in `r`.
inline bool contains_point(const region& r, const components& q) {
    switch (r.kind) {
    case shape::subtree: return is_prefix(r.at, q);
    case shape::shallow: return r.at == q || is_parent(r.at, q);
    case shape::single: return r.at == q;
    }
    return false;
}

/// The intersection of two regions; empty when they share no path. The
/// intersection of two coverages is always one of the three shapes.
inline std::optional<region> intersect(const region& a, const region& b) {
    if (a.kind == shape::single) {
        return contains_point(b, a.at) ? std::optional<region>(a) : std::nullopt;
    }
    if (b.kind == shape::single) {
        return contains_point(a, b.at) ? std::optional<region>(b) : std::nullopt;
    }
    if (a.kind == shape::subtree && b.kind == shape::subtree) {
        if (is_prefix(a.at, b.at)) return b;
        if (is_prefix(b.at, a.at)) return a;
        return std::nullopt;
    }
    if (a.kind == shape::shallow && b.kind == shape::shallow) {
        if (a.at == b.at) return a;
        if (is_parent(a.at, b.at)) return region{b.at, shape::single};
        if (is_parent(b.at, a.at)) return region{a.at, shape::single};
        return std::nullopt;  // siblings share no child; other pairs are too far apart
    }
    const region& deep = a.kind == shape::subtree ? a : b;     // the subtree
    const region& shallow = a.kind == shape::subtree ? b : a;  // the node and its children
    if (is_prefix(deep.at, shallow.at)) return shallow;
    if (is_parent(shallow.at, deep.at)) return region{deep.at, shape::single};
    return std::nullopt;
}

/// Whether `x` lies entirely inside the union of `cover`.
///
/// Exact for these shapes: a path has infinitely many (unnamed) children
/// and descendants, so a finite union covers all children of `p` only if
/// one member does (a subtree at or above `p`, or `p`'s own shallow
/// region), and all descendants of `p` only if a subtree at or above `p`
/// does.
inline bool covered_by(const region& x, const std::vector<region>& cover) {
    const auto any = [&](auto&& predicate) {
        for (const auto& c : cover) {
            if (predicate(c)) return true;
        }
        return false;
    };
    const auto subtree_above = [&](const region& c) { return c.kind == shape::subtree && is_prefix(c.at, x.at); };
    switch (x.kind) {
    case shape::single: return any([&](const region& c) { return contains_point(c, x.at); });
    case shape::shallow:
        return any([&](const region& c) { return contains_point(c, x.at); }) &&
               any([&](const region& c) { return subtree_above(c) || (c.kind == shape::shallow && c.at == x.at); });
    case shape::subtree: return any(subtree_above);
    }
    return false;
}

inline std::vector<region> regions_of(const std::vector<scope_rule>& rules, std::optional<permission> only) {
    std::vector<region> out;
    out.reserve(rules.size());
    for (const auto& rule : rules) {
        if (!only || rule.perm == *only) out.push_back(region_of(rule));
    }
    return out;
}

}  // namespace detail

/// Whether the coverages of `a` and `b` share a path (permissions ignored;
/// callers filter write rules). `/src` (recursive) and `/src/core` overlap;
/// `/src` and `/srcx` do not; `/src` (shallow) overlaps `/src/a` (shallow)
/// but not `/src/a/b` (recursive).
inline bool rules_overlap(const scope_rule& a, const scope_rule& b) {
    return detail::intersect(detail::region_of(a), detail::region_of(b)).has_value();
}

/// Whether `cover` alone grants everything `inner` asks: its permission is
/// at least `inner`'s and its coverage contains `inner`'s.
inline bool covers_fully(const scope_rule& cover, const scope_rule& inner) {
    if (cover.perm < inner.perm) return false;
    return detail::covered_by(detail::region_of(inner), {detail::region_of(cover)});
}

/// What a spawner may hand down to the pods it spawns (the seed's
/// `manifest::DelegationScope`): a rule may be delegated when the union of
/// the delegation rules with at least its permission covers it. It is
/// independent of what the spawner itself holds: an orchestrator that only
/// reads `/workspace` may still delegate writes below it.
struct delegation_scope {
    std::vector<scope_rule> rules;  ///< the delegable rules

    /// Whether `rule` may be delegated. Both sides should be normalised
    /// (`delegate_scope` normalises them, refusing invalid ones).
    bool allows(const scope_rule& rule) const {
        std::vector<detail::region> cover;
        for (const auto& d : rules) {
            if (d.perm >= rule.perm) cover.push_back(detail::region_of(d));
        }
        return detail::covered_by(detail::region_of(rule), cover);
    }
};

/// Encodes a rule as `{"target": ..., "permission": ..., "recursive": ...}`.
inline void tag_invoke(boost::json::value_from_tag, boost::json::value& out, const scope_rule& rule) {
    out = boost::json::object{{"target", rule.target}, {"permission", to_string(rule.perm)}, {"recursive", rule.recursive}};
}

/// Decodes and normalises a rule; throws std::invalid_argument naming the
/// field when it is missing, mistyped or refused.
inline scope_rule tag_invoke(boost::json::value_to_tag<scope_rule>, const boost::json::value& value) {
    const boost::json::object* object = value.if_object();
    if (!object) throw std::invalid_argument("a scope rule must be a JSON object");
    const boost::json::value* target = object->if_contains("target");
    if (!target) target = object->if_contains("path");
    if (!target) throw std::invalid_argument("scope rule: missing field \"target\"");
    if (!target->is_string()) throw std::invalid_argument("scope rule: \"target\" is not a string");
    const boost::json::value* perm = object->if_contains("permission");
    if (!perm) throw std::invalid_argument("scope rule: missing field \"permission\"");
    if (!perm->is_string()) throw std::invalid_argument("scope rule: \"permission\" is not a string");
    const boost::json::value* recursive = object->if_contains("recursive");
    if (!recursive) throw std::invalid_argument("scope rule: missing field \"recursive\"");
    if (!recursive->is_bool()) throw std::invalid_argument("scope rule: \"recursive\" is not a boolean");

    scope_rule rule;
    std::string spelled(perm->get_string().c_str(), perm->get_string().size());
    for (auto& c : spelled) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    if (spelled == "read") {
        rule.perm = permission::read;
    } else if (spelled == "write") {
        rule.perm = permission::write;
    } else {
        throw std::invalid_argument("scope rule: unknown permission " + procreg::detail::quote_untrusted(spelled) +
                                    " (expected read or write)");
    }
    rule.recursive = recursive->get_bool();
    const std::string raw(target->get_string().c_str(), target->get_string().size());
    std::string why;
    if (!normalize_scope_path(raw, rule.target, why)) {
        throw std::invalid_argument("scope rule target " + procreg::detail::quote_untrusted(raw, 256) + ": " + why);
    }
    return rule;
}

}  // namespace procreg::yoi
