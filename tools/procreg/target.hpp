// tools/procreg/target.hpp — what registry a PATH names, and how to open it.
//
// Invariant: the tool opens a registry exactly as the program that owns it
// does — same storage layout, same lock file — so it is safe to run against
// a live registry; and it never creates anything while finding out
// (directories are opened with `create = false`, the path must exist).
// An `etcd://HOST:PORT[,HOST:PORT]/PREFIX` PATH names the keys under PREFIX
// of an etcd cluster, opened as storage::etcd_store opens them.
#pragma once

#include <procreg/dynamic_record.hpp>

#include <filesystem>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace procreg::detail {
struct etcd_connection;
}  // namespace procreg::detail

namespace procreg_cli {

/// The storage a PATH holds.
enum class format {
    json_table,   ///< one JSON object with the records in one array member
    record_files, ///< a directory of `<key>.json` files (with `retired/`)
    claim_pid,    ///< a claim file holding "<pid>\n"
    claim_json,   ///< a claim file holding one JSON object with a pid
    etcd,         ///< keys under a prefix of an etcd v3 cluster (`etcd://HOST:PORT[,HOST:PORT]/PREFIX`)
};

/// The format's name as `--json` output and messages spell it.
const char* to_string(format f);

/// What the command line says about the registry (every field optional).
struct target_options {
    std::filesystem::path path;
    std::string preset;      ///< algocline | yoi | agentmux | trusty | insomnia, or empty
    std::string array;       ///< --array: the json_table array member
    std::string key_field;   ///< --key
    std::string pid_field;   ///< --pid
    std::filesystem::path lock;  ///< --lock
    bool named_mutex = false;    ///< --named-mutex
};

/// A registry found and described: everything needed to open it.
struct target {
    std::filesystem::path path;
    format kind = format::json_table;
    std::string array;                  ///< json_table only
    procreg::dynamic_layout layout;     ///< where key and pid are
    std::filesystem::path lock;         ///< the lock file every writer takes
    bool named_mutex = false;           ///< the writers lock with lock::named_mutex_lock on `lock`
    std::optional<std::string> schema_field;  ///< record_files schema guard (agentmux)
    std::uint64_t max_schema_version = 0;
    std::vector<std::string> etcd_endpoints;  ///< etcd only: "host:port" of every member given
    std::string etcd_prefix;                  ///< etcd only: the key prefix ("/pool/workers")
};

/// The connection to `t`'s etcd members (an etcd target), with the
/// credentials in PROCREG_ETCD_USER / PROCREG_ETCD_PASSWORD when set.
procreg::detail::etcd_connection etcd_connection_of(const target& t);

/// Whether PATH is an etcd URL (`etcd://...`) rather than a file system path.
bool is_etcd_url(const std::filesystem::path& path);

/// Finds the format (from the preset, else by looking at the path) and the
/// lock file. Throws `procreg::error` naming the path and the cause (a
/// symlink, a missing path, an unparseable or ambiguous file), or
/// `usage_error` for contradictory options.
target resolve(const target_options& options);

/// A contradiction or gap in the command line (exit 2).
struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace procreg_cli
