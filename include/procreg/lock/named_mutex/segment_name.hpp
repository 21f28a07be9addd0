// procreg/lock/named_mutex/segment_name.hpp — which shared-memory segment a registry's named mutex lives in.
//
// The segment is `procreg-<16 hex digits>`, the digits being the 64-bit
// FNV-1a hash of the identity of the lock file's directory (device and
// inode numbers) and the lock file's name; or an explicit name, checked to
// be one that shm_open accepts.
//
// Invariant: every program that names the same registry maps the same
// segment, whatever path it reaches the directory by (a bind mount, a
// symlink, `..`, a renamed directory): the name derives from the
// directory's identity, never from a path string. A collision only makes
// two registries share one mutex: more waiting, never less exclusion.
#pragma once

#include <procreg/detail/file_io.hpp>
#include <procreg/detail/sys.hpp>
#include <procreg/error.hpp>

#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>

namespace procreg::lock {

namespace named_mutex_detail {

/// 64-bit FNV-1a: tiny, stable across builds and platforms, good enough to
/// spread registry paths over names (collisions are harmless, see above).
inline std::uint64_t fnv1a64(const std::string& text) noexcept {
    std::uint64_t hash = 0xcbf29ce484222325ull;
    for (const unsigned char c : text) {
        hash ^= c;
        hash *= 0x100000001b3ull;
    }
    return hash;
}

/// `lock_path` made absolute and canonical (its last part need not exist).
inline std::filesystem::path canonical_lock_path(const std::filesystem::path& lock_path) {
    if (lock_path.empty()) throw error(errc::invalid_argument, lock_path, "named_mutex_lock needs a lock path");
    std::error_code ec;
    auto absolute = std::filesystem::absolute(lock_path, ec);
    if (!ec) absolute = std::filesystem::weakly_canonical(absolute, ec);
    if (ec) {
        throw error(errc::io_failure, lock_path, "cannot resolve the lock path: " + ec.message(),
                    error::details{{}, {}, ec.value()});
    }
    return absolute;
}

/// The segment name for `lock_path`, whose canonical form is `canonical`; its parent is the directory
/// whose identity names the segment.
inline std::string name_for_canonical(const std::filesystem::path& lock_path,
                                      const std::filesystem::path& canonical) {
    struct ::stat dir {};
    if (detail::sys::fstatat(AT_FDCWD, canonical.parent_path().c_str(), &dir, 0) != 0) {
        detail::throw_os_error(errc::io_failure, lock_path,
                               "cannot stat the lock file's directory, whose device and inode name the "
                               "named-mutex segment (it must exist)",
                               errno);
    }
    if (!S_ISDIR(dir.st_mode)) {
        throw error(errc::unsafe_path, lock_path, "the lock file's parent is not a directory");
    }
    const std::string identity = std::to_string(static_cast<std::uint64_t>(dir.st_dev)) + ":" +
                                 std::to_string(static_cast<std::uint64_t>(dir.st_ino)) + "/" +
                                 canonical.filename().native();
    static const char digits[] = "0123456789abcdef";
    std::uint64_t hash = named_mutex_detail::fnv1a64(identity);
    std::string hex(16, '0');
    for (int i = 15; i >= 0; --i) {
        hex[static_cast<std::size_t>(i)] = digits[hash & 0xf];
        hash >>= 4;
    }
    return "procreg-" + hex;
}

/// Refuses (errc::invalid_argument) a name shm_open would not take as one segment.
inline void check_name(const std::string& name) {
    if (name.empty() || name.size() >= NAME_MAX || name.find('/') != std::string::npos ||
        name.find('\0') != std::string::npos || name == "." || name == "..") {
        throw error(errc::invalid_argument, name,
                    "a shared-memory segment name must be 1 to " + std::to_string(NAME_MAX - 1) +
                        " characters without '/' or NUL");
    }
}

}  // namespace named_mutex_detail

}  // namespace procreg::lock
