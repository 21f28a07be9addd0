// procreg/detail/publish.hpp — the one publication layer: how every storage
// makes a change visible.
//
// Every publication starts with a private temp file (`write_temp_at`: O_EXCL
// in the same directory, named by detail/temp_files.hpp, written whole,
// fsynced, closed) and ends in one of three ways: replace (rename over the
// target: `atomic_write_at` / `atomic_replace_at`, json_table and
// record_files), create if absent (a rename that never replaces, or
// link(2): `atomic_write_at` with `if_target_exists::keep`, record_files;
// `link_if_absent`, claim_file's compare-and-swap), or, for a file that
// already exists, a move (`move_file_at`) or removal
// (`remove_file_durably_at`).
//
// Invariants:
// - a file is replaced only by the atomic replace protocol: O_EXCL temp file
//   in the same directory (detail/temp_files.hpp), write all, fsync, rename
//   over the target — or a rename or link that never replaces, for a create
//   if absent — fsync the directory; the temp file is removed on every
//   failure (or left to the one sweep rule), and an fsync failure is never
//   retried or ignored (PostgreSQL's "fsyncgate");
// - a change whose directory fsync fails is undone before the error is
//   thrown (the version it replaced is kept by a hard link until then), so
//   an operation that throws has changed nothing (docs/errors.md).
#pragma once

#include <procreg/detail/file_io.hpp>
#include <procreg/detail/sys.hpp>
#include <procreg/detail/temp_files.hpp>
#include <procreg/error.hpp>

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace procreg::detail {

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

/// What `write_temp_at` hands over of the temp file besides its name.
enum class keep_descriptor {
    none,         ///< nothing
    if_possible,  ///< a duplicate of its descriptor, or an empty one if dup failed (not an error)
    pinned,       ///< a duplicate of its descriptor and its fstat, or an error: the caller proves by
                  ///< them that a file is the one it wrote (the open descriptor pins the inode)
};

/// A complete private temp file, written but not yet published.
struct written_temp {
    std::string name;        ///< its private name in the directory (`private_name(target)`)
    unique_fd kept;          ///< its descriptor, as `keep_descriptor` asked
    struct ::stat status {}; ///< its fstat, with `keep_descriptor::pinned`
};

/// The first step of every publication: creates a private temp file for
/// `target` in `dirfd` (O_EXCL, O_NOFOLLOW, 0600, a fresh name from the one
/// naming scheme of detail/temp_files.hpp, so the one sweep rule removes it
/// if its writer dies), writes all of `data` (its pieces in order), fsyncs
/// it when `durable`, and closes it. The descriptor handed over (`keep`) is a duplicate taken
/// before the close, so it is this file by construction: a reopen by name
/// could meet a substitute. On any failure the temp file is gone (or left
/// to the sweep) and nothing else was touched.
inline written_temp write_temp_at(int dirfd, const path_ref& path, std::string_view target, text_pieces data,
                                  bool durable, keep_descriptor keep = keep_descriptor::none) {
    written_temp out;
    int fd = -1;
    for (int attempt = 0; attempt < 64 && fd < 0; ++attempt) {
        out.name = private_name(target);
        fd = sys::openat(dirfd, out.name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (const int err = errno; fd < 0 && err != EEXIST) {
            throw_os_error(errc::io_failure, path, "cannot create temp file " + out.name, err);
        }
    }
    if (fd < 0) throw_os_error(errc::io_failure, path, "cannot create a unique temp file", EEXIST);
    unique_fd handle(fd);
    // `err` is the errno of the failed call, read before this runs (see throw_os_error).
    const auto fail = [&](std::string_view what, int err) {
        handle.reset();
        (void)discard_private(dirfd, out.name);
        throw_os_error(errc::io_failure, path, what, err);
    };
    if (const int err = write_all(fd, data)) fail("cannot write temp file " + out.name, err);
    if (durable && sys::fsync(fd) != 0) {
        const int err = errno;
        fail("fsync of temp file failed; nothing was changed", err);
    }
    if (keep == keep_descriptor::pinned && sys::fstat(fd, &out.status) != 0) {
        const int err = errno;
        fail("cannot stat temp file " + out.name, err);
    }
    if (keep != keep_descriptor::none) {
        out.kept = unique_fd(sys::dup_cloexec(fd));
        if (const int err = errno; !out.kept && keep == keep_descriptor::pinned) {
            fail("cannot keep temp file " + out.name + " open", err);
        }
    }
    if (sys::close(handle.release()) != 0) {
        const int err = errno;
        fail("closing temp file failed; nothing was changed", err);
    }
    return out;
}

/// `write_temp_at` of one string.
inline written_temp write_temp_at(int dirfd, const path_ref& path, std::string_view target, std::string_view data,
                                  bool durable, keep_descriptor keep = keep_descriptor::none) {
    return write_temp_at(dirfd, path, target, text_pieces{&data, 1}, durable, keep);
}

/// Publishes the complete private file `temp` at `name` (both in `dirfd`)
/// by link(2), which never replaces: create if absent, as one atomic step
/// also against writers that take no lock and create `name` with O_EXCL.
/// Needs hard links (claim_file, whose compare-and-swap needs them anyway).
/// `temp` is removed either way. Returns 0, EEXIST, or the errno of the
/// failure; `left_temp`, when given, is set if `temp` could not be removed.
inline int link_if_absent(int dirfd, const std::string& temp, const char* name, bool* left_temp = nullptr) noexcept {
    const int err = sys::linkat(dirfd, temp.c_str(), dirfd, name, 0) == 0 ? 0 : errno;
    if (!discard_private(dirfd, temp) && left_temp) *left_temp = true;
    return err;
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
/// new file (`keep_descriptor::if_possible`: it stays empty if the
/// duplicate could not be made, which is not an error).
inline bool atomic_write_at(int dirfd, const path_ref& path, const char* name, text_pieces data,
                            bool durable, if_target_exists existing, unique_fd* keep_open = nullptr,
                            bool* left_temp = nullptr) {
    written_temp written = write_temp_at(dirfd, path, name, data, durable,
                                         keep_open ? keep_descriptor::if_possible : keep_descriptor::none);
    const std::string& temp = written.name;
    // `err` is the errno of the failed call, read before this runs (see throw_os_error).
    const auto fail = [&](std::string_view what, int err) {
        (void)sys::unlinkat(dirfd, temp.c_str(), 0);
        throw_os_error(errc::io_failure, path, what, err);
    };
    // A durable replace keeps the version it replaces reachable, under a
    // private name, until the directory fsync has succeeded: the undo.
    std::string kept_old;
    bool existed_before = existing == if_target_exists::replace;
    if (durable && existing == if_target_exists::replace) {
        kept_old = private_name(name);
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
    if (keep_open) *keep_open = std::move(written.kept);
    return true;
}

/// `atomic_write_at` of one string.
inline bool atomic_write_at(int dirfd, const path_ref& path, const char* name, std::string_view data,
                            bool durable, if_target_exists existing, unique_fd* keep_open = nullptr,
                            bool* left_temp = nullptr) {
    return atomic_write_at(dirfd, path, name, text_pieces{&data, 1}, durable, existing, keep_open, left_temp);
}

/// Replaces `name` in `dirfd` by `data` (a text in pieces, or one string):
/// `atomic_write_at` with `if_target_exists::replace`.
inline void atomic_replace_at(int dirfd, const path_ref& path, const char* name, text_pieces data,
                              bool durable, unique_fd* keep_open = nullptr, bool* left_temp = nullptr) {
    (void)atomic_write_at(dirfd, path, name, data, durable, if_target_exists::replace, keep_open, left_temp);
}
inline void atomic_replace_at(int dirfd, const path_ref& path, const char* name, std::string_view data,
                              bool durable, unique_fd* keep_open = nullptr, bool* left_temp = nullptr) {
    atomic_replace_at(dirfd, path, name, text_pieces{&data, 1}, durable, keep_open, left_temp);
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
    std::string kept_old = private_name(name);
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

/// Moves `name` from the directory `from_dir` (at `from`) to `to_dir` (at
/// `to`) by one rename(2), which replaces a file of that name there. With
/// `durable` both directories are fsynced, under the rule of
/// `atomic_write_at`: the file replaced at the destination stays reachable
/// under a private name until both have succeeded, and a failed fsync
/// moves the file back and restores the one it replaced
/// (`throw_unsynced`). `left_temp` as there.
inline void move_file_at(int from_dir, const std::filesystem::path& from, int to_dir, const std::filesystem::path& to,
                         const std::string& name, bool durable, bool* left_temp = nullptr) {
    std::string kept;
    if (durable) {
        kept = private_name(name);
        if (sys::linkat(to_dir, name.c_str(), to_dir, kept.c_str(), 0) != 0) kept.clear();
    }
    if (sys::renameat(from_dir, name.c_str(), to_dir, name.c_str()) != 0) {
        const int err = errno;
        if (!kept.empty()) (void)discard_private(to_dir, kept);
        throw_os_error(errc::io_failure, from / name, "cannot move to " + (to / name).string(), err);
    }
    if (!durable) return;
    for (const auto& [dirfd, dir] : {std::pair<int, const std::filesystem::path*>{to_dir, &to},
                                     std::pair<int, const std::filesystem::path*>{from_dir, &from}}) {
        if (sys::fsync(dirfd) != 0) {
            const int err = errno;
            bool undone = sys::renameat(to_dir, name.c_str(), from_dir, name.c_str()) == 0;
            if (undone && !kept.empty()) {
                undone = sys::renameat(to_dir, kept.c_str(), to_dir, name.c_str()) == 0;
            } else if (!kept.empty()) {
                (void)discard_private(to_dir, kept);
            }
            throw_unsynced(path_ref(*dir, name), undone, err);
        }
    }
    if (!kept.empty() && !discard_private(to_dir, kept) && left_temp) *left_temp = true;
}

}  // namespace procreg::detail
