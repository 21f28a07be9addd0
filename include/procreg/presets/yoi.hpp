// procreg/presets/yoi.hpp — the yoi pod registry: scoped allocations with delegation.
//
// yoi (`pod-registry/src/mutate.rs`) keeps, for every live pod, the paths it
// may write and read, in one JSON table:
//
//     {"allocations": [{"pod_name": "a", "pid": 123, "socket": "/run/a.sock",
//                       "scope_allow": [{"target": "/src", "permission": "write", "recursive": true}],
//                       "scope_deny": [], "delegated_from": null,
//                       "segment_id": "0b6f...-uuid"}]}
//
// It is procreg's acid test: a registry whose inserts are guarded by domain
// rules that look at the whole table, not at one record. Everything here is
// built from transaction steps (find, find_if, insert, modify, erase, reap
// with a hook), so it works under any lock and liveness policy: the
// operations are free functions over the transaction of any
// `procreg::registry<yoi::allocation, Lock, Storage, Liveness>`.
//
//     auto reg = procreg::yoi::open(runtime_dir / "pods.json");
//     procreg::yoi::register_pod(reg, "a", pid, sock, {scope_rule::write("/src", true)}, segment);
//     reg.transact([&](auto& tx) {   // several steps, all or nothing
//         procreg::yoi::delegate_scope(tx, "a", "b", child_pid, child_sock, child_rules, authority);
//     });
//
// Invariant (what every operation keeps): the *effective write scopes* of
// the allocations in the table never overlap. A pod's effective write scope
// is its write allow rules, minus its write deny rules, minus the write
// allow rules of the pods delegated from it (its children). A registration
// is refused with `write_conflict` when one of its write rules meets
// another pod's effective write scope, unless its own deny rules fully
// cover every competitor's overlapping rule (the seed's rule; see
// `deny_reading`); a delegation may overlap its spawner (that is what
// delegating means) but nobody else. Read rules never conflict. Dead pods
// are reclaimed first, their children reparented to the dead pod's parent
// so the delegation tree stays connected.
//
// Each operation has a transaction form (inside the caller's transaction:
// if it throws, nothing it did, the reclaim included, is written) and the
// registrations also a registry form (one transaction of their own that,
// like the seed, keeps the reclaim when the registration is refused).
//
// Layout: the record is presets/yoi/allocation.hpp, the scope algebra
// presets/yoi/scope.hpp, the view of the table's write scopes
// presets/yoi/scope_table.hpp, the steps the operations share
// presets/yoi/table_steps.hpp, the table operations
// presets/yoi/operations.hpp; this header binds them to a registry.
#pragma once

#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/presets/yoi/allocation.hpp>
#include <procreg/presets/yoi/error.hpp>
#include <procreg/presets/yoi/operations.hpp>
#include <procreg/presets/yoi/scope.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/json_table.hpp>

#include <filesystem>
#include <optional>
#include <utility>

namespace procreg::yoi {

/// The yoi registry as the seed runs it: flock on `pods.lock`,
/// `{"allocations": [...]}` in `pods.json`, kill(pid, 0) liveness.
using pod_registry = procreg::registry<allocation, lock::flock_lock, storage::json_table, liveness::kill_liveness>;

/// Storage options for the table at `pods_json`: array key "allocations",
/// lock file beside it with the extension replaced by `.lock`
/// (`pods.json` → `pods.lock`), fsync on.
inline storage::json_table_options options(std::filesystem::path pods_json) {
    storage::json_table_options opts;
    opts.file = std::move(pods_json);
    opts.array_key = "allocations";
    opts.lock_file = opts.file;
    opts.lock_file.replace_extension(".lock");
    return opts;
}

/// Opens (creating the directory 0700 if needed) the table at `pods_json`.
/// `Registry` may be `pod_registry` with another lock or liveness policy
/// (`procreg::with_lock_t`, `procreg::with_liveness_t`).
template <class Registry = pod_registry>
Registry open(std::filesystem::path pods_json) {
    return Registry(storage::json_table(options(std::move(pods_json))));
}

/// Opens with explicit storage options (e.g. `durable = false` on tmpfs).
template <class Registry = pod_registry>
Registry open(storage::json_table_options opts) {
    return Registry(storage::json_table(std::move(opts)));
}

namespace detail {

/// Runs the registration `steps(tx)` as one transaction of `reg` that is
/// saved even when `steps` refuses with a `scope_error`: every refusal comes
/// before the registration's only write (its insert), so what is saved then
/// is exactly the stale reclaim, which the seed saves before its checks
/// (`reclaim_stale` in `mutate.rs`). The refusal is rethrown after the
/// save; as in the seed, where that save's errors are ignored, a failure to
/// save the reclaim does not hide the refusal. A registration that passes
/// is saved with the reclaim in one atomic write, or not at all.
template <class Registry, class Steps>
void register_keeping_reclaim(Registry& reg, Steps&& steps) {
    std::optional<scope_error> refusal;
    try {
        reg.transact([&](auto& tx) {
            try {
                steps(tx);
            } catch (const scope_error& e) {
                refusal = e;
            }
        });
    } catch (const procreg::error&) {
        if (!refusal) throw;
    }
    if (refusal) throw *refusal;
}

}  // namespace detail

/// `register_pod_with_deny` as one transaction of `reg`, with the seed's
/// effect on refusal: the stale pods it reclaimed stay reclaimed (saved),
/// the pod is not registered, and the `scope_error` propagates.
template <class Lock, class Storage, class Liveness>
void register_pod_with_deny(registry<allocation, Lock, Storage, Liveness>& reg, std::string pod_name,
                            std::uint32_t pid, std::string socket, std::vector<scope_rule> scope_allow,
                            std::vector<scope_rule> scope_deny, std::string segment_id,
                            deny_reading reading = deny_reading::competitors_covered) {
    detail::register_keeping_reclaim(reg, [&](auto& tx) {
        register_pod_with_deny(tx, std::move(pod_name), pid, std::move(socket), std::move(scope_allow),
                               std::move(scope_deny), std::move(segment_id), reading);
    });
}

/// `register_pod` as one transaction of `reg`; a refusal keeps the reclaim
/// (see the registry form of `register_pod_with_deny`).
template <class Lock, class Storage, class Liveness>
void register_pod(registry<allocation, Lock, Storage, Liveness>& reg, std::string pod_name, std::uint32_t pid,
                  std::string socket, std::vector<scope_rule> scope_allow, std::string segment_id) {
    detail::register_keeping_reclaim(reg, [&](auto& tx) {
        register_pod(tx, std::move(pod_name), pid, std::move(socket), std::move(scope_allow), std::move(segment_id));
    });
}

/// `delegate_scope` as one transaction of `reg`; a refusal keeps the reclaim
/// (see the registry form of `register_pod_with_deny`).
template <class Lock, class Storage, class Liveness>
void delegate_scope(registry<allocation, Lock, Storage, Liveness>& reg, std::string_view spawner,
                    std::string spawned, std::uint32_t pid, std::string socket, std::vector<scope_rule> scope_allow,
                    const delegation_scope& scope) {
    detail::register_keeping_reclaim(reg, [&](auto& tx) {
        delegate_scope(tx, spawner, std::move(spawned), pid, std::move(socket), std::move(scope_allow), scope);
    });
}

}  // namespace procreg::yoi
