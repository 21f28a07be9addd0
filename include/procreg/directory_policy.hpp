// procreg/directory_policy.hpp — what a registry's directory may be: an
// option of every file storage (`options::directory`).
//
// Invariant: by default a registry lives only in a directory of this user
// that no one else may write (created 0700 when missing), and its lock file
// obeys the same rule, so another user can neither plant files or symlinks
// in it nor hold or replace its lock (docs/engineering.md §5).
#pragma once

namespace procreg {

/// What a registry directory may be.
struct directory_policy {
    /// Create the directory (and missing parents, each 0700) when absent.
    bool create = true;
    /// Accept a directory owned by another user or writable by group/others,
    /// and a lock file likewise. Off by default: such a directory lets
    /// another user plant files and symlinks in the registry. Turn on only
    /// for a directory shared on purpose.
    bool allow_shared = false;
    /// Set an existing directory of this user whose mode is not 0700 to
    /// 0700 (through the descriptor just checked), instead of refusing it
    /// when group/others may write. algocline's seed does this at every
    /// save. A directory of another user is refused all the same.
    bool tighten_own = false;
};

}  // namespace procreg
