// tools/procreg/open_registry.hpp — one registry type per format, all of dynamic records.
//
// Invariant: every command reaches a registry through `with_registry`, so
// each one runs under the layout's scope (procreg/dynamic_record.hpp), the
// registry's own lock, and the same liveness rules: pidfd_liveness, which
// honours the owner identities procreg stamps and judges other records by
// pid (a zombie is dead); a record without a pid is never dead.
#pragma once

#include "target.hpp"

#include <procreg/dynamic_record.hpp>
#include <procreg/liveness/pidfd_liveness.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/claim_file.hpp>
#include <procreg/storage/json_table.hpp>
#include <procreg/storage/record_files.hpp>

#include <type_traits>

namespace procreg_cli {

using tool_liveness = procreg::dynamic_liveness<procreg::liveness::pidfd_liveness>;

template <class Storage>
using tool_registry = procreg::registry<procreg::dynamic_record, procreg::lock::flock_lock, Storage, tool_liveness>;

/// Whether a registry type keeps tombstones (retire / unretire).
template <class Registry>
constexpr bool has_tombstones_v = std::is_same_v<typename Registry::storage_type, procreg::storage::record_files>;

/// Whether a registry type is a claim file.
template <class Registry>
constexpr bool is_claim_v = !std::is_same_v<typename Registry::storage_type, procreg::storage::record_files> &&
                            !std::is_same_v<typename Registry::storage_type, procreg::storage::json_table>;

/// Opens the registry `t` names (creating nothing but an absent `retired/`
/// of a record directory and the lock file, as the owning program would)
/// and returns `use(registry)`, with `t.layout` in scope throughout.
template <class Use>
auto with_registry(const target& t, Use&& use)
    -> std::invoke_result_t<Use&, tool_registry<procreg::storage::json_table>&> {
    procreg::dynamic_record::layout_scope scope(t.layout);
    switch (t.kind) {
    case format::json_table: {
        procreg::storage::json_table_options opts;
        opts.file = t.path;
        opts.array_key = t.array;
        opts.lock_file = t.lock;
        opts.directory.create = false;
        opts.reuse_unchanged = false;
        tool_registry<procreg::storage::json_table> reg{procreg::storage::json_table(std::move(opts))};
        return use(reg);
    }
    case format::record_files: {
        procreg::storage::record_files_options opts;
        opts.root = t.path;
        opts.lock_file = t.lock;
        opts.schema_field = t.schema_field;
        opts.max_schema_version = t.max_schema_version;
        tool_registry<procreg::storage::record_files> reg{procreg::storage::record_files(std::move(opts))};
        return use(reg);
    }
    case format::claim_pid:
    case format::claim_json: {
        procreg::storage::claim_file_options opts;
        opts.file = t.path;
        opts.lock_file = t.lock;
        opts.unparseable = procreg::storage::unparseable_claim::stale;
        opts.directory.create = false;
        if (t.kind == format::claim_pid) {
            using storage = procreg::storage::claim_file<procreg::storage::pid_text_format>;
            tool_registry<storage> reg{storage(std::move(opts))};
            return use(reg);
        }
        using storage = procreg::storage::claim_file<procreg::storage::json_record_format>;
        tool_registry<storage> reg{storage(std::move(opts))};
        return use(reg);
    }
    }
    throw usage_error("unknown registry format");
}

}  // namespace procreg_cli
