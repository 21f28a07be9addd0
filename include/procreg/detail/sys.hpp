// procreg/detail/sys.hpp — every system call procreg makes goes through here.
//
// Why: crash safety is proven by failing the k-th system call (SQLite's
// I/O-error harness) and by killing a process at the k-th call. That needs
// one seam. In user builds each wrapper is an inline forward to libc and
// costs nothing; a test build defines PROCREG_FAULT_INJECTION and gets a
// hook that sees every call before it happens and may make it fail with a
// chosen errno.
//
// Invariant: no procreg header calls open/read/write/fsync/rename/unlink/
// flock/fstat/mkdir/... directly; they call `procreg::detail::sys::*`.
#pragma once

#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

namespace procreg::detail::sys {

/// The system calls that can be intercepted, in the order a fault-injection
/// report prints them.
enum class call : unsigned char {
    open, read, write, fsync, rename, unlink, flock, fstat, mkdir, close, fchmod, link, readdir,
};

/// Name of a call, for test reports.
inline const char* call_name(call c) noexcept {
    switch (c) {
    case call::open: return "open";
    case call::read: return "read";
    case call::write: return "write";
    case call::fsync: return "fsync";
    case call::rename: return "rename";
    case call::unlink: return "unlink";
    case call::flock: return "flock";
    case call::fstat: return "fstat";
    case call::mkdir: return "mkdir";
    case call::close: return "close";
    case call::fchmod: return "fchmod";
    case call::link: return "link";
    case call::readdir: return "readdir";
    }
    return "?";
}

#if defined(PROCREG_FAULT_INJECTION)
/// Called before every intercepted system call; returns 0 to let it run, or
/// an errno value to make it fail with that errno without running it.
using fault_hook_fn = int (*)(call, void* context);

struct fault_hook {
    fault_hook_fn before = nullptr;
    void* context = nullptr;
};

inline fault_hook& installed_fault_hook() noexcept {
    static fault_hook hook;
    return hook;
}

/// Returns the errno the hook wants for `c`, or 0.
inline int injected_fault(call c) noexcept {
    const fault_hook& hook = installed_fault_hook();
    return hook.before ? hook.before(c, hook.context) : 0;
}
#define PROCREG_SYS_INTERCEPT(c, failure)                                     \
    do {                                                                      \
        if (const int procreg_injected_errno = ::procreg::detail::sys::injected_fault(c)) { \
            errno = procreg_injected_errno;                                   \
            return failure;                                                   \
        }                                                                     \
    } while (0)

/// The file name the intercepted call is about to use (the name of openat,
/// unlinkat, mkdirat and fstatat, the source of renameat and linkat), or
/// null for calls on descriptors. Lets a hook act on that very file just
/// before the call — a security test plants a symlink at a temp file's
/// name, which no test could guess (it holds a counter and clock noise).
inline const char*& intercepted_name() noexcept {
    thread_local const char* name = nullptr;
    return name;
}

/// As `injected_fault(c)`, with `name` visible to the hook as `intercepted_name()`.
inline int injected_fault(call c, const char* name) noexcept {
    intercepted_name() = name;
    const int result = injected_fault(c);
    intercepted_name() = nullptr;
    return result;
}
#define PROCREG_SYS_INTERCEPT_NAMED(c, name, failure)                                              \
    do {                                                                                           \
        if (const int procreg_injected_errno = ::procreg::detail::sys::injected_fault(c, name)) { \
            errno = procreg_injected_errno;                                                        \
            return failure;                                                                        \
        }                                                                                          \
    } while (0)
#else
#define PROCREG_SYS_INTERCEPT(c, failure) \
    do {                                  \
    } while (0)
#define PROCREG_SYS_INTERCEPT_NAMED(c, name, failure) \
    do {                                              \
    } while (0)
#endif

inline int openat(int dirfd, const char* name, int flags, mode_t mode = 0) noexcept {
    PROCREG_SYS_INTERCEPT_NAMED(call::open, name, -1);
    return ::openat(dirfd, name, flags, mode);
}
inline ssize_t read(int fd, void* buffer, std::size_t size) noexcept {
    PROCREG_SYS_INTERCEPT(call::read, -1);
    return ::read(fd, buffer, size);
}
inline ssize_t pread(int fd, void* buffer, std::size_t size, off_t offset) noexcept {
    PROCREG_SYS_INTERCEPT(call::read, -1);
    return ::pread(fd, buffer, size, offset);
}
inline ssize_t write(int fd, const void* buffer, std::size_t size) noexcept {
    PROCREG_SYS_INTERCEPT(call::write, -1);
    return ::write(fd, buffer, size);
}
inline ssize_t writev(int fd, const struct ::iovec* pieces, int count) noexcept {
    PROCREG_SYS_INTERCEPT(call::write, -1);
    return ::writev(fd, pieces, count);
}
inline int fsync(int fd) noexcept {
    PROCREG_SYS_INTERCEPT(call::fsync, -1);
    return ::fsync(fd);
}
inline int renameat(int from_dir, const char* from, int to_dir, const char* to) noexcept {
    PROCREG_SYS_INTERCEPT_NAMED(call::rename, from, -1);
    return ::renameat(from_dir, from, to_dir, to);
}
/// renameat2(RENAME_NOREPLACE): the rename fails with EEXIST when `to`
/// exists, atomically. EINVAL where the filesystem (or the C library) does
/// not offer it; the caller then falls back to linkat, which never replaces either.
inline int renameat_noreplace(int from_dir, const char* from, int to_dir, const char* to) noexcept {
    PROCREG_SYS_INTERCEPT_NAMED(call::rename, from, -1);
#if defined(RENAME_NOREPLACE)
    return ::renameat2(from_dir, from, to_dir, to, RENAME_NOREPLACE);
#else
    (void)from_dir, (void)from, (void)to_dir, (void)to;
    errno = EINVAL;
    return -1;
#endif
}
inline int unlinkat(int dirfd, const char* name, int flags) noexcept {
    PROCREG_SYS_INTERCEPT_NAMED(call::unlink, name, -1);
    return ::unlinkat(dirfd, name, flags);
}
inline int flock(int fd, int operation) noexcept {
    PROCREG_SYS_INTERCEPT(call::flock, -1);
    return ::flock(fd, operation);
}
inline int fstat(int fd, struct ::stat* out) noexcept {
    PROCREG_SYS_INTERCEPT(call::fstat, -1);
    return ::fstat(fd, out);
}
inline int fstatat(int dirfd, const char* name, struct ::stat* out, int flags) noexcept {
    PROCREG_SYS_INTERCEPT_NAMED(call::fstat, name, -1);
    return ::fstatat(dirfd, name, out, flags);
}
inline int mkdirat(int dirfd, const char* name, mode_t mode) noexcept {
    PROCREG_SYS_INTERCEPT_NAMED(call::mkdir, name, -1);
    return ::mkdirat(dirfd, name, mode);
}
inline int fchmod(int fd, mode_t mode) noexcept {
    PROCREG_SYS_INTERCEPT(call::fchmod, -1);
    return ::fchmod(fd, mode);
}
inline int linkat(int from_dir, const char* from, int to_dir, const char* to, int flags) noexcept {
    PROCREG_SYS_INTERCEPT_NAMED(call::link, from, -1);
    return ::linkat(from_dir, from, to_dir, to, flags);
}
/// close(2) is never retried: on Linux the descriptor is gone even when
/// close reports an error. An injected failure therefore closes first and
/// reports the error after, as the kernel does (otherwise a "failed" close
/// of a lock file would keep the lock held, which no real system does).
inline int close(int fd) noexcept {
#if defined(PROCREG_FAULT_INJECTION)
    const int injected = injected_fault(call::close);
    const int result = ::close(fd);
    if (injected) {
        errno = injected;
        return -1;
    }
    return result;
#else
    return ::close(fd);
#endif
}
/// Opens a directory stream on a duplicate of `fd` (the caller keeps `fd`),
/// positioned at the first entry. The duplicate shares `fd`'s file offset,
/// which an earlier listing left at the end: the stream is rewound, or a
/// second listing of the same descriptor would see an empty directory.
inline DIR* fdopendir_dup(int fd) noexcept {
    PROCREG_SYS_INTERCEPT(call::readdir, nullptr);
    const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) return nullptr;
    DIR* dir = ::fdopendir(copy);
    if (!dir) {
        const int saved = errno;
        ::close(copy);
        errno = saved;
        return nullptr;
    }
    ::rewinddir(dir);
    return dir;
}
/// Duplicates `fd` with close-on-exec set (fcntl F_DUPFD_CLOEXEC). It makes
/// a descriptor, so fault injection counts it as an `open`.
inline int dup_cloexec(int fd) noexcept {
    PROCREG_SYS_INTERCEPT(call::open, -1);
    return ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
}
/// kill(2) is not intercepted: liveness probes are not I/O on the registry.
inline int kill(pid_t pid, int signal) noexcept { return ::kill(pid, signal); }

/// Whether process `pid` exists, by kill(pid, 0): EPERM (it exists, but is
/// not ours) counts as existing, only ESRCH does not. Pid 0 and pids above
/// INT_MAX exist for no one, answered without a system call (kill would
/// address a process group, or every process). `liveness::pid_alive`, and
/// the sweeps of temp files left by dead writers, ask this.
inline bool process_exists(std::uint64_t pid) noexcept {
    if (pid == 0 || pid > static_cast<std::uint64_t>(INT_MAX)) return false;
    if (kill(static_cast<pid_t>(pid), 0) == 0) return true;
    return errno != ESRCH;
}

}  // namespace procreg::detail::sys
