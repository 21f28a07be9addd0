// procreg/presets/trusty.hpp — trusty-memory's daemon PID lock, ready made.
//
// trusty-memory (`serve --foreground`) writes its pid as "<pid>\n" to
// `<data dir>/daemon.lock` before binding and removes it on shutdown, so
// `start` can tell a live daemon from a crashed one. This preset reads and
// writes exactly that file, with the seed's rules:
// - a lock whose pid is dead (kill(pid, 0) = ESRCH; pid 0 or > INT_MAX) is
//   stale and taken over; so is an empty or malformed file;
// - the daemon's own pid may take its own lock again;
// - the guard (`daemon_lock`) removes the file when destroyed;
// - "already running" names the pid and the lock file and says how to remove
//   a stale lock by hand.
// Unlike the seed, the stale takeover cannot be won twice: it is decided
// under a flock on `.daemon.lock.flock` and published with a
// compare-and-swap (see docs/storage-claim-file.md), the guard removes the
// file only while it is still the one it wrote, and a symlinked lock file is
// refused (the full list: docs/seeds.md).
//
//     auto guard = procreg::trusty::acquire_lock(procreg::trusty::lock_file_path_for_dir(dir));
//     if (auto pid = procreg::trusty::read_lock_pid(path)) ...;
#pragma once

#include <procreg/claim.hpp>
#include <procreg/detail/quote_untrusted.hpp>
#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/record_traits.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/claim_file.hpp>

#include <boost/describe/class.hpp>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unistd.h>

namespace procreg::trusty {

/// File name of the daemon PID lock under the data directory (the seed's `LOCK_FILENAME`).
inline constexpr const char* lock_filename = "daemon.lock";
/// The claim key every `daemon_lock_record` has.
inline constexpr const char* claim_key = "daemon";

/// What `daemon.lock` holds: the daemon's pid.
struct daemon_lock_record {
    std::uint32_t pid = 0;  ///< the daemon's process id
};

BOOST_DESCRIBE_STRUCT(daemon_lock_record, (), (pid))

}  // namespace procreg::trusty

namespace procreg {
/// One claim per file: the key is constant; the pid decides liveness.
template <>
struct record_traits<trusty::daemon_lock_record> {
    /// The constant claim key "daemon".
    static std::string_view key(const trusty::daemon_lock_record&) noexcept { return trusty::claim_key; }
    /// The daemon's pid.
    static std::uint32_t pid(const trusty::daemon_lock_record& r) noexcept { return r.pid; }
};
}  // namespace procreg

namespace procreg::trusty {

/// `daemon.lock` as a storage: plain text "<pid>\n".
using lock_file_storage = storage::claim_file<storage::pid_text_format>;
/// The registry behind the lock: flock on `.daemon.lock.flock`, kill(pid, 0) liveness.
using daemon_registry =
    procreg::registry<daemon_lock_record, lock::flock_lock, lock_file_storage, liveness::kill_liveness>;
/// The daemon lock as a claim whose handle removes the file when destroyed,
/// over `Registry` (`daemon_registry`, or it with another lock policy).
template <class Registry = daemon_registry>
using basic_daemon_claim = procreg::claim<Registry, on_destroy::release>;
/// The daemon lock as a claim whose handle removes the file when destroyed.
using daemon_claim = basic_daemon_claim<>;
/// The RAII guard over `Registry`.
template <class Registry = daemon_registry>
using basic_daemon_lock = typename basic_daemon_claim<Registry>::handle;
/// The RAII guard (the seed's `DaemonLock`): removes `daemon.lock` when destroyed, if still ours.
using daemon_lock = basic_daemon_lock<>;

/// `dir/daemon.lock` (the seed's `lock_file_path_for_dir`).
inline std::filesystem::path lock_file_path_for_dir(const std::filesystem::path& dir) { return dir / lock_filename; }

/// The data directory: `$XDG_DATA_HOME/trusty-memory`, else
/// `$HOME/.local/share/trusty-memory` (the XDG rule `dirs::data_dir` applies
/// on Linux); nothing when neither variable is set to an absolute path.
inline std::optional<std::filesystem::path> data_dir() {
    const char* xdg = std::getenv("XDG_DATA_HOME");
    if (xdg && *xdg && std::filesystem::path(xdg).is_absolute()) return std::filesystem::path(xdg) / "trusty-memory";
    const char* home = std::getenv("HOME");
    if (home && *home && std::filesystem::path(home).is_absolute()) {
        return std::filesystem::path(home) / ".local" / "share" / "trusty-memory";
    }
    return std::nullopt;
}

/// `<data dir>/daemon.lock`, or nothing when the data directory cannot be resolved.
inline std::optional<std::filesystem::path> lock_file_path() {
    auto dir = data_dir();
    if (!dir) return std::nullopt;
    return lock_file_path_for_dir(*dir);
}

/// kill(pid, 0) liveness with the seed's guards: pid 0 and pids above
/// INT_MAX are dead without a system call; EPERM is alive.
inline bool pid_alive(std::uint32_t pid) noexcept { return liveness::pid_alive(pid); }

/// Storage options for `lock_file`: an unparseable lock is stale, as in the seed.
inline storage::claim_file_options options(std::filesystem::path lock_file) {
    storage::claim_file_options opts;
    opts.file = std::move(lock_file);
    opts.unparseable = storage::unparseable_claim::stale;
    return opts;
}

/// The seed's rules: own pid may retake; the "already running" sentence.
inline claim_options<daemon_lock_record> claim_settings() {
    claim_options<daemon_lock_record> settings;
    settings.same_pid = own_pid::retake;
    settings.describe_holder = [](const daemon_lock_record& holder, const std::filesystem::path& file) {
        // The command's path is quoted by detail::quote_untrusted: it stays one
        // line, and nothing in it expands when pasted into a shell.
        return "trusty-memory daemon is already running as PID " + std::to_string(holder.pid) +
               " (lock file: " + detail::shown_path(file.native()) +
               "). If you believe this is a stale lock, remove it manually: rm " +
               detail::quote_untrusted(file.native(), PATH_MAX);
    };
    return settings;
}

/// Opens the daemon lock at `lock_file` with explicit storage options.
template <class Registry = daemon_registry>
basic_daemon_claim<Registry> open(storage::claim_file_options opts) {
    return basic_daemon_claim<Registry>(Registry(lock_file_storage(std::move(opts))), claim_key,
                                        claim_settings());
}

/// Opens the daemon lock at `lock_file` (creating its directory 0700 if missing).
template <class Registry = daemon_registry>
basic_daemon_claim<Registry> open(std::filesystem::path lock_file) {
    return open<Registry>(options(std::move(lock_file)));
}

/// The pid in `lock_file`, without acquiring and without creating anything:
/// nothing for a missing, empty or malformed file; throws `procreg::error`
/// for any other failure (I/O error, symlink, not a regular file).
inline std::optional<std::uint32_t> read_lock_pid(const std::filesystem::path& lock_file) {
    auto found = lock_file_storage::peek<daemon_lock_record>(options(lock_file));
    if (found.state != storage::claim_state::present) return std::nullopt;
    return found.record->pid;
}

/// Takes the daemon lock for this process (the seed's `acquire_lock`).
/// Throws `claim_in_use` ("already running ...") when a live process holds it.
template <class Registry = daemon_registry>
basic_daemon_lock<Registry> acquire_lock(const std::filesystem::path& lock_file) {
    return open<Registry>(lock_file).acquire(daemon_lock_record{static_cast<std::uint32_t>(::getpid())});
}

}  // namespace procreg::trusty
