// procreg/detail/temp_files.hpp — the names of procreg's temp files, and
// the one rule that removes them.
//
// Invariants:
// - every temp file a storage makes for `<target>` is
//   `.<target>.tmp-<pid>-<counter>-<noise>[-ns<pid namespace>]`: hidden,
//   never a valid record name, and naming its writer within its pid
//   namespace;
// - a name is refused at open when its temp name would not fit NAME_MAX
//   (`check_storable_name`), so nothing opens that cannot be written;
// - a sweep removes only what cannot be in flight: under the registry lock
//   every temp file of the target, without it only those of writers
//   provably gone in this pid namespace (`sweep_stale_temps`); for a
//   storage whose writers need not take the lock, only ever those of gone
//   writers and this process's own (`sweep_temps_of_any_target`).
#pragma once

#include <procreg/detail/file_io.hpp>
#include <procreg/detail/sys.hpp>
#include <procreg/error.hpp>

#include <atomic>
#include <charconv>
#include <chrono>
#include <climits>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

namespace procreg::detail {

/// The prefix of every temp file procreg makes for `target`: ".<target>.tmp-".
/// Listing code skips such names; `sweep_stale_temps` removes those whose
/// writer is gone.
inline std::string temp_prefix(std::string_view target) {
    std::string prefix = ".";
    prefix.append(target);
    prefix += ".tmp-";
    return prefix;
}

/// The longest file name `<stem><suffix>` a storage writes, given its
/// temp-name scheme, as a limit on the stem: every write makes a temp file
/// `temp_prefix(name) + temp_writer_tag()` beside its target (so do
/// claim_file's private names), which adds 1 + 5 + 10 + 1 + 20 + 1 + 10 +
/// 3 + 20 = 71 characters (".", ".tmp-", a pid up to INT_MAX, a 64-bit
/// counter, noise below 10^9+7, "-ns" and a 64-bit pid namespace inode)
/// and must fit NAME_MAX. A longer name could be read but never written, so
/// storages refuse it when they open (`check_storable_name`). With the
/// default `suffix_length` 0 this is the limit on a whole file name (184);
/// record_files' `<key>.json` leaves `max_storable_name_length(5)` for a key.
inline constexpr std::size_t max_storable_name_length(std::size_t suffix_length = 0) noexcept {
    constexpr std::size_t temp_overhead = 1 + 5 + 10 + 1 + 20 + 1 + 10 + 3 + 20;
    static_assert(NAME_MAX > temp_overhead, "NAME_MAX leaves no room for temp names");
    constexpr std::size_t longest = NAME_MAX - temp_overhead;
    return suffix_length >= longest ? 0 : longest - suffix_length;
}

/// Throws `errc::invalid_key` unless `name` (the file name of `file`) is at
/// most `max_storable_name_length()` characters long.
inline void check_storable_name(std::string_view name, const std::filesystem::path& file) {
    if (name.size() <= max_storable_name_length()) return;
    throw error(errc::invalid_key, file,
                "the file name is " + std::to_string(name.size()) + " characters long; at most " +
                    std::to_string(max_storable_name_length()) +
                    " fit, so that the temp file each write makes beside it stays within NAME_MAX (" +
                    std::to_string(NAME_MAX) + ")");
}

/// This process's pid namespace: the inode number of /proc/self/ns/pid, 0
/// when /proc cannot tell. Remembered per pid, since a forked child may
/// live in another namespace than its parent (unshare(CLONE_NEWPID), then
/// fork). Plain stat, not the sys seam: it names a process, not a registry
/// file. `me` is the caller's ::getpid(), when it has it already.
inline std::uint64_t own_pid_namespace(pid_t me) noexcept {
    static std::atomic<pid_t> known_for{0};
    static std::atomic<std::uint64_t> known{0};
    if (known_for.load(std::memory_order_acquire) == me) return known.load(std::memory_order_relaxed);
    struct ::stat st {};
    const std::uint64_t ns = ::stat("/proc/self/ns/pid", &st) == 0 ? static_cast<std::uint64_t>(st.st_ino) : 0;
    known.store(ns, std::memory_order_relaxed);
    known_for.store(me, std::memory_order_release);
    return ns;
}

/// This process's pid namespace (as above, asking for the pid).
inline std::uint64_t own_pid_namespace() noexcept { return own_pid_namespace(::getpid()); }

/// What follows `temp_prefix(target)` in a new temp file's name:
/// "<pid>-<counter>-<noise>", then "-ns<pid namespace>" when /proc tells
/// it. The pid means something only in that namespace: a sweeper in
/// another one (containers sharing a volume) must not judge the writer by it.
inline std::string temp_writer_tag() {
    static std::atomic<std::uint64_t> counter{0};
    const auto noise = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    const pid_t me = ::getpid();  // once: each call is a system call
    std::string tag = std::to_string(me);
    tag += '-';
    tag += std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
    tag += '-';
    tag += std::to_string(noise % 1000000007ULL);
    if (const std::uint64_t ns = own_pid_namespace(me)) {
        tag += "-ns";
        tag += std::to_string(ns);
    }
    return tag;
}

/// A fresh private name for `target` in its temp-file namespace:
/// `temp_prefix(target) + temp_writer_tag()`. Every private file procreg
/// makes beside a target (a temp file being written, a kept old version, a
/// claim moved aside) has one, so the one sweep rule removes it if its
/// maker dies.
inline std::string private_name(std::string_view target) { return temp_prefix(target) + temp_writer_tag(); }

/// Removes a private name (a temp file, a kept old version) once more if
/// the first unlink fails; false when it is still there (then a later sweep
/// under the lock removes it).
inline bool discard_private(int dirfd, const std::string& name) noexcept {
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (sys::unlinkat(dirfd, name.c_str(), 0) == 0 || errno == ENOENT) return true;
    }
    return false;
}

/// The pid of the writer that made a temp file, from the part of its name
/// after `temp_prefix(...)`: "<pid>-<counter>-<noise>[-ns<namespace>]" as
/// `temp_writer_tag` makes it. Nothing when `rest` is not of that form or
/// names no valid pid (0, or above INT_MAX): such a file is not one of ours.
inline std::optional<pid_t> temp_writer_pid(std::string_view rest) noexcept {
    const auto dash = rest.find('-');
    if (dash == std::string_view::npos) return std::nullopt;
    std::uint32_t pid = 0;
    const char* const end = rest.data() + dash;
    const auto parsed = std::from_chars(rest.data(), end, pid);  // digits only: no sign, no space
    if (parsed.ec != std::errc() || parsed.ptr != end || pid == 0 || pid > static_cast<std::uint32_t>(INT_MAX)) {
        return std::nullopt;
    }
    return static_cast<pid_t>(pid);
}

/// Whether the pid in a temp file's name (the part after `temp_prefix(...)`)
/// is one of this process's pid namespace: the name ends in "-ns<this
/// namespace>", or carries no namespace (names made before procreg tagged
/// them are judged as they always were).
inline bool temp_writer_in_own_namespace(std::string_view rest) noexcept {
    const auto tag = rest.rfind("-ns");
    if (tag == std::string_view::npos) return true;
    std::uint64_t ns = 0;
    const char* const end = rest.data() + rest.size();
    const auto parsed = std::from_chars(rest.data() + tag + 3, end, ns);
    if (parsed.ec != std::errc() || parsed.ptr != end) return false;  // not a tag we make: leave it
    return ns != 0 && ns == own_pid_namespace();
}

/// Whether the writer of a temp file (its name after `temp_prefix(...)`)
/// is provably gone, so that the file cannot be in flight: the name carries
/// this process's pid namespace — or no namespace, as names made before
/// procreg tagged them — and no process has the pid. A file tagged with
/// another namespace is never judged by its pid, which names some other
/// process here, or none (docs/reliability.md).
inline bool temp_writer_gone(std::string_view rest) noexcept {
    const auto writer = temp_writer_pid(rest);
    if (!writer || !temp_writer_in_own_namespace(rest)) return false;
    return !sys::process_exists(static_cast<std::uint64_t>(*writer));
}

/// Whether this process made a temp file (its name after `temp_prefix(...)`):
/// its pid, in this pid namespace (or a name without a namespace).
inline bool temp_writer_is_self(std::string_view rest) noexcept {
    const auto writer = temp_writer_pid(rest);
    return writer && *writer == ::getpid() && temp_writer_in_own_namespace(rest);
}

/// Removes temp files `.<target>.tmp-<pid>-...` that no save is using.
///
/// Without the registry lock (`holding_lock == false`) only temp files of
/// writers that are provably gone (`temp_writer_gone`: SIGKILLed between
/// create and rename, in this pid namespace) are garbage: a live writer's
/// temp file is about to be renamed or removed, and so may be a file of a
/// writer in another pid namespace sharing the directory.
/// A caller holding the lock knows no save is in progress — every procreg
/// writer of `target` saves only under that lock — so every temp file of
/// `target` is garbage, whoever made it (including one whose removal failed
/// on a dying disk).
///
/// Returns true when temp files were left in place (only possible without
/// the lock), so the caller can sweep again once it holds the lock.
inline bool sweep_stale_temps(int dirfd, std::string_view target, bool holding_lock = false) {
    DIR* stream = sys::fdopendir_dup(dirfd);
    if (!stream) return false;  // best effort: a leftover temp file harms nothing
    const std::string prefix = temp_prefix(target);
    bool left_some = false;
    while (const dirent* entry = ::readdir(stream)) {
        const std::string_view entry_name(entry->d_name);
        if (entry_name.substr(0, prefix.size()) != prefix) continue;
        if (!holding_lock) {
            const std::string_view rest = entry_name.substr(prefix.size());
            if (!temp_writer_pid(rest)) continue;  // not one of ours
            if (!temp_writer_gone(rest)) {
                left_some = true;
                continue;
            }
        }
        (void)sys::unlinkat(dirfd, entry->d_name, 0);
    }
    ::closedir(stream);
    return left_some;
}

/// Removes the temp files of *any* target ending in `suffix` in `dirfd`
/// (".<anything><suffix>.tmp-<pid>-..."), for a storage whose writers need
/// not take the registry lock (record_files: the AgentMux seed saves by
/// atomic rename alone), so that no sweep may assume "no save is in
/// progress": it removes files whose writer is provably gone
/// (`temp_writer_gone`) and, with `own` (only under the registry lock),
/// those of this process; never another live writer's, nor one of another
/// pid namespace. Returns whether temp files of this process were left.
/// (`sweep_stale_temps` is the rule for storages whose every writer holds
/// the lock.)
inline bool sweep_temps_of_any_target(int dirfd, std::string_view suffix, bool own) {
    DIR* stream = sys::fdopendir_dup(dirfd);
    if (!stream) return false;  // best effort: a leftover temp file harms nothing
    bool own_left = false;
    const std::string marker = std::string(suffix) + ".tmp-";
    while (const dirent* entry = ::readdir(stream)) {
        const std::string_view name(entry->d_name);
        if (name.size() < 2 || name.front() != '.') continue;
        const auto at = name.rfind(marker);
        if (at == std::string_view::npos) continue;
        const std::string_view rest = name.substr(at + marker.size());
        if (!temp_writer_pid(rest)) continue;  // not one of ours
        if (temp_writer_is_self(rest)) {
            if (!own) {
                own_left = true;
                continue;
            }
        } else if (!temp_writer_gone(rest)) {
            continue;
        }
        (void)sys::unlinkat(dirfd, entry->d_name, 0);
    }
    ::closedir(stream);
    return own_left;
}

}  // namespace procreg::detail
