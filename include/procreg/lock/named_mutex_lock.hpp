// procreg/lock/named_mutex_lock.hpp — registry-wide exclusion by a robust,
// process-shared pthread mutex kept in named shared memory.
//
// Why this and not `boost::interprocess::named_mutex` (docs/engineering.md §2):
// on Linux that class is a POSIX named semaphore. A semaphore has no owner,
// so a holder killed with SIGKILL leaves it taken for ever and every later
// registry call hangs. Boost's `interprocess_mutex` is robust since 1.78 but,
// on EOWNERDEAD, unlocks without `pthread_mutex_consistent`, which leaves the
// mutex ENOTRECOVERABLE. Here the mutex is a plain `pthread_mutex_t` with
// PTHREAD_MUTEX_ROBUST | PTHREAD_PROCESS_SHARED | PTHREAD_MUTEX_ERRORCHECK in
// a segment mapped with Boost.Interprocess (`shared_memory_object` +
// `mapped_region`). When its holder dies the kernel marks it owner-dead; the
// next locker gets EOWNERDEAD, marks it consistent and goes on. "Repairing
// the protected state" is nothing at all: every registry transaction reloads
// the table from disk, and the disk only ever holds whole, atomically
// replaced files.
//
// The segment is `/dev/shm/procreg-<16 hex digits>`, the digits being the
// 64-bit FNV-1a hash of the identity of the lock file's directory (device
// and inode numbers) and the lock file's name. Not of a path string: a bind
// mount, a symlink, `..` or a renamed directory reach one directory by many
// paths, and every program that names the same registry must map the same
// mutex. It is created 0600 on first use and never removed by procreg (see
// `remove`). A hash collision between two registries (or a deleted
// directory's inode number reused) only makes them share one mutex: more
// waiting, never less exclusion.
//
// Invariants:
// - nobody touches the mutex before the segment's init word reads `ready`;
//   the word is claimed by compare-and-swap with the claimant's pid, so two
//   first users never both initialise, and a claimant that died half way is
//   detected (its pid is gone) and replaced;
// - every acquisition that sees EOWNERDEAD calls pthread_mutex_consistent
//   before returning, so procreg never leaves the mutex ENOTRECOVERABLE;
// - a segment not owned by this user, or open to group/others, is refused
//   (errc::unsafe_path): another user could otherwise hold or corrupt it.
//
// Layout: the segment's name is lock/named_mutex/segment_name.hpp, its
// layout, mapping and one-time initialisation lock/named_mutex/segment.hpp;
// this header holds the lock itself: acquisition, timed waits and recovery.
#pragma once

#include <procreg/detail/polling.hpp>
#include <procreg/error.hpp>
#include <procreg/lock/named_mutex/segment.hpp>
#include <procreg/lock/named_mutex/segment_name.hpp>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <string>
#include <utility>

#include <pthread.h>
#include <time.h>

namespace procreg::lock {

// pthread_mutex_clocklock (glibc 2.30) waits on CLOCK_MONOTONIC; older
// libcs only have pthread_mutex_timedlock on CLOCK_REALTIME.
// Under ThreadSanitizer a timed wait polls trylock instead (detail/polling.hpp).
#if !defined(PROCREG_DETAIL_TSAN) && defined(__GLIBC__) && defined(_GNU_SOURCE) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 30))
#define PROCREG_DETAIL_HAS_CLOCKLOCK 1
#else
#define PROCREG_DETAIL_HAS_CLOCKLOCK 0
#endif

/// A registry lock held in a robust pthread mutex in named shared memory.
/// Lockable and TimedLockable; excludes other processes and other threads.
///
/// Ownership is per thread: the thread that locked must unlock. Locking
/// again from the thread that holds it throws (`errc::nested_transaction`,
/// `os_error() == EDEADLK`) instead of deadlocking.
///
/// fork(): the segment stays mapped in the child, but a lock held by the
/// parent is not the child's — the child cannot release it (its `unlock()`
/// is ignored) and its `lock()` waits for the parent like any other
/// process. An unheld lock object may be used freely in a forked child.
/// exec() or death while holding: the kernel marks the mutex owner-dead and
/// the next locker recovers it.
///
/// Only programs that use this policy on the same path exclude each other:
/// it does not take the flock that `flock_lock` (and the seeds' Rust
/// programs) use. Use `flock_lock` for a registry shared with those.
class named_mutex_lock {
public:
    /// An explicit segment name, for locks that are not tied to a registry path.
    struct explicit_name {
        std::string value;  ///< no '/', at most NAME_MAX - 1 characters
    };

    /// How long a first user waits for another process to finish
    /// initialising a fresh segment before giving up.
    static constexpr std::chrono::seconds init_wait{5};

    /// Maps (creating 0600 on first use) the segment for the registry whose
    /// lock path is `lock_path` (the storage's `lock_path()`; the file itself
    /// need not exist and is never created, but its directory must exist:
    /// the storage creates it before the lock). Throws `errc::unsafe_path` when
    /// the segment belongs to another user or is open to group/others,
    /// `errc::unsupported_file` when it has another layout, `errc::io_failure`
    /// otherwise.
    explicit named_mutex_lock(const std::filesystem::path& lock_path)
        : lock_path_(named_mutex_detail::canonical_lock_path(lock_path)),
          name_(named_mutex_detail::name_for_canonical(lock_path, lock_path_)) {
        attach();
    }

    /// Maps (creating 0600 on first use) the segment called `name.value`.
    explicit named_mutex_lock(explicit_name name) : name_(std::move(name.value)) {
        named_mutex_detail::check_name(name_);
        attach();
    }

    named_mutex_lock(const named_mutex_lock&) = delete;
    named_mutex_lock& operator=(const named_mutex_lock&) = delete;

    /// Releases the lock if this object still holds it, then unmaps. The
    /// segment itself stays for other users.
    ~named_mutex_lock() {
        if (held_) unlock();
    }

    /// Blocks until this thread holds the lock. If the previous holder died
    /// holding it, recovers it and sets `last_acquire_recovered()`.
    void lock() { (void)acquired(::pthread_mutex_lock(&block()->mutex), "pthread_mutex_lock"); }

    /// Takes the lock if it is free now; never blocks.
    bool try_lock() { return acquired(::pthread_mutex_trylock(&block()->mutex), "pthread_mutex_trylock"); }

    /// Waits at most `timeout` for the lock (any duration: `hours::max()` waits).
    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
        return try_lock_until(detail::deadline_after(timeout));
    }

    /// Waits until `deadline` for the lock. The wait itself is
    /// pthread_mutex_clocklock on CLOCK_MONOTONIC (no polling), so a
    /// wall-clock change neither shortens nor extends it.
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
        const auto remaining = std::chrono::ceil<std::chrono::nanoseconds>(deadline - Clock::now());
        if (remaining <= std::chrono::nanoseconds::zero()) return try_lock();
        return timed_lock(remaining);
    }

    /// Releases the lock. Ignored when this thread does not hold it (e.g. in
    /// a forked child of the holder).
    void unlock() noexcept {
        held_ = false;
        (void)::pthread_mutex_unlock(&block()->mutex);
    }

    /// Whether the latest successful acquisition through this object found
    /// the previous holder dead (EOWNERDEAD) and recovered the mutex. Read it
    /// while holding the lock.
    bool last_acquire_recovered() const noexcept { return recovered_; }

    /// How many acquisitions, by any process, have recovered this segment's
    /// mutex from a dead holder since the segment was created.
    std::uint64_t recoveries() const noexcept {
        return __atomic_load_n(&block()->recoveries, __ATOMIC_ACQUIRE);
    }

    /// The segment's name, as given to shm_open (no leading '/').
    const std::string& name() const noexcept { return name_; }

    /// The canonical lock path (empty for an explicit name); the name derives
    /// from its directory's device and inode.
    const std::filesystem::path& lock_path() const noexcept { return lock_path_; }

    /// Where glibc keeps the segment (`/dev/shm/<name>`), as errors name it.
    std::filesystem::path segment_path() const { return named_mutex_detail::segment_path(name_); }

    /// The segment name for the registry whose lock path is `lock_path`:
    /// "procreg-" + 16 lowercase hex digits of FNV-1a-64 of
    /// "<device>:<inode>/<file name>", the device and inode numbers being
    /// those of the lock file's directory (which must exist).
    static std::string segment_name(const std::filesystem::path& lock_path) {
        return named_mutex_detail::name_for_canonical(lock_path, named_mutex_detail::canonical_lock_path(lock_path));
    }

    /// Removes the segment for `lock_path`; false when there was none, or
    /// when the lock file's directory is gone (its segment can no longer be
    /// named; remove it by `explicit_name`). procreg never does this by
    /// itself: a process that still maps the segment keeps using the old
    /// mutex while a newcomer would create a new one, and the two would not
    /// exclude each other. Call it only when no process uses the registry
    /// (administration, tests), e.g. to clear a segment of another layout.
    static bool remove(const std::filesystem::path& lock_path) {
        std::string name;
        try {
            name = segment_name(lock_path);
        } catch (const error& e) {
            if (e.os_error() == ENOENT || e.os_error() == ENOTDIR) return false;
            throw;
        }
        return boost::interprocess::shared_memory_object::remove(name.c_str());
    }

    /// Removes the segment called `name.value`; false when there was none.
    static bool remove(const explicit_name& name) {
        return boost::interprocess::shared_memory_object::remove(name.value.c_str());
    }

private:
    named_mutex_detail::shared_block* block() const noexcept {
        return static_cast<named_mutex_detail::shared_block*>(region_.get_address());
    }

    [[noreturn]] void fail(errc code, const std::string& what, int err = 0) const {
        named_mutex_detail::fail(name_, code, what, err);
    }

    // Maps the segment; see named_mutex_detail::attach.
    void attach() { region_ = named_mutex_detail::attach(name_, lock_path_, init_wait); }

    bool timed_lock(std::chrono::nanoseconds remaining) {
        remaining = std::min<std::chrono::nanoseconds>(remaining, detail::longest_wait);  // fits any timespec
#if defined(PROCREG_DETAIL_TSAN)
        return detail::poll_until(std::chrono::steady_clock::now() + remaining, [&] { return try_lock(); });
#else
#if PROCREG_DETAIL_HAS_CLOCKLOCK
        const clockid_t clock = CLOCK_MONOTONIC;
#else
        const clockid_t clock = CLOCK_REALTIME;
#endif
        struct ::timespec now {};
        (void)::clock_gettime(clock, &now);
        const auto total = std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec) + remaining;
        const auto whole = std::chrono::duration_cast<std::chrono::seconds>(total);
        struct ::timespec until {};
        until.tv_sec = static_cast<std::time_t>(whole.count());
        until.tv_nsec = static_cast<long>((total - whole).count());
#if PROCREG_DETAIL_HAS_CLOCKLOCK
        return acquired(::pthread_mutex_clocklock(&block()->mutex, clock, &until), "pthread_mutex_clocklock");
#else
        return acquired(::pthread_mutex_timedlock(&block()->mutex, &until), "pthread_mutex_timedlock");
#endif
#endif
    }

    // Interprets a pthread lock result: true when this thread now holds the
    // lock, false when it was busy or the wait timed out, throws otherwise.
    bool acquired(int rc, const char* call) {
        if (rc == 0) {
            held_ = true;
            recovered_ = false;
            return true;
        }
        if (rc == EBUSY || rc == ETIMEDOUT) return false;
        if (rc == EOWNERDEAD) {
            // We own the mutex; its previous holder died. The registry's
            // state needs no repair (it is reloaded from disk, where saves
            // are atomic), so mark the mutex usable again at once.
            const int fixed = ::pthread_mutex_consistent(&block()->mutex);
            if (fixed != 0) {
                (void)::pthread_mutex_unlock(&block()->mutex);
                fail(errc::io_failure, "pthread_mutex_consistent failed after EOWNERDEAD", fixed);
            }
            __atomic_add_fetch(&block()->recoveries, std::uint64_t{1}, __ATOMIC_ACQ_REL);
            held_ = true;
            recovered_ = true;
            return true;
        }
        if (rc == EDEADLK) {
            fail(errc::nested_transaction,
                 "this thread already holds the registry lock (a transaction nested in a transaction on the same "
                 "registry?)",
                 rc);
        }
        if (rc == ENOTRECOVERABLE) {
            fail(errc::io_failure,
                 "the mutex is not recoverable (a program unlocked it after EOWNERDEAD without "
                 "pthread_mutex_consistent); stop every user and remove it with named_mutex_lock::remove()",
                 rc);
        }
        fail(errc::io_failure, std::string(call) + " failed", rc);
    }

    std::filesystem::path lock_path_;
    std::string name_;
    boost::interprocess::mapped_region region_;
    bool held_ = false;
    bool recovered_ = false;
};

}  // namespace procreg::lock
