// procreg/liveness/pidfd_liveness.hpp — "is the owner alive?" that a reused
// pid, a zombie or a reboot cannot fool.
//
// A record's owner is identified by (pid, pidfs inode, start time, boot id):
// the pidfs inode is the inode number of a pidfd of the process where pidfds
// live on pidfs (Linux >= 6.9), never reused before reboot; the start time is
// field 22 of /proc/<pid>/stat (clock ticks since boot), parsed after the
// *last* ')' because the command name in field 2 may itself contain spaces
// and parentheses; the boot id is /proc/sys/kernel/random/boot_id. The start
// time alone cannot tell an owner from a newcomer that got its pid within the
// same clock tick; the pidfs inode can. `stamp_identity` stores them in the
// record's JSON when the record is created (or its pid changes), as extra
// keys (detail/owner_identity.hpp):
//
//     "procreg_pidfs_inode": 4711     (number; only where the kernel has pidfs)
//     "procreg_start_time": 123456   (number, clock ticks)
//     "procreg_boot_id": "c4bc77c6-7625-42a4-9e23-697e1ab8057d"
//
// The seeds' Rust readers ignore keys they do not know (serde's default; no
// seed type uses #[serde(deny_unknown_fields)]), and procreg's storages
// write such keys back unchanged, so the seed formats stay readable by the
// seed programs. A record without these keys — written by a seed's own
// program, or by a storage that cannot hold extra keys — is judged by its
// pid alone: alive when that process exists and is not a zombie.
//
// Probe (docs/engineering.md §4): pidfd_open(pid) first. The descriptor pins
// the process, so after reading /proc/<pid>/stat we ask the pidfd whether
// *that* process is still running; if it is, what we read was its own stat
// and not a newcomer's that reused the pid. Without pidfd_open (ENOSYS,
// before Linux 5.3) the probe reads /proc alone; one read of stat yields
// state and start time of one process, so it still cannot mix two processes.
//
// Dead when: pid 0 or above INT_MAX (without a system call); no such
// process; a zombie; a stored pidfs inode, start time or boot id that differs
// from the live process's (each compared only where both are known). Alive when the process exists but we may not signal it (EPERM),
// or exists but /proc cannot tell us more (hidepid, no /proc): an
// unverifiable identity never makes a live owner dead.
#pragma once

#include <procreg/detail/file_io.hpp>
#include <procreg/detail/owner_identity.hpp>
#include <procreg/detail/owner_watch.hpp>
#include <procreg/detail/sys.hpp>
#include <procreg/liveness/kill_liveness.hpp>

#include <boost/json/object.hpp>

#include <cerrno>
#include <charconv>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/vfs.h>
#include <unistd.h>

namespace procreg::liveness {

/// How `pidfd_liveness` finds a process.
enum class pidfd_probe {
    pidfd_then_proc,  ///< pin with pidfd_open, fall back to /proc alone on ENOSYS (the default)
    proc_only,        ///< /proc and kill only, as on kernels before 5.3
};

namespace pidfd_detail {

/// What one read of /proc/<pid>/stat says.
struct stat_fields {
    char state = '?';             ///< field 3: R, S, D, Z, X, ...
    std::uint64_t start_time = 0; ///< field 22: clock ticks after boot
};

/// Parses the text of /proc/<pid>/stat. The command name (field 2) is
/// "(...)" and may contain anything, so fields are counted after the last ')'.
inline std::optional<stat_fields> parse_stat(std::string_view text) noexcept {
    const auto close = text.rfind(')');
    if (close == std::string_view::npos) return std::nullopt;
    std::string_view rest = text.substr(close + 1);
    stat_fields out;
    // Field 3 is the first after ')'; field 22 is the 20th.
    for (int field = 3; field <= 22; ++field) {
        const auto start = rest.find_first_not_of(' ');
        if (start == std::string_view::npos) return std::nullopt;
        rest.remove_prefix(start);
        auto end = rest.find_first_of(" \n");
        if (end == std::string_view::npos) end = rest.size();
        const std::string_view token = rest.substr(0, end);
        if (field == 3) {
            if (token.size() != 1) return std::nullopt;
            out.state = token[0];
        } else if (field == 22) {
            const auto parsed = std::from_chars(token.data(), token.data() + token.size(), out.start_time);
            if (parsed.ec != std::errc{} || parsed.ptr != token.data() + token.size()) return std::nullopt;
        }
        rest.remove_prefix(end);
    }
    return out;
}

/// Reads a small /proc file whole. Returns the bytes, or nothing with `err`
/// set to the errno of the failure.
inline std::optional<std::string> read_proc_file(const char* path, int& err) {
    const int fd = detail::sys::openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        err = errno;
        return std::nullopt;
    }
    detail::unique_fd handle(fd);
    std::string out;
    char buffer[1024];
    for (;;) {
        const ssize_t got = detail::sys::read(fd, buffer, sizeof buffer);
        if (got < 0) {
            if (errno == EINTR) continue;
            err = errno;
            return std::nullopt;
        }
        if (got == 0) break;
        out.append(buffer, static_cast<std::size_t>(got));
        if (out.size() > 64 * 1024) {  // stat lines are < 1 KiB; never slurp without bound
            err = EFBIG;
            return std::nullopt;
        }
    }
    err = 0;
    return out;
}

/// The outcome of reading /proc/<pid>/stat.
struct stat_read {
    std::optional<stat_fields> fields;  ///< set when read and parsed
    bool gone = false;                  ///< ENOENT/ESRCH: no such /proc entry (or no /proc)
};

/// Reads and parses /proc/<pid>/stat (through the detail::sys seam).
inline stat_read read_stat(pid_t pid) {
    const std::string path = "/proc/" + std::to_string(pid) + "/stat";
    int err = 0;
    stat_read out;
    if (auto text = read_proc_file(path.c_str(), err)) {
        out.fields = parse_stat(*text);
    } else {
        out.gone = (err == ENOENT || err == ESRCH);
    }
    return out;
}

/// This boot's id, read once per process (it cannot change while we run).
/// Empty when /proc cannot be read: boot ids are then not compared.
inline const std::string& boot_id() {
    static const std::string id = [] {
        int err = 0;
        auto text = read_proc_file("/proc/sys/kernel/random/boot_id", err);
        if (!text) return std::string();
        while (!text->empty() && (text->back() == '\n' || text->back() == ' ')) text->pop_back();
        return *text;
    }();
    return id;
}

// pidfd_open and poll are not in detail::sys: like kill, they probe a
// process and are not I/O on a registry, so fault injection has nothing to
// prove with them.

/// pidfd_open(2); -1 with errno ENOSYS where the kernel or headers lack it.
inline int pidfd_open(pid_t pid) noexcept {
#if defined(SYS_pidfd_open)
    return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

/// Owns a pidfd; closed with plain close(2) (see above).
class pidfd {
public:
    /// Takes ownership of `fd`.
    explicit pidfd(int fd) noexcept : fd_(fd) {}
    pidfd(const pidfd&) = delete;
    pidfd& operator=(const pidfd&) = delete;
    ~pidfd() {
        if (fd_ >= 0) (void)::close(fd_);
    }
    /// The pinned process's pidfs inode number: unique among the processes
    /// of this boot. Nothing where pidfds are not on pidfs (before Linux
    /// 6.9 they are anonymous inodes that all share one number).
    std::optional<std::uint64_t> pidfs_inode() const noexcept {
        constexpr unsigned long pidfs_magic = 0x50494446;  // PID_FS_MAGIC, linux/magic.h
        struct ::statfs fs {};
        if (::fstatfs(fd_, &fs) != 0 || static_cast<unsigned long>(fs.f_type) != pidfs_magic) return std::nullopt;
        struct ::stat st {};
        if (::fstat(fd_, &st) != 0) return std::nullopt;
        return static_cast<std::uint64_t>(st.st_ino);
    }

    /// True once the pinned process has exited (zombie or reaped). A pidfd
    /// polls readable then; a process whose main thread exited while other
    /// threads run is *not* exited.
    bool exited() const noexcept {
        struct ::pollfd p {};
        p.fd = fd_;
        p.events = POLLIN;
        for (;;) {
            const int rc = ::poll(&p, 1, 0);
            if (rc >= 0) return rc > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0;
            if (errno != EINTR) return false;  // cannot tell: do not declare it dead
        }
    }

private:
    int fd_;
};

/// What a probe observed about a pid.
struct observation {
    bool alive = false;                     ///< a live (non-zombie) process has the pid
    std::optional<std::uint64_t> start_time;  ///< its start time, when /proc could tell
    std::optional<std::uint64_t> pidfs_inode; ///< its pidfs inode, when pinned by a pidfd on pidfs
};

/// States of a process that has exited: zombie, or dead being reaped.
inline bool dead_state(char state) noexcept { return state == 'Z' || state == 'X' || state == 'x'; }

/// Probes `pid` with `method`; never calls a process dead that it cannot show
/// is dead. pid 0 and pids above INT_MAX are dead without a system call.
inline observation observe(std::uint64_t pid, pidfd_probe method) {
    observation out;
    if (pid == 0 || pid > static_cast<std::uint64_t>(INT_MAX)) return out;
    const auto id = static_cast<pid_t>(pid);
    if (method == pidfd_probe::pidfd_then_proc) {
        const int fd = pidfd_open(id);
        if (fd >= 0) {
            const pidfd pinned(fd);
            const auto inode = pinned.pidfs_inode();
            const stat_read stat = read_stat(id);
            // Asked *after* the read: if the pinned process still runs now,
            // it ran during the read, so the pid was not reused in between.
            if (pinned.exited()) return out;
            out.alive = true;
            if (stat.fields) out.start_time = stat.fields->start_time;
            out.pidfs_inode = inode;
            // A 'Z' here is a main thread that exited while other threads
            // run: the pidfd says the process has not exited, so it lives.
            return out;
        }
        if (errno == ESRCH) return out;
        // ENOSYS (kernel < 5.3), EINVAL (e.g. a thread id), EMFILE...: /proc alone.
    }
    if (!pid_alive(pid)) return out;  // kill(pid, 0): ESRCH
    const stat_read stat = read_stat(id);
    if (stat.fields) {
        if (dead_state(stat.fields->state)) return out;
        out.alive = true;
        out.start_time = stat.fields->start_time;
        return out;
    }
    // No stat: the process exited just now, or /proc is hidden or absent.
    // kill decides; EPERM (exists, not ours) is alive.
    out.alive = !stat.gone || pid_alive(pid);
    return out;
}

/// A stored number (start time, pidfs inode), if present and a
/// non-negative integer.
inline std::optional<std::uint64_t> stored_number(const boost::json::object& stored, std::string_view key) {
    const auto* value = stored.if_contains(key);
    if (!value) return std::nullopt;
    if (const auto* u = value->if_uint64()) return *u;
    if (const auto* i = value->if_int64()) {
        if (*i >= 0) return static_cast<std::uint64_t>(*i);
    }
    return std::nullopt;  // malformed: ignored, the pid alone decides
}

/// The stored boot id, if present and a non-empty string.
inline std::optional<std::string_view> stored_boot_id(const boost::json::object& stored, std::string_view key) {
    const auto* value = stored.if_contains(key);
    if (!value) return std::nullopt;
    if (const auto* s = value->if_string()) {
        if (!s->empty()) return std::string_view(*s);
    }
    return std::nullopt;
}

}  // namespace pidfd_detail

/// Liveness by (pid, start time, boot id), probed through a pidfd. See the
/// file comment for the rules.
class pidfd_liveness {
public:
    /// Reads only the identity keys it stamps (detail/ask_liveness.hpp).
    static constexpr bool judges_by_stored_identity = true;
    /// The JSON key holding the owner's start time (clock ticks after boot, a number).
    static constexpr std::string_view start_time_key = detail::owner_start_time_key;
    /// The JSON key holding the boot id of the owner's boot (a string).
    static constexpr std::string_view boot_id_key = detail::owner_boot_id_key;
    /// The JSON key holding the owner's pidfs inode number (a number; Linux >= 6.9).
    static constexpr std::string_view pidfs_inode_key = detail::owner_pidfs_inode_key;

    /// Probes with pidfd_open, falling back to /proc where it is missing.
    pidfd_liveness() = default;
    /// Probes with `method` (`proc_only` exercises the pre-5.3 path).
    explicit pidfd_liveness(pidfd_probe method) noexcept : method_(method) {}

    /// True when the record's owner is alive: a non-zombie process has the
    /// pid and, where the record carries them and the probe sees them, the
    /// same pidfs inode, start time and boot id.
    bool is_alive(std::uint64_t pid, const boost::json::object& stored) const {
        if (const auto boot = pidfd_detail::stored_boot_id(stored, boot_id_key)) {
            const std::string& current_boot = pidfd_detail::boot_id();
            if (!current_boot.empty() && *boot != current_boot) return false;  // another boot
        }
        const auto seen = pidfd_detail::observe(pid, method_);
        if (!seen.alive) return false;
        const auto start = pidfd_detail::stored_number(stored, start_time_key);
        if (start && seen.start_time && *start != *seen.start_time) return false;  // pid reused
        const auto inode = pidfd_detail::stored_number(stored, pidfs_inode_key);
        if (inode && seen.pidfs_inode && *inode != *seen.pidfs_inode) return false;  // reused within a tick
        return true;
    }

    /// Replaces the identity keys of `stored` by those of `pid`'s process:
    /// removes every owner identity key, then adds the boot id, the start
    /// time and the pidfs inode if the process is alive (the start time only
    /// if /proc shows it, the inode only where the kernel has pidfs). A dead
    /// pid gets no identity, and is then judged by its pid alone — dead.
    void stamp_identity(std::uint64_t pid, boost::json::object& stored) const {
        detail::drop_owner_identity(stored);
        const auto seen = pidfd_detail::observe(pid, method_);
        if (!seen.alive) return;
        if (seen.start_time) stored[start_time_key] = *seen.start_time;
        if (seen.pidfs_inode) stored[pidfs_inode_key] = *seen.pidfs_inode;
        const std::string& boot = pidfd_detail::boot_id();
        if (!boot.empty()) stored[boot_id_key] = boot;
    }

    /// A pidfd that polls readable when `pid` exits, or -1: with
    /// `pidfd_probe::proc_only`, or without pidfd_open (a watcher then
    /// polls; see docs/watch.md). The caller closes it.
    int watch_owner(std::uint64_t pid) const noexcept {
        return method_ == pidfd_probe::proc_only ? -1 : detail::open_owner_watch(pid);
    }

    /// The probe method in force.
    pidfd_probe method() const noexcept { return method_; }

private:
    pidfd_probe method_ = pidfd_probe::pidfd_then_proc;
};

namespace pidfd_detail {
template <class Liveness, class = void>
struct reports_probe : std::false_type {};
template <class Liveness>
struct reports_probe<Liveness, std::enable_if_t<std::is_same_v<decltype(std::declval<const Liveness&>().method()),
                                                                pidfd_probe>>> : std::true_type {};
}  // namespace pidfd_detail

/// The judge of the process identities (pidfd_liveness's keys) stored in a
/// registry whose own liveness policy is `policy`: a pidfd_liveness that
/// probes as `policy` does when it reports a `pidfd_probe` (`method()`), so
/// a registry told `proc_only` never calls pidfd_open; else the default.
template <class Liveness>
pidfd_liveness identity_judge_for(const Liveness& policy) {
    if constexpr (pidfd_detail::reports_probe<Liveness>::value) {
        return pidfd_liveness(policy.method());
    } else {
        (void)policy;
        return pidfd_liveness{};
    }
}

}  // namespace procreg::liveness
