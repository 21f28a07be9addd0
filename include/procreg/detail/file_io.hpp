// procreg/detail/file_io.hpp — the file primitives every storage policy uses.
//
// Invariants kept here, once, for every storage:
// - a registry directory is opened by descriptor (O_DIRECTORY|O_NOFOLLOW) and
//   every file in it is reached with *at() calls relative to that descriptor,
//   so a directory swapped for a symlink after opening cannot redirect writes;
// - no file is opened through a symlink (O_NOFOLLOW) and only regular files
//   are read, after their size is checked against a cap with fstat;
// - a file is replaced only by the atomic replace protocol: O_EXCL temp file
//   in the same directory, write all, fsync, rename over the target, fsync
//   the directory; the temp file is removed on every failure, and an fsync
//   failure is never retried or ignored (PostgreSQL's "fsyncgate");
// - a storage refuses at open a file name whose temp name would not fit
//   NAME_MAX (`check_storable_name`), so nothing opens that cannot be written;
// - every failure is a `procreg::error` with the errno of the failed call,
//   read before anything else can change it.
// - a change whose directory fsync fails is undone before the error is
//   thrown, so an operation that throws has changed nothing (docs/errors.md).
#pragma once

#include <procreg/detail/sys.hpp>
#include <procreg/directory_policy.hpp>
#include <procreg/error.hpp>

#include <atomic>
#include <charconv>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace procreg::detail {

/// Owns one file descriptor and closes it once.
class unique_fd {
public:
    unique_fd() noexcept = default;
    explicit unique_fd(int fd) noexcept : fd_(fd) {}
    unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    unique_fd& operator=(unique_fd&& other) noexcept {
        if (this != &other) {
            reset();
            fd_ = std::exchange(other.fd_, -1);
        }
        return *this;
    }
    unique_fd(const unique_fd&) = delete;
    unique_fd& operator=(const unique_fd&) = delete;
    ~unique_fd() { reset(); }

    int get() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset() noexcept {
        if (fd_ >= 0) (void)sys::close(std::exchange(fd_, -1));
    }

private:
    int fd_ = -1;
};

/// Throws `procreg::error` for a failed system call, with errno's text.
/// `err` is the errno of that call, saved before anything else runs: a heap
/// allocation (building a message, a path) may change errno, so a call site
/// reads errno first (`const int err = errno;`) and passes the copy.
[[noreturn]] inline void throw_os_error(errc code, const std::filesystem::path& path, std::string_view what,
                                        int err) {
    std::string text(what);
    text += ": ";
    text += std::strerror(err);
    throw error(code, path, text, error::details{{}, {}, err});
}

/// The path of a file, for error messages only, built when one is thrown:
/// a whole path, or a directory and a name in it. The *_at primitives take
/// one so that a storage reaching its files by directory descriptor and
/// name does not build a `std::filesystem::path` per operation just in
/// case it fails. A parameter type: it refers to its arguments, which must
/// outlive the call.
class path_ref {
public:
    path_ref(const std::filesystem::path& whole) noexcept : base_(&whole) {}  // NOLINT: implicit by design
    path_ref(const std::filesystem::path& dir, std::string_view name) noexcept : base_(&dir), name_(name) {}

    /// The path itself.
    std::filesystem::path get() const { return name_.empty() ? *base_ : *base_ / name_; }

private:
    const std::filesystem::path* base_;
    std::string_view name_;
};

/// As above, naming the file by a `path_ref`.
[[noreturn]] inline void throw_os_error(errc code, const path_ref& path, std::string_view what, int err) {
    throw_os_error(code, path.get(), what, err);
}

// The directory rule is a public option (procreg/directory_policy.hpp).
using procreg::directory_policy;

/// Opens `dir` as a descriptor after checking it is a real directory that
/// only this user controls. Missing components are created with mode 0700.
inline unique_fd open_directory(const std::filesystem::path& dir, const directory_policy& policy) {
    namespace fs = std::filesystem;
    if (dir.empty()) throw error(errc::unsafe_path, dir, "empty directory path");
    bool created_last = false;
    if (policy.create) {
        fs::path prefix;
        for (const auto& part : dir) {
            prefix /= part;
            if (part == prefix.root_path() || part.empty()) continue;
            if (sys::mkdirat(AT_FDCWD, prefix.c_str(), 0700) == 0) {
                created_last = true;
            } else if (const int err = errno; err == EEXIST) {
                created_last = false;
            } else {
                throw_os_error(errc::io_failure, prefix, "cannot create directory", err);
            }
        }
    }
    const int fd = sys::openat(AT_FDCWD, dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        const int err = errno;
        if (err == ELOOP || err == ENOTDIR) {
            // O_NOFOLLOW on the last component: a symlink or a non-directory.
            throw_os_error(errc::unsafe_path, dir, "not a directory, or a symbolic link (refused)", err);
        }
        throw_os_error(errc::io_failure, dir, "cannot open directory", err);
    }
    unique_fd handle(fd);
    struct ::stat st {};
    if (sys::fstat(fd, &st) != 0) {
        const int err = errno;
        throw_os_error(errc::io_failure, dir, "cannot stat directory", err);
    }
    if (created_last) {
        // mkdir's mode is filtered by the umask; the registry's directory
        // must be 0700 whatever the umask, as the seeds require.
        if (sys::fchmod(fd, 0700) != 0) {
            const int err = errno;
            throw_os_error(errc::io_failure, dir, "cannot chmod 0700", err);
        }
    } else if (!policy.allow_shared) {
        if (st.st_uid != ::geteuid()) {
            throw error(errc::unsafe_path, dir,
                        "directory is owned by uid " + std::to_string(st.st_uid) +
                            ", not by this user (uid " + std::to_string(::geteuid()) +
                            "); refusing to keep a registry there");
        }
        if (policy.tighten_own && (st.st_mode & 07777) != 0700) {
            if (sys::fchmod(fd, 0700) != 0) throw_os_error(errc::io_failure, dir, "cannot chmod 0700", errno);
        } else if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
            throw error(errc::unsafe_path, dir,
                        "directory is writable by group or others; refusing to keep a registry "
                        "there (chmod 0700 it, or set directory_policy::allow_shared)");
        }
    }
    return handle;
}

/// A file's bytes and the fstat taken on the descriptor they were read from.
struct file_contents {
    std::string bytes;
    struct ::stat status {};
};

/// Reads `name` in the directory `dirfd`. Returns nothing when the file does
/// not exist. Refuses (`errc::unsafe_path`) symlinks and non-regular files,
/// sockets included; a file it has no permission to open is
/// `errc::io_failure` with EACCES or EPERM. Refuses files larger than
/// `max_bytes` (checked with fstat before reading, and again while reading).
/// With `keep_open`, the descriptor the bytes were read from is handed over
/// instead of closed (it pins the inode, e.g. for a cache keyed on it).
inline std::optional<file_contents> read_file_at(int dirfd, const path_ref& path,
                                                 const char* name, std::size_t max_bytes,
                                                 unique_fd* keep_open = nullptr) {
    const int fd = sys::openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        const int err = errno;
        if (err == ENOENT) return std::nullopt;
        if (err == ELOOP) throw_os_error(errc::unsafe_path, path, "is a symbolic link (refused)", err);
        // A socket (ENXIO) or a device without a driver (ENODEV) cannot even
        // be opened: a non-regular file, refused as the fstat check below does.
        if (err == ENXIO || err == ENODEV) throw_os_error(errc::unsafe_path, path, "is not a regular file (refused)", err);
        throw_os_error(errc::io_failure, path, "cannot open", err);
    }
    unique_fd handle(fd);
    file_contents out;
    if (sys::fstat(fd, &out.status) != 0) {
        const int err = errno;
        throw_os_error(errc::io_failure, path, "cannot stat", err);
    }
    if (!S_ISREG(out.status.st_mode)) throw error(errc::unsafe_path, path.get(), "is not a regular file (refused)");
    if (static_cast<std::uint64_t>(out.status.st_size) > max_bytes) {
        throw error(errc::corrupted_file, path.get(),
                    "file is " + std::to_string(out.status.st_size) + " bytes, above the limit of " +
                        std::to_string(max_bytes) + " bytes");
    }
    out.bytes.resize(static_cast<std::size_t>(out.status.st_size) + 1);
    std::size_t used = 0;
    for (;;) {
        if (used == out.bytes.size()) {
            if (used > max_bytes) {
                throw error(errc::corrupted_file, path.get(),
                            "file grew past the limit of " + std::to_string(max_bytes) + " bytes while reading");
            }
            out.bytes.resize(used * 2 + 64);
        }
        const std::size_t asked = out.bytes.size() - used;
        const ssize_t got = sys::read(fd, out.bytes.data() + used, asked);
        if (got < 0) {
            const int err = errno;
            if (err == EINTR) continue;
            throw_os_error(errc::io_failure, path, "cannot read", err);
        }
        if (got == 0) break;
        used += static_cast<std::size_t>(got);
        // A short read that ends exactly at the size fstat reported is the
        // end of the file: the buffer asked for one byte more. This spares
        // the read that would return 0. (Any other short read is not taken
        // for the end: some filesystems, FUSE with direct I/O, return less.)
        if (static_cast<std::size_t>(got) < asked && used == static_cast<std::size_t>(out.status.st_size)) break;
    }
    if (used > max_bytes) {
        throw error(errc::corrupted_file, path.get(),
                    "file is above the limit of " + std::to_string(max_bytes) + " bytes");
    }
    out.bytes.resize(used);
    if (keep_open) *keep_open = std::move(handle);
    return out;
}

/// Writes all of `data` to `fd`, retrying on EINTR and short writes.
/// Returns 0 or the errno of the failure.
inline int write_all(int fd, std::string_view data) noexcept {
    while (!data.empty()) {
        const ssize_t put = sys::write(fd, data.data(), data.size());
        if (put < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (put == 0) return EIO;
        data.remove_prefix(static_cast<std::size_t>(put));
    }
    return 0;
}

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

/// `path` made absolute against the working directory, as
/// std::filesystem::absolute does, but failing with `procreg::error`
/// (errc::io_failure and the errno) rather than a filesystem_error: a
/// relative path cannot be resolved once the working directory is removed.
inline std::filesystem::path absolute_path(const std::filesystem::path& path) {
    if (path.is_absolute()) return path;
    std::error_code ec;
    std::filesystem::path out = std::filesystem::absolute(path, ec);
    if (ec) {
        throw error(errc::io_failure, path,
                    "cannot make the relative path absolute (was the working directory removed?): " + ec.message(),
                    error::details{{}, {}, ec.value()});
    }
    return out;
}

/// Whether `a` and `b` name the same file: compared with symlinks, "." and
/// ".." resolved as far as the paths exist (std::filesystem::weakly_canonical);
/// where that fails (a symlink loop, a name over NAME_MAX) compared
/// lexically, and the open that follows reports the failure.
inline bool same_path(const std::filesystem::path& a, const std::filesystem::path& b) {
    const auto resolve = [](const std::filesystem::path& p) {
        std::filesystem::path whole = absolute_path(p);
        std::error_code ec;
        std::filesystem::path resolved = std::filesystem::weakly_canonical(whole, ec);
        return ec ? whole.lexically_normal() : resolved;
    };
    return resolve(a) == resolve(b);
}

/// Refuses (`errc::unsafe_path`) a lock file that would put an empty file
/// where data belongs. A lock policy creates its file empty (O_CREAT) and
/// never writes it. At the storage's own data file `data_file` that empty
/// file is what every later read finds — and a file replaced by rename
/// would leave the lock on an old inode, locking nothing. A name ending in
/// ".json" is where procreg's JSON storages keep data (another registry's
/// table, a record file): an empty one there is a corrupted file to them.
inline void check_lock_file(const std::filesystem::path& lock_file, const std::filesystem::path& data_file) {
    if (same_path(lock_file, data_file)) {
        throw error(errc::unsafe_path, data_file,
                    "the lock file is the data file itself; it must be a separate file that is never replaced");
    }
    if (lock_file.extension() == ".json") {
        throw error(errc::unsafe_path, lock_file,
                    "a lock file may not have a .json name: the lock creates it empty, and a JSON registry "
                    "(a table, a record) at that name would then be a corrupted file");
    }
}

/// This process's pid namespace: the inode number of /proc/self/ns/pid, 0
/// when /proc cannot tell. Remembered per pid, since a forked child may
/// live in another namespace than its parent (unshare(CLONE_NEWPID), then
/// fork). Plain stat, not the sys seam: it names a process, not a registry
/// file.
inline std::uint64_t own_pid_namespace() noexcept {
    static std::atomic<pid_t> known_for{0};
    static std::atomic<std::uint64_t> known{0};
    const pid_t me = ::getpid();
    if (known_for.load(std::memory_order_acquire) == me) return known.load(std::memory_order_relaxed);
    struct ::stat st {};
    const std::uint64_t ns = ::stat("/proc/self/ns/pid", &st) == 0 ? static_cast<std::uint64_t>(st.st_ino) : 0;
    known.store(ns, std::memory_order_relaxed);
    known_for.store(me, std::memory_order_release);
    return ns;
}

/// What follows `temp_prefix(target)` in a new temp file's name:
/// "<pid>-<counter>-<noise>", then "-ns<pid namespace>" when /proc tells
/// it. The pid means something only in that namespace: a sweeper in
/// another one (containers sharing a volume) must not judge the writer by it.
inline std::string temp_writer_tag() {
    static std::atomic<std::uint64_t> counter{0};
    const auto noise = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    std::string tag = std::to_string(::getpid());
    tag += '-';
    tag += std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
    tag += '-';
    tag += std::to_string(noise % 1000000007ULL);
    if (const std::uint64_t ns = own_pid_namespace()) {
        tag += "-ns";
        tag += std::to_string(ns);
    }
    return tag;
}

/// What an atomic write does when its target exists.
enum class if_target_exists {
    replace,  ///< the atomic replace protocol: rename over it
    keep,     ///< create only: leave it, write nothing, report it
};

/// Renames `temp` to `name` (both in `dirfd`) unless `name` exists, as one
/// atomic step: renameat2(RENAME_NOREPLACE), or link(2) — which never
/// replaces either — where the filesystem lacks it. Returns 0, EEXIST (and
/// `temp` is still there), or the errno of a failure.
inline int rename_if_absent(int dirfd, const char* temp, const char* name) noexcept {
    if (sys::renameat_noreplace(dirfd, temp, dirfd, name) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) return errno;
    if (sys::linkat(dirfd, temp, dirfd, name, 0) == 0) {
        (void)sys::unlinkat(dirfd, temp, 0);  // if this fails, a leftover temp file, swept like any other
        return 0;
    }
    if (errno == EEXIST) return EEXIST;
    // Nor hard links (FAT, some FUSE filesystems): look, then rename. Atomic
    // only against writers that hold the registry lock, as the caller does.
    struct ::stat st {};
    if (sys::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) return EEXIST;
    if (errno != ENOENT) return errno;
    return sys::renameat(dirfd, temp, dirfd, name) == 0 ? 0 : errno;
}

/// Removes a private name (a temp file, a kept old version) once more if
/// the first unlink fails; false when it is still there (then a later sweep
/// under the lock removes it).
inline bool discard_private(int dirfd, const std::string& name) noexcept {
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (sys::unlinkat(dirfd, name.c_str(), 0) == 0 || errno == ENOENT) return true;
    }
    return false;
}

/// Takes back a change published in `dirfd` whose directory fsync failed:
/// puts `kept_old` (a link to the version it replaced) back at `name`, or,
/// when `name` did not exist before (`existed_before` false), removes it.
/// True when `name` is as before the change. The caller holds the registry
/// lock, so the name still holds its own change.
inline bool undo_publish(int dirfd, const char* name, const std::string& kept_old, bool existed_before) noexcept {
    if (!kept_old.empty()) {
        if (sys::renameat(dirfd, kept_old.c_str(), dirfd, name) == 0) return true;
        (void)discard_private(dirfd, kept_old);
        return false;
    }
    return !existed_before && sys::unlinkat(dirfd, name, 0) == 0;
}

/// The one rule for a directory fsync that fails after a change was
/// published (docs/errors.md): the change is undone when it can be, and
/// the error says whether it was.
[[noreturn]] inline void throw_unsynced(const path_ref& path, bool undone, int err) {
    throw_os_error(errc::io_failure, path,
                   undone ? "fsync of the directory failed; the change was undone"
                          : "fsync of the directory failed, and the change could not be undone: it is visible but "
                            "may not survive a crash",
                   err);
}

/// Writes `data` as `name` in `dirfd` with the atomic replace protocol.
/// `durable` adds fsync of the file before the rename and of the directory
/// after it (off only where nothing survives a reboot anyway, e.g. tmpfs).
/// On any failure the temp file is gone and the target is untouched. When
/// the final directory fsync fails, the change is undone (durable writes
/// keep a link to the version they replace until then) and the error says
/// so; only where that is impossible (no hard links) is the change left
/// visible, and the error says that instead. `left_temp`, when given, is
/// set when a private name could not be removed after a success.
/// With `if_target_exists::keep` the last step is a rename that never
/// replaces (renameat2 RENAME_NOREPLACE, or link(2) where the filesystem
/// lacks it), so "is there a file?" and "create it" are one atomic step:
/// returns false, having written nothing, when the target exists.
/// With `keep_open`, a successful write also hands over a descriptor of the
/// new file (a duplicate of the temp file's, taken before it is closed, so
/// no other file can be substituted by name); it stays empty if the
/// duplicate could not be made, which is not an error.
inline bool atomic_write_at(int dirfd, const path_ref& path, const char* name, std::string_view data,
                            bool durable, if_target_exists existing, unique_fd* keep_open = nullptr,
                            bool* left_temp = nullptr) {
    const std::string prefix = temp_prefix(name);
    std::string temp;
    int fd = -1;
    for (int attempt = 0; attempt < 64 && fd < 0; ++attempt) {
        temp = prefix + temp_writer_tag();
        fd = sys::openat(dirfd, temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (const int err = errno; fd < 0 && err != EEXIST) {
            throw_os_error(errc::io_failure, path, "cannot create temp file " + temp, err);
        }
    }
    if (fd < 0) throw_os_error(errc::io_failure, path, "cannot create a unique temp file", EEXIST);
    unique_fd handle(fd);
    // `err` is the errno of the failed call, read before this runs (see throw_os_error).
    const auto fail = [&](std::string_view what, int err) {
        handle.reset();
        (void)sys::unlinkat(dirfd, temp.c_str(), 0);
        throw_os_error(errc::io_failure, path, what, err);
    };
    if (const int err = write_all(fd, data)) fail("cannot write temp file " + temp, err);
    if (durable && sys::fsync(fd) != 0) {
        const int err = errno;
        fail("fsync of temp file failed; nothing was changed", err);
    }
    unique_fd kept;
    if (keep_open) kept = unique_fd(sys::dup_cloexec(fd));  // -1 on failure: nothing kept
    if (sys::close(handle.release()) != 0) {
        const int err = errno;
        fail("closing temp file failed; nothing was changed", err);
    }
    // A durable replace keeps the version it replaces reachable, under a
    // private name, until the directory fsync has succeeded: the undo.
    std::string kept_old;
    bool existed_before = existing == if_target_exists::replace;
    if (durable && existing == if_target_exists::replace) {
        kept_old = temp_prefix(name) + temp_writer_tag();
        if (sys::linkat(dirfd, name, dirfd, kept_old.c_str(), 0) != 0) {
            const int err = errno;
            kept_old.clear();
            if (err == ENOENT) {
                existed_before = false;
            } else if (err != EPERM && err != ENOTSUP && err != EOPNOTSUPP && err != EMLINK) {
                fail("cannot keep the old version for an undo; nothing was changed", err);
            }  // else no hard links here: the change cannot be undone
        }
    }
    if (existing == if_target_exists::replace) {
        if (sys::renameat(dirfd, temp.c_str(), dirfd, name) != 0) {
            const int err = errno;
            if (!kept_old.empty()) (void)discard_private(dirfd, kept_old);
            fail("cannot rename temp file over the target", err);
        }
    } else if (const int err = rename_if_absent(dirfd, temp.c_str(), name)) {
        (void)sys::unlinkat(dirfd, temp.c_str(), 0);
        if (err == EEXIST) return false;
        throw_os_error(errc::io_failure, path, "cannot rename temp file to the target", err);
    }
    if (durable && sys::fsync(dirfd) != 0) {
        const int err = errno;
        throw_unsynced(path, undo_publish(dirfd, name, kept_old, existed_before), err);
    }
    if (!kept_old.empty() && !discard_private(dirfd, kept_old) && left_temp) *left_temp = true;
    if (keep_open) *keep_open = std::move(kept);
    return true;
}

/// Replaces `name` in `dirfd` by `data`: `atomic_write_at` with
/// `if_target_exists::replace`.
inline void atomic_replace_at(int dirfd, const path_ref& path, const char* name, std::string_view data,
                              bool durable, unique_fd* keep_open = nullptr, bool* left_temp = nullptr) {
    (void)atomic_write_at(dirfd, path, name, data, durable, if_target_exists::replace, keep_open, left_temp);
}

/// Removes `name` from `dirfd`. Returns false when it was already absent.
inline bool remove_file_at(int dirfd, const path_ref& path, const char* name) {
    if (sys::unlinkat(dirfd, name, 0) == 0) return true;
    const int err = errno;
    if (err == ENOENT) return false;
    throw_os_error(errc::io_failure, path, "cannot remove", err);
}

/// Removes `name` from `dirfd` and, with `durable`, fsyncs the directory,
/// under the same rule as `atomic_write_at`: the file stays reachable under
/// a private name until the fsync has succeeded, and a failed fsync puts it
/// back. Returns false when it was already absent. `left_temp` as there.
inline bool remove_file_durably_at(int dirfd, const path_ref& path, const char* name, bool durable,
                                   bool* left_temp = nullptr) {
    if (!durable) return remove_file_at(dirfd, path, name);
    std::string kept_old = temp_prefix(name) + temp_writer_tag();
    if (sys::linkat(dirfd, name, dirfd, kept_old.c_str(), 0) != 0) {
        const int err = errno;
        if (err == ENOENT) return false;
        if (err != EPERM && err != ENOTSUP && err != EOPNOTSUPP && err != EMLINK) {
            throw_os_error(errc::io_failure, path, "cannot keep the file for an undo; nothing was changed", err);
        }
        kept_old.clear();  // no hard links here: the removal cannot be undone
    }
    if (sys::unlinkat(dirfd, name, 0) != 0) {
        const int err = errno;
        if (!kept_old.empty()) (void)discard_private(dirfd, kept_old);
        if (err == ENOENT) return false;
        throw_os_error(errc::io_failure, path, "cannot remove", err);
    }
    if (sys::fsync(dirfd) != 0) {
        const int err = errno;
        throw_unsynced(path, undo_publish(dirfd, name, kept_old, true), err);
    }
    if (!kept_old.empty() && !discard_private(dirfd, kept_old) && left_temp) *left_temp = true;
    return true;
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

}  // namespace procreg::detail
