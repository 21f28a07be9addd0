// procreg/presets/agentmux.hpp — the AgentMux named-agent registry, ready made.
//
// AgentMux (`agentmux_srv/registry/store.rs`) keeps one file per agent
// instance under `~/.agentmux/agents/registry/`:
//
//     <root>/<instance_id>.json           {"schema_version": 1,
//                                          "data": {"instance_id": "…", …}, …}
//     <root>/retired/<instance_id>.json   the same, soft-deleted ("Forget agent")
//
// This preset reads and writes exactly that layout with
// `storage::record_files`, so a C++ program and the Rust original can share
// one registry directory. It keeps the seed's behaviours:
// - upsert merges into the existing file: fields this program does not
//   know, at the top level and inside `data`, survive;
// - upsert never overwrites a file with `schema_version` above
//   `max_supported_schema`, without `schema_version`, or that does not
//   parse; unlike the seed (which only logs), the refusal is returned to
//   the caller (`upsert_status::skipped`, with path and reason);
// - a record is valid when it decodes, its schema is supported and
//   `data.instance_id` equals the file's stem; listing skips and reports the rest;
// - retire / unretire are idempotent moves of whatever file is there (a
//   rename keeps its bytes), hard_delete drops both copies;
// - every instance id that is safe as a file name is accepted
//   (`max_instance_id_length()`).
// Where it differs from the seed, on purpose: a move never overwrites a
// target this program cannot read (newer schema, no schema, unparseable:
// the seed's rename would, and could lose a newer program's record; this
// is the seed's upsert rule applied to moves), symbolic links are never
// moved or followed, ids that are not safe file names are refused, and each
// operation also takes a flock. The full list: docs/seeds.md.
//
// Concurrency: the seed relies on atomic rename plus an in-process mutex.
// procreg keeps every write an atomic rename (so the Rust binary and
// readers never see a torn file) and also takes an exclusive flock on
// `<root>/.registry.lock` for each operation, so procreg processes never
// lose each other's merges. See docs/storage-record-files.md.
//
// Liveness: AgentMux records outlive processes; the preset uses
// `liveness::always_alive`, so `reap()` never removes anything, and
// `record_traits<agent_record>::pid` is always 0 (records carry no pid).
//
//     auto reg = procreg::agentmux::open(home / ".agentmux/agents/registry");
//     auto rec = procreg::agentmux::agent_record::make("3f0c…");
//     rec.data.display_name = "reviewer";
//     if (reg.upsert(rec).status == procreg::upsert_status::skipped) ...;  // newer file kept
//     reg.retire("3f0c…");
//     for (auto& agent : reg.list_active().records) ...;
#pragma once

#include <procreg/detail/temp_files.hpp>
#include <procreg/liveness/callable_liveness.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/record_traits.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/record_files.hpp>

#include <boost/describe/class.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace procreg::agentmux {

/// The highest `schema_version` this program reads and writes (the seed's
/// `MAX_SUPPORTED_SCHEMA`, which lives in `schema.rs`, outside the seed
/// file: the value 1 is reconstructed). Upsert never overwrites a file above it.
inline constexpr std::uint32_t max_supported_schema = 1;

/// The `data` object of a record file. Every member but `instance_id` is
/// optional (absent on disk reads as empty; empty is written as null). The
/// seed's `NamedAgentRecord` lives in `schema.rs`, outside the seed file:
/// these fields are reconstructed; fields other programs add survive
/// upserts all the same.
struct agent_data {
    std::string instance_id;                         ///< the agent instance id; equals the file's stem
    std::optional<std::string> name;                 ///< agent kind / template name
    std::optional<std::string> display_name;         ///< name shown in the launch dropdown
    std::optional<std::string> working_dir;          ///< the agent's working directory
    std::optional<std::int64_t> last_launched_at_ms; ///< last launch, milliseconds since the Unix epoch

    /// Field-wise equality.
    friend bool operator==(const agent_data& a, const agent_data& b) {
        return a.instance_id == b.instance_id && a.name == b.name && a.display_name == b.display_name &&
               a.working_dir == b.working_dir && a.last_launched_at_ms == b.last_launched_at_ms;
    }
    /// Field-wise inequality.
    friend bool operator!=(const agent_data& a, const agent_data& b) { return !(a == b); }
};

BOOST_DESCRIBE_STRUCT(agent_data, (), (instance_id, name, display_name, working_dir, last_launched_at_ms))

/// One record file (the seed's `NamedAgentRecord`): `{"schema_version": N, "data": {...}}`.
struct agent_record {
    std::uint32_t schema_version = max_supported_schema;  ///< the file's schema
    agent_data data;                                      ///< the agent

    /// A record of the current schema for `instance_id`, other fields empty.
    static agent_record make(std::string instance_id) {
        agent_record out;
        out.data.instance_id = std::move(instance_id);
        return out;
    }

    /// Field-wise equality.
    friend bool operator==(const agent_record& a, const agent_record& b) {
        return a.schema_version == b.schema_version && a.data == b.data;
    }
    /// Field-wise inequality.
    friend bool operator!=(const agent_record& a, const agent_record& b) { return !(a == b); }
};

BOOST_DESCRIBE_STRUCT(agent_record, (), (schema_version, data))

}  // namespace procreg::agentmux

namespace procreg {
/// Records are keyed by `data.instance_id`; they have no owning process (pid 0).
template <>
struct record_traits<agentmux::agent_record> {
    /// The instance id, which is also the file's stem.
    static std::string_view key(const agentmux::agent_record& r) noexcept { return r.data.instance_id; }
    /// Always 0: AgentMux records are not tied to a process (liveness is `always_alive`).
    static std::uint32_t pid(const agentmux::agent_record&) noexcept { return 0; }
};
}  // namespace procreg

namespace procreg::agentmux {

/// The longest instance id the preset accepts, in bytes: the longest key
/// record_files can write, `<id>.json` plus its temp-file suffix within
/// NAME_MAX (detail::max_storable_name_length(5), docs/errors.md "Limits").
constexpr std::size_t max_instance_id_length() noexcept { return detail::max_storable_name_length(5); }

/// The AgentMux registry: flock on `<root>/.registry.lock`, one file per
/// agent with a `retired/` tree, no liveness.
using agent_registry =
    procreg::registry<agent_record, lock::flock_lock, storage::record_files, liveness::always_alive>;

/// The storage options the seed implies for `root`: schema guard on
/// `schema_version` up to `max_supported_schema`, erase removes the active
/// file, fsync on, and every instance id safe as a file name accepted (the
/// seed lists `bad name.json`; only separators, NUL, "." / "..", procreg's
/// temp and lock names and ids longer than `max_instance_id_length()` are
/// refused).
inline storage::record_files_options options(std::filesystem::path root) {
    storage::record_files_options opts;
    opts.root = std::move(root);
    opts.key_rule = detail::record_key_rule::file_name;
    opts.max_key_length = max_instance_id_length();
    opts.schema_field = "schema_version";
    opts.max_schema_version = max_supported_schema;
    opts.on_erase = storage::erase_action::remove;
    return opts;
}

/// Opens (creating `root` and `root/retired` 0700 if needed) the registry at
/// `root`. `Registry` may be `agent_registry` with another lock policy
/// (`procreg::with_lock_t`).
template <class Registry = agent_registry>
Registry open(std::filesystem::path root) {
    return Registry(storage::record_files(options(std::move(root))));
}

/// Opens with explicit storage options (e.g. `durable = false` on tmpfs).
template <class Registry = agent_registry>
Registry open(storage::record_files_options opts) {
    return Registry(storage::record_files(std::move(opts)));
}

}  // namespace procreg::agentmux
