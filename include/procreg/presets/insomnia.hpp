// procreg/presets/insomnia.hpp — INSOMNIA's consolidation lock, ready made.
//
// INSOMNIA lets one consolidation run at a time per workspace. The run's pod
// holds `<workspace>/_staging/.consolidation.lock`, a JSON object
//
//     {
//       "pid": 4242,
//       "pod_name": "pod-a",
//       "started_at": "2026-04-22T10:00:00.123456789Z",
//       "consumed_ids": ["0196...-....", ...]
//     }
//
// (serde_json::to_string_pretty of the seed's `LockRecord`). The seed's rules,
// kept here:
// - a lock whose pid is dead (kill(pid, 0) = ESRCH; pid 0 or > INT_MAX) is
//   stale and overwritten; an unparseable lock is stale too;
// - a live holder refuses everyone, including its own pid;
// - the handle does nothing when destroyed; `release_with_cleanup` removes
//   `<staging>/<id>.json` for each consumed id (ignoring ones already gone),
//   then the lock; `release_only` removes the lock alone.
// Unlike the seed, two pods racing for a stale lock cannot both win (flock on
// `_staging/.consolidation.lock.flock` plus a compare-and-swap publish), a
// release never removes a lock another pod has taken over, a symlinked lock
// file is refused, and `release_only` raises on an I/O failure where the
// seed logs it (the full list: docs/seeds.md).
#pragma once

#include <procreg/claim.hpp>
#include <procreg/detail/clock.hpp>
#include <procreg/detail/file_io.hpp>
#include <procreg/detail/temp_files.hpp>
#include <procreg/detail/json_strict_parse.hpp>
#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/record_traits.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/claim_file.hpp>

#include <boost/describe/class.hpp>

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace procreg::insomnia {

/// File name of the lock in the staging directory (the seed's `LOCK_FILE`).
inline constexpr const char* lock_file_name = ".consolidation.lock";
/// The claim key every `lock_record` has.
inline constexpr const char* claim_key = "consolidation";

/// The lock's contents (the seed's `LockRecord`).
struct lock_record {
    std::uint32_t pid = 0;                  ///< the consolidating pod's process id; decides staleness
    std::string pod_name;                   ///< the pod's name, for diagnostics
    std::string started_at;                 ///< RFC 3339 UTC time the run started (chrono `DateTime<Utc>`)
    std::vector<std::string> consumed_ids;  ///< UUIDs of the staging entries this run consumes
};

BOOST_DESCRIBE_STRUCT(lock_record, (), (pid, pod_name, started_at, consumed_ids))

}  // namespace procreg::insomnia

namespace procreg {
/// One claim per file: the key is constant, the pid decides liveness, the pod name names the holder.
template <>
struct record_traits<insomnia::lock_record> {
    /// The constant claim key "consolidation".
    static std::string_view key(const insomnia::lock_record&) noexcept { return insomnia::claim_key; }
    /// The holding pod's pid.
    static std::uint32_t pid(const insomnia::lock_record& r) noexcept { return r.pid; }
    /// The holding pod's name, reported by `claim_in_use::owner_name()`.
    static const std::string& name(const insomnia::lock_record& r) noexcept { return r.pod_name; }
};
}  // namespace procreg

namespace procreg::insomnia {

/// The lock file as a storage: one pretty-printed JSON object.
using consolidation_storage = storage::claim_file<storage::json_record_format>;
/// The registry behind the lock: flock on `.consolidation.lock.flock`, kill(pid, 0) liveness.
using consolidation_registry =
    procreg::registry<lock_record, lock::flock_lock, consolidation_storage, liveness::kill_liveness>;
/// The consolidation lock as a claim whose handle does nothing when
/// destroyed, over `Registry` (`consolidation_registry`, or it with another
/// lock or liveness policy).
template <class Registry = consolidation_registry>
using basic_consolidation_claim = procreg::claim<Registry, on_destroy::keep>;
/// The consolidation lock as a claim whose handle does nothing when destroyed.
using consolidation_claim = basic_consolidation_claim<>;

/// `<workspace>/_staging` (the seed's `WorkspaceLayout::staging_dir`).
inline std::filesystem::path staging_dir(const std::filesystem::path& workspace_root) {
    return workspace_root / "_staging";
}

/// `<staging>/.consolidation.lock`.
inline std::filesystem::path lock_file_path(const std::filesystem::path& staging) { return staging / lock_file_name; }

/// Whether `id` is a hyphenated UUID ("8-4-4-4-12" hex digits): the only
/// consumed ids accepted, since each becomes the file name `<id>.json`.
inline bool is_uuid(std::string_view id) noexcept {
    if (id.size() != 36) return false;
    for (std::size_t i = 0; i < id.size(); ++i) {
        const char c = id[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return true;
}

/// Storage options for the lock in `staging`: an unparseable lock is stale, as in the seed.
inline storage::claim_file_options options(const std::filesystem::path& staging) {
    storage::claim_file_options opts;
    opts.file = lock_file_path(staging);
    opts.unparseable = storage::unparseable_claim::stale;
    return opts;
}

/// The seed's rules: a live holder refuses even its own pid; the seed's in-use sentence.
inline claim_options<lock_record> claim_settings() {
    claim_options<lock_record> settings;
    settings.same_pid = own_pid::refuse;
    settings.describe_holder = [](const lock_record& holder, const std::filesystem::path&) {
        // The pod name was read from the lock file: escaped, so it cannot forge log lines.
        return "consolidation lock held by live pid " + std::to_string(holder.pid) + " (pod " +
               detail::quote_untrusted(holder.pod_name, 256) + ")";
    };
    return settings;
}

/// Opens the consolidation lock with explicit storage options.
template <class Registry = consolidation_registry>
basic_consolidation_claim<Registry> open(storage::claim_file_options opts) {
    return basic_consolidation_claim<Registry>(Registry(consolidation_storage(std::move(opts))),
                               claim_key, claim_settings());
}

/// Opens the consolidation lock of `staging` (creating the directory 0700 if missing).
template <class Registry = consolidation_registry>
basic_consolidation_claim<Registry> open(const std::filesystem::path& staging) {
    return open<Registry>(options(staging));
}

/// What `basic_staging_lock::release_with_cleanup` did.
struct cleanup_report {
    std::optional<release_status> lock;  ///< what happened to the lock file; none when removing it failed (see failures)
    std::vector<skipped_file> failures;  ///< consumed entries that exist but could not be removed, and a failed lock removal
};

/// The held consolidation lock (the seed's `StagingLock`). Destroying it does
/// nothing: release explicitly, or the lock is taken over as stale once this
/// pod's process is dead.
template <class Registry = consolidation_registry>
class basic_staging_lock {
public:
    /// The generic handle underneath.
    using handle_type = typename basic_consolidation_claim<Registry>::handle;

    /// Takes the lock in `staging` (created if missing) for `pid`, stamped
    /// with the current UTC time. Throws `claim_in_use` (`errc::in_use`,
    /// `pid()`, `owner_name()` = pod name) when a live pod holds it, even one
    /// with `pid`; `errc::invalid_key` when a consumed id is not a UUID.
    static basic_staging_lock acquire(const std::filesystem::path& staging, std::uint32_t pid, std::string pod_name,
                                std::vector<std::string> consumed_ids) {
        for (auto& id : consumed_ids) {
            if (!is_uuid(id)) {
                throw error(errc::invalid_key, lock_file_path(staging),
                            "consumed id " + detail::quote_untrusted(id) + " is not a UUID",
                            error::details{id, {}, 0});
            }
            for (auto& c : id) {
                if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');  // uuid's Display form
            }
        }
        lock_record record{pid, std::move(pod_name), detail::now_iso8601(9), std::move(consumed_ids)};
        return basic_staging_lock(open<Registry>(staging).acquire(record), staging);
    }

    /// The record written.
    const lock_record& record() const noexcept { return handle_.record(); }
    /// The lock file.
    const std::filesystem::path& path() const noexcept { return handle_.path(); }
    /// The staging directory.
    const std::filesystem::path& staging() const noexcept { return staging_; }
    /// Whether the lock is still held by this object.
    bool held() const noexcept { return handle_.held(); }
    /// The generic handle, for what this class does not wrap.
    handle_type& handle() noexcept { return handle_; }

    /// Removes `<staging>/<id>.json` for every consumed id (already gone is
    /// fine), then the lock file if it is still ours. Failures to remove an
    /// entry are reported, not thrown, and never keep the lock file.
    cleanup_report release_with_cleanup() { return release_with_cleanup(staging_); }

    /// As `release_with_cleanup()`, with the entries looked up in `staging`
    /// (the seed passes the workspace layout again).
    cleanup_report release_with_cleanup(const std::filesystem::path& staging) {
        cleanup_report report;
        try {
            procreg::directory_policy policy;
            policy.create = false;
            detail::unique_fd dir = detail::open_directory(staging, policy);
            for (const auto& id : handle_.record().consumed_ids) {
                const std::string name = id + ".json";
                try {
                    (void)detail::remove_file_at(dir.get(), staging / name, name.c_str());
                } catch (const error& e) {
                    report.failures.push_back(skipped_file{staging / name, e.what()});
                }
            }
        } catch (const error& e) {
            if (e.os_error() != ENOENT) {  // no staging directory: no entries to remove
                for (const auto& id : handle_.record().consumed_ids) {
                    report.failures.push_back(skipped_file{staging / (id + ".json"), e.what()});
                }
            }
        }
        std::error_code ec;
        if (const auto status = handle_.release(ec)) {
            report.lock = *status;
        } else {
            report.failures.push_back(skipped_file{path(), "cannot remove the lock: " + ec.message()});
        }
        return report;
    }

    /// Removes the lock file alone, if it is still ours; staging entries stay
    /// for the next run. Throws `procreg::error` on an I/O failure.
    release_status release_only() { return handle_.release(); }

private:
    basic_staging_lock(handle_type handle, std::filesystem::path staging)
        : handle_(std::move(handle)), staging_(std::move(staging)) {}

    handle_type handle_;
    std::filesystem::path staging_;
};

/// The held consolidation lock of the seed's own configuration (flock, kill liveness).
using staging_lock = basic_staging_lock<>;

}  // namespace procreg::insomnia
