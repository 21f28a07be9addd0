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
//   failure is never retried or ignored (PostgreSQL's "fsyncgate").
#pragma once

#include <procreg/detail/sys.hpp>
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
[[noreturn]] inline void throw_os_error(errc code, const std::filesystem::path& path,
                                        const std::string& what, int err) {
    throw error(code, path, what + ": " + std::strerror(err), error::details{{}, {}, err});
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
[[noreturn]] inline void throw_os_error(errc code, const path_ref& path, const std::string& what, int err) {
    throw_os_error(code, path.get(), what, err);
}

/// What a registry directory may be.
struct directory_policy {
    /// Create the directory (and missing parents, each 0700) when absent.
    bool create = true;
    /// Accept a directory owned by another user or writable by group/others.
    /// Off by default: such a directory lets another user plant files and
    /// symlinks in the registry. Turn on only for a directory shared on purpose.
    bool allow_shared = false;
    /// Set an existing directory of this user whose mode is not 0700 to
    /// 0700 (through the descriptor just checked), instead of refusing it
    /// when group/others may write. algocline's seed does this at every
    /// save. A directory of another user is refused all the same.
    bool tighten_own = false;
};

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
            } else if (errno == EEXIST) {
                created_last = false;
            } else {
                throw_os_error(errc::io_failure, prefix, "cannot create directory", errno);
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
    if (sys::fstat(fd, &st) != 0) throw_os_error(errc::io_failure, dir, "cannot stat directory", errno);
    if (created_last) {
        // mkdir's mode is filtered by the umask; the registry's directory
        // must be 0700 whatever the umask, as the seeds require.
        if (sys::fchmod(fd, 0700) != 0) throw_os_error(errc::io_failure, dir, "cannot chmod 0700", errno);
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
/// not exist. Refuses symlinks and non-regular files, and files larger than
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
        throw_os_error(errc::io_failure, path, "cannot open", err);
    }
    unique_fd handle(fd);
    file_contents out;
    if (sys::fstat(fd, &out.status) != 0) throw_os_error(errc::io_failure, path, "cannot stat", errno);
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
            if (errno == EINTR) continue;
            throw_os_error(errc::io_failure, path, "cannot read", errno);
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
/// writer is dead.
inline std::string temp_prefix(std::string_view target) {
    std::string prefix = ".";
    prefix.append(target);
    prefix += ".tmp-";
    return prefix;
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

/// Writes `data` as `name` in `dirfd` with the atomic replace protocol.
/// `durable` adds fsync of the file before the rename and of the directory
/// after it (off only where nothing survives a reboot anyway, e.g. tmpfs).
/// On any failure the temp file is gone and the target is untouched, except
/// when only the final directory fsync fails: then the new contents are in
/// place but may not survive power loss, and the error says so.
/// With `if_target_exists::keep` the last step is a rename that never
/// replaces (renameat2 RENAME_NOREPLACE, or link(2) where the filesystem
/// lacks it), so "is there a file?" and "create it" are one atomic step:
/// returns false, having written nothing, when the target exists.
/// With `keep_open`, a successful write also hands over a descriptor of the
/// new file (a duplicate of the temp file's, taken before it is closed, so
/// no other file can be substituted by name); it stays empty if the
/// duplicate could not be made, which is not an error.
inline bool atomic_write_at(int dirfd, const path_ref& path, const char* name, std::string_view data,
                            bool durable, if_target_exists existing, unique_fd* keep_open = nullptr) {
    static std::atomic<std::uint64_t> counter{0};
    const std::string prefix = temp_prefix(name) + std::to_string(::getpid()) + "-";
    std::string temp;
    int fd = -1;
    for (int attempt = 0; attempt < 64 && fd < 0; ++attempt) {
        const auto noise = static_cast<std::uint64_t>(
            std::chrono::steady_clock::now().time_since_epoch().count());
        temp = prefix;
        temp += std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
        temp += '-';
        temp += std::to_string(noise % 1000000007ULL);
        fd = sys::openat(dirfd, temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) {
            throw_os_error(errc::io_failure, path, "cannot create temp file " + temp, errno);
        }
    }
    if (fd < 0) throw_os_error(errc::io_failure, path, "cannot create a unique temp file", EEXIST);
    unique_fd handle(fd);
    const auto fail = [&](const std::string& what, int err) {
        handle.reset();
        (void)sys::unlinkat(dirfd, temp.c_str(), 0);
        throw_os_error(errc::io_failure, path, what, err);
    };
    if (const int err = write_all(fd, data)) fail("cannot write temp file " + temp, err);
    if (durable && sys::fsync(fd) != 0) fail("fsync of temp file failed; nothing was changed", errno);
    unique_fd kept;
    if (keep_open) kept = unique_fd(sys::dup_cloexec(fd));  // -1 on failure: nothing kept
    if (sys::close(handle.release()) != 0) fail("closing temp file failed; nothing was changed", errno);
    if (existing == if_target_exists::replace) {
        if (sys::renameat(dirfd, temp.c_str(), dirfd, name) != 0) {
            fail("cannot rename temp file over the target", errno);
        }
    } else if (const int err = rename_if_absent(dirfd, temp.c_str(), name)) {
        (void)sys::unlinkat(dirfd, temp.c_str(), 0);
        if (err == EEXIST) return false;
        throw_os_error(errc::io_failure, path, "cannot rename temp file to the target", err);
    }
    if (keep_open) *keep_open = std::move(kept);
    if (durable && sys::fsync(dirfd) != 0) {
        throw_os_error(errc::io_failure, path,
                       "written, but fsync of the directory failed: the change may not survive a crash",
                       errno);
    }
    return true;
}

/// Replaces `name` in `dirfd` by `data`: `atomic_write_at` with
/// `if_target_exists::replace`.
inline void atomic_replace_at(int dirfd, const path_ref& path, const char* name, std::string_view data,
                              bool durable, unique_fd* keep_open = nullptr) {
    (void)atomic_write_at(dirfd, path, name, data, durable, if_target_exists::replace, keep_open);
}

/// Removes `name` from `dirfd`. Returns false when it was already absent.
inline bool remove_file_at(int dirfd, const path_ref& path, const char* name) {
    if (sys::unlinkat(dirfd, name, 0) == 0) return true;
    if (errno == ENOENT) return false;
    throw_os_error(errc::io_failure, path, "cannot remove", errno);
}

/// The pid of the writer that made a temp file, from the part of its name
/// after `temp_prefix(...)`: "<pid>-<counter>-<noise>" as `atomic_replace_at`
/// names it. Nothing when `rest` is not of that form or names no valid pid
/// (0, or above INT_MAX): such a file is not one of ours.
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

/// Removes temp files `.<target>.tmp-<pid>-...` that no save is using.
///
/// Without the registry lock (`holding_lock == false`) only temp files of
/// writers that died (SIGKILL between create and rename) are provably
/// garbage: a live writer's temp file is about to be renamed or removed.
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
            const auto writer = temp_writer_pid(entry_name.substr(prefix.size()));
            if (!writer) continue;  // not one of ours
            if (sys::process_exists(static_cast<std::uint64_t>(*writer))) {
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
