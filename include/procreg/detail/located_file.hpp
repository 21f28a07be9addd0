// procreg/detail/located_file.hpp — a file reached through a directory
// descriptor opened once, not through a path resolved again at each use.
//
// Invariant: a lock and the data it protects are found in the same
// directory *inode* for the life of a registry. A storage opens its
// directory once; a lock file in that directory is located through a
// duplicate of the very same descriptor, so renaming the directory away, or
// swapping a symlink at its name, can never make two processes lock one
// file and write another, or make a writer create files in a directory
// another user controls (docs/reliability.md, "Fork, mixed policies, moved
// directories").
#pragma once

#include <procreg/detail/file_io.hpp>
#include <procreg/error.hpp>

#include <filesystem>
#include <string>
#include <utility>

#include <fcntl.h>

namespace procreg::detail {

/// A file named by a directory descriptor and one path component.
struct located_file {
    unique_fd directory;         ///< the directory that holds the file
    std::string name;            ///< the file's name in it (one component)
    std::filesystem::path path;  ///< the whole path, for messages only
    bool allow_shared = false;   ///< accept a file owned by another user or writable by group/others
};

/// The absolute, lexically normal form of `p` (detail::absolute_path).
inline std::filesystem::path normal_absolute(const std::filesystem::path& p) {
    return absolute_path(p).lexically_normal();
}

/// Locates `file`: through a duplicate of `dirfd` (the directory `dir`,
/// already open) when `file` lies directly in `dir`, otherwise through its
/// own directory, opened now and kept.
inline located_file locate(const std::filesystem::path& file, int dirfd, const std::filesystem::path& dir,
                           bool allow_shared) {
    const std::filesystem::path whole = normal_absolute(file);
    located_file out;
    out.name = whole.filename().string();
    out.path = whole;
    out.allow_shared = allow_shared;
    if (out.name.empty() || out.name == "." || out.name == "..") {
        throw error(errc::unsafe_path, file, "not a file name");
    }
    if (dirfd >= 0 && whole.parent_path() == normal_absolute(dir)) {
        const int fd = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) throw_os_error(errc::io_failure, dir, "cannot duplicate the directory descriptor", errno);
        out.directory = unique_fd(fd);
        return out;
    }
    const int fd = sys::openat(AT_FDCWD, whole.parent_path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) throw_os_error(errc::io_failure, whole.parent_path(), "cannot open the directory", errno);
    out.directory = unique_fd(fd);
    return out;
}

/// Locates `file` through its own directory, opened now.
inline located_file locate(const std::filesystem::path& file, bool allow_shared = false) {
    return locate(file, -1, {}, allow_shared);
}

}  // namespace procreg::detail
