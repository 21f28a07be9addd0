// procreg/presets/algocline.hpp — the algocline pool registry, ready made.
//
// algocline (`pool/registry.rs`) maps session ids to pool worker processes
// in `~/.algocline/state/pool/registry.json`:
//
//     {"sessions": [{"sid": "...", "pid": 123, "sock": "/...sock",
//                    "version": "0.30.0", "created_at": "2026-...Z"}]}
//
// guarded by an exclusive flock on the sibling `registry.lock`, with
// liveness by kill(pid, 0). This preset reads and writes exactly that file,
// so a C++ program and the Rust original can share one registry. Unlike the
// seed, which counts a worker alive only when kill returns 0, EPERM (another
// user's process) is alive and pid 0 is dead (docs/policy-liveness.md; the
// full list of differences: docs/seeds.md).
//
//     auto reg = procreg::algocline::open(dir / "registry.json");
//     reg.insert(procreg::algocline::pool_session::make("sid-1", pid, sock, "0.30.0"));
//     for (auto& row : reg.list()) ...;
//     reg.reap();   // the seed's scan_and_gc
#pragma once

#include <procreg/detail/clock.hpp>
#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/record_traits.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/json_table.hpp>

#include <boost/describe/class.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

namespace procreg::algocline {

/// One entry of `registry.json` (the seed's `PoolSessionEntry`).
struct pool_session {
    std::string sid;         ///< session identifier
    std::uint32_t pid = 0;   ///< worker process id
    std::string sock;        ///< absolute path of the worker's Unix-domain socket
    std::string version;     ///< version of the program that spawned the worker
    std::string created_at;  ///< ISO 8601 creation time

    /// An entry stamped with the current UTC time (the seed's `PoolSessionEntry::new`).
    static pool_session make(std::string sid, std::uint32_t pid, std::string sock, std::string version) {
        return pool_session{std::move(sid), pid, std::move(sock), std::move(version), detail::now_iso8601()};
    }

    /// Field-by-field equality (the seed's derived `PartialEq`).
    friend bool operator==(const pool_session& a, const pool_session& b) {
        return a.sid == b.sid && a.pid == b.pid && a.sock == b.sock && a.version == b.version &&
               a.created_at == b.created_at;
    }
    /// Field-by-field inequality.
    friend bool operator!=(const pool_session& a, const pool_session& b) { return !(a == b); }
};

BOOST_DESCRIBE_STRUCT(pool_session, (), (sid, pid, sock, version, created_at))

}  // namespace procreg::algocline

namespace procreg {
/// Sessions are keyed by `sid`; the worker's pid decides liveness.
template <>
struct record_traits<algocline::pool_session> {
    /// The session id, unique in the registry.
    static std::string_view key(const algocline::pool_session& s) noexcept { return s.sid; }
    /// The worker process that serves the session.
    static std::uint32_t pid(const algocline::pool_session& s) noexcept { return s.pid; }
};
}  // namespace procreg

namespace procreg::algocline {

/// The algocline registry: flock on `registry.lock`, `{"sessions": [...]}` in
/// `registry.json`, kill(pid, 0) liveness.
using pool_registry =
    procreg::registry<pool_session, lock::flock_lock, storage::json_table, liveness::kill_liveness>;

/// The storage options the seed uses for `registry_json`: array key
/// "sessions", lock file `registry.lock` beside it, fsync on, and the pool
/// directory set to 0700 when it is this user's but more open (the seed's
/// save() does so; one of another user is still refused).
inline storage::json_table_options options(std::filesystem::path registry_json) {
    storage::json_table_options opts;
    opts.directory.tighten_own = true;
    opts.lock_file = registry_json.parent_path() / "registry.lock";
    opts.file = std::move(registry_json);
    opts.array_key = "sessions";
    return opts;
}

/// Opens (creating the directory 0700 if needed, or setting this user's
/// existing one to 0700) the registry at `registry_json`. `Registry` may be `pool_registry` with another lock or
/// liveness policy (`procreg::with_lock_t`, `procreg::with_liveness_t`).
template <class Registry = pool_registry>
Registry open(std::filesystem::path registry_json) {
    return Registry(storage::json_table(options(std::move(registry_json))));
}

/// Opens with explicit storage options (e.g. `durable = false` on tmpfs).
template <class Registry = pool_registry>
Registry open(storage::json_table_options opts) {
    return Registry(storage::json_table(std::move(opts)));
}

}  // namespace procreg::algocline
