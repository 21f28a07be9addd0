// procreg/detail/file_io.hpp — the file primitives every storage policy uses.
//
// Invariants kept here, once, for every storage:
// - a registry directory is opened by descriptor (O_DIRECTORY|O_NOFOLLOW) and
//   every file in it is reached with *at() calls relative to that descriptor,
//   so a directory swapped for a symlink after opening cannot redirect writes;
// - no file is opened through a symlink (O_NOFOLLOW) and only regular files
//   are read, after their size is checked against a cap with fstat;
// - every failure is a `procreg::error` with the errno of the failed call,
//   read before anything else can change it.
// Writing (the atomic replace protocol) is detail/publish.hpp; temp-file
// names and sweeps are detail/temp_files.hpp.
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

/// A regular file opened for reading, and the fstat of its descriptor.
struct opened_file {
    unique_fd fd;
    struct ::stat status {};
};

/// Opens `name` in the directory `dirfd` for reading. Returns nothing when
/// the file does not exist. Refuses (`errc::unsafe_path`) symlinks and
/// non-regular files, sockets included; a file it has no permission to open
/// is `errc::io_failure` with EACCES or EPERM. Refuses files larger than
/// `max_bytes` (checked with fstat).
inline std::optional<opened_file> open_file_at(int dirfd, const path_ref& path, const char* name,
                                               std::size_t max_bytes) {
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
    opened_file out;
    out.fd = unique_fd(fd);
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
    return out;
}

/// Reads the file `opened` whole, from its current offset (the start, for a
/// file just opened), with `headroom` more bytes of capacity for a caller
/// that will edit the text in place. Refuses a file that grows past
/// `max_bytes` while it is read.
inline std::string read_opened(const opened_file& opened, const path_ref& path, std::size_t max_bytes,
                               std::size_t headroom = 0) {
    std::string bytes;
    const auto size = static_cast<std::size_t>(opened.status.st_size);
    bytes.reserve(size + 1 + headroom);
    bytes.resize(size + 1);
    std::size_t used = 0;
    for (;;) {
        if (used == bytes.size()) {
            if (used > max_bytes) {
                throw error(errc::corrupted_file, path.get(),
                            "file grew past the limit of " + std::to_string(max_bytes) + " bytes while reading");
            }
            bytes.resize(used * 2 + 64);
        }
        const std::size_t asked = bytes.size() - used;
        const ssize_t got = sys::read(opened.fd.get(), bytes.data() + used, asked);
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
        if (static_cast<std::size_t>(got) < asked && used == size) break;
    }
    if (used > max_bytes) {
        throw error(errc::corrupted_file, path.get(), "file is above the limit of " + std::to_string(max_bytes) + " bytes");
    }
    bytes.resize(used);
    return bytes;
}

/// Reads `name` in the directory `dirfd` whole: `open_file_at`, then
/// `read_opened` (the refusals of both). Returns nothing when the file does
/// not exist. With `keep_open`, the descriptor the bytes were read from is
/// handed over instead of closed (it pins the inode, e.g. for a cache keyed
/// on it).
inline std::optional<file_contents> read_file_at(int dirfd, const path_ref& path, const char* name,
                                                 std::size_t max_bytes, unique_fd* keep_open = nullptr) {
    auto opened = open_file_at(dirfd, path, name, max_bytes);
    if (!opened) return std::nullopt;
    file_contents out;
    out.bytes = read_opened(*opened, path, max_bytes);
    out.status = opened->status;
    if (keep_open) *keep_open = std::move(opened->fd);
    return out;
}

/// A text given as pieces, written in order: one `writev` where a copy
/// into one buffer and a `write` would do (json_table writes a table from
/// the runs of its kept text and the records encoded since).
struct text_pieces {
    const std::string_view* pieces = nullptr;
    std::size_t count = 0;

    std::size_t size() const noexcept {
        std::size_t total = 0;
        for (std::size_t i = 0; i < count; ++i) total += pieces[i].size();
        return total;
    }
};

/// Writes all of `text` to `fd`, retrying on EINTR and short writes.
/// Returns 0 or the errno of the failure.
inline int write_all(int fd, text_pieces text) noexcept {
    constexpr int batch = 256;  // iovecs per call (IOV_MAX is 1024)
    std::size_t at = 0;         // the first piece not written whole
    std::size_t done = 0;       // how much of it is written
    for (;;) {
        struct ::iovec io[batch];
        int used = 0;
        for (std::size_t i = at; i < text.count && used < batch; ++i) {
            const std::string_view piece = text.pieces[i].substr(i == at ? done : 0);
            if (piece.empty()) continue;
            io[used++] = {const_cast<char*>(piece.data()), piece.size()};
        }
        if (used == 0) return 0;
        const ssize_t put = sys::writev(fd, io, used);
        if (put < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (put == 0) return EIO;
        for (auto left = static_cast<std::size_t>(put); left > 0;) {
            const std::size_t rest = text.pieces[at].size() - done;
            if (left < rest) {
                done += left;
                break;
            }
            left -= rest;
            ++at;
            done = 0;
        }
    }
}

/// Writes all of `data` to `fd` (one piece).
inline int write_all(int fd, std::string_view data) noexcept { return write_all(fd, text_pieces{&data, 1}); }

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

}  // namespace procreg::detail
