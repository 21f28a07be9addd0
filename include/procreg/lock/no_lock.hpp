// procreg/lock/no_lock.hpp — the lock of a storage that serializes transactions itself.
//
// storage::etcd_store makes each transaction serializable by optimistic
// concurrency: it reads at one revision and commits with a compare of
// everything it read, and the registry runs the steps again when the
// compare fails (detail/commit_conflict.hpp). No lock is needed, so this
// one excludes nothing: every member does nothing and always succeeds.
// Invariant: only for storages that serialize on their own; with a local
// storage it would let two writers interleave.
#pragma once

#include <chrono>
#include <filesystem>

namespace procreg::lock {

/// A lock that excludes nothing (see the file comment).
struct no_lock {
    /// A lock with nothing to hold.
    no_lock() = default;
    /// Built from the storage's lock path, as every lock is; the path is not used.
    explicit no_lock(const std::filesystem::path& /*lock_path*/) {}
    /// Does nothing.
    void lock() noexcept {}
    /// Always succeeds.
    bool try_lock() noexcept { return true; }
    /// Always succeeds at once.
    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& /*timeout*/) noexcept {
        return true;
    }
    /// Does nothing.
    void unlock() noexcept {}
};

}  // namespace procreg::lock
