// tools/procreg/open_registry.hpp — one registry type per format, all of dynamic records.
//
// Invariant: every command reaches a registry through `with_registry`, so
// each one runs under the layout's scope (procreg/dynamic_record.hpp), the
// registry's own lock, and the same liveness rules: pidfd_liveness, which
// honours the owner identities procreg stamps and judges other records by
// pid (a zombie is dead); a record without a pid is never dead. On etcd,
// a key put with a lease is alive (etcd deletes it when the lease ends, as
// liveness::etcd_lease reads it); one without is judged by its pid, as its
// writer (kill or pidfd liveness on etcd_store) does.
#pragma once

#include "target.hpp"

#include <procreg/detail/etcd_client.hpp>
#include <procreg/dynamic_record.hpp>
#include <procreg/liveness/etcd_lease.hpp>
#include <procreg/liveness/pidfd_liveness.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/lock/named_mutex_lock.hpp>
#include <procreg/lock/no_lock.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/claim_file.hpp>
#include <procreg/storage/etcd_store.hpp>
#include <procreg/storage/json_table.hpp>
#include <procreg/storage/record_files.hpp>

#include <type_traits>

namespace procreg_cli {

using tool_liveness = procreg::dynamic_liveness<procreg::liveness::pidfd_liveness>;

template <class Storage, class Lock = procreg::lock::flock_lock>
using tool_registry = procreg::registry<procreg::dynamic_record, Lock, Storage, tool_liveness>;

/// Liveness of etcd records: leased keys are alive, others are judged by pid.
/// The tool owns no record, so it stamps nothing.
struct etcd_record_liveness {
    /// Reads only the identity and lease keys (procreg/detail/ask_liveness.hpp).
    static constexpr bool judges_by_stored_identity = true;
    /// True when the key carries a lease, else what pidfd_liveness says of the pid.
    bool is_alive(std::uint64_t pid, const boost::json::object& stored) const {
        return procreg::liveness::etcd_lease{}.is_alive(pid, stored) ||
               procreg::liveness::pidfd_liveness{}.is_alive(pid, stored);
    }
    /// Nothing: the tool never writes a record it owns.
    void stamp_identity(std::uint64_t /*pid*/, boost::json::object& /*stored*/) const {}
};

/// The registry of an `etcd://` target: no lock (etcd_store commits by compare-and-swap).
using etcd_tool_registry = procreg::registry<procreg::dynamic_record, procreg::lock::no_lock,
                                             procreg::storage::etcd_store,
                                             procreg::dynamic_liveness<etcd_record_liveness>>;

/// Whether a registry type keeps tombstones (retire / unretire).
template <class Registry>
constexpr bool has_tombstones_v = std::is_same_v<typename Registry::storage_type, procreg::storage::record_files>;

/// `use(registry)` with the registry `t` names, locked by `Lock`.
template <class Lock, class Use>
auto with_lock(const target& t, Use&& use) {
    switch (t.kind) {
    case format::json_table: {
        procreg::storage::json_table_options opts;
        opts.file = t.path;
        opts.array_key = t.array;
        opts.lock_file = t.lock;
        opts.directory.create = false;
        opts.reuse_unchanged = false;
        tool_registry<procreg::storage::json_table, Lock> reg{procreg::storage::json_table(std::move(opts))};
        return use(reg);
    }
    case format::record_files: {
        procreg::storage::record_files_options opts;
        opts.root = t.path;
        opts.lock_file = t.lock;
        opts.schema_field = t.schema_field;
        opts.max_schema_version = t.max_schema_version;
        tool_registry<procreg::storage::record_files, Lock> reg{procreg::storage::record_files(std::move(opts))};
        return use(reg);
    }
    case format::etcd: {
        procreg::storage::etcd_store_options opts;
        opts.connection = etcd_connection_of(t);
        opts.prefix = t.etcd_prefix;
        etcd_tool_registry reg{procreg::storage::etcd_store(std::move(opts)), procreg::lock::no_lock{},
                               procreg::dynamic_liveness<etcd_record_liveness>{}};
        return use(reg);
    }
    case format::claim_pid:
    case format::claim_json:
        break;
    }
    procreg::storage::claim_file_options opts;
    opts.file = t.path;
    opts.lock_file = t.lock;
    opts.unparseable = procreg::storage::unparseable_claim::stale;
    opts.directory.create = false;
    if (t.kind == format::claim_pid) {
        using storage = procreg::storage::claim_file<procreg::storage::pid_text_format>;
        tool_registry<storage, Lock> reg{storage(std::move(opts))};
        return use(reg);
    }
    using storage = procreg::storage::claim_file<procreg::storage::json_record_format>;
    tool_registry<storage, Lock> reg{storage(std::move(opts))};
    return use(reg);
}

/// Opens the registry `t` names (creating nothing but an absent `retired/`
/// of a record directory and the lock file, as the owning program would)
/// and returns `use(registry)`, with `t.layout` in scope throughout, under
/// the lock its programs take: flock on `t.lock`, or the named mutex for
/// that path (`--named-mutex`).
template <class Use>
auto with_registry(const target& t, Use&& use) {
    procreg::dynamic_record::layout_scope scope(t.layout);
    if (t.named_mutex) return with_lock<procreg::lock::named_mutex_lock>(t, use);
    return with_lock<procreg::lock::flock_lock>(t, use);
}

}  // namespace procreg_cli
