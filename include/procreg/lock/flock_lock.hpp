// procreg/lock/flock_lock.hpp — registry-wide exclusion by flock(2) on a dedicated lock file.
//
// Why flock and not fcntl/Boost.Interprocess file_lock (engineering notes
// §1): an fcntl lock belongs to the process, so closing *any* descriptor of
// the file drops it and two threads never exclude each other. flock belongs
// to the open file description.
//
// Invariants:
// - the lock file is only ever opened, locked and closed; procreg never
//   renames or unlinks it;
// - it is opened O_CLOEXEC|O_NOFOLLOW, mode 0600, once per process and lock
//   object, and kept open between acquisitions (opening it is most of what
//   an uncontended acquisition would otherwise cost). Kept open is not kept
//   locked: every release is an explicit LOCK_UN, so neither an exec'd child
//   (the descriptor is not inherited) nor a child forked mid-transaction
//   (it shares the description, which LOCK_UN releases) keeps it held;
// - a forked child never locks the description it inherited (two processes
//   would then "hold" one flock together): the lock remembers which process
//   opened its descriptor and a child opens its own;
// - a lock is held on the file the path names *now*: after each flock the
//   path is checked to still name the locked inode, and when the file was
//   removed or replaced meanwhile (a tmp cleaner, an operator) the lock is
//   let go and taken on the new file, so two processes never lock two
//   different inodes under one name;
// - an in-process mutex is taken first, so threads sharing one registry
//   object exclude each other too (flock would let one description in twice).
#pragma once

#include <procreg/detail/file_io.hpp>
#include <procreg/detail/polling.hpp>
#include <procreg/error.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <thread>
#include <utility>

#include <sys/types.h>
#include <unistd.h>

namespace procreg::lock {

/// Exclusive flock(2) on a lock file; Lockable and TimedLockable.
class flock_lock {
public:
    /// Locks `lock_file`, which is created (0600) on first use; its directory
    /// must exist. A relative path is made absolute now, as the storage opens
    /// its directory now: a later chdir must not move the lock away from the data.
    explicit flock_lock(std::filesystem::path lock_file) : path_(detail::absolute_path(lock_file)) {}

    flock_lock(const flock_lock&) = delete;
    flock_lock& operator=(const flock_lock&) = delete;

    /// Blocks until this thread holds the lock. Throws `errc::io_failure`
    /// with EDEADLK if this thread holds it already (a nested transaction).
    void lock() {
        refuse_relock();
        thread_mutex_.lock();
        try {
            (void)acquire(LOCK_EX);
        } catch (...) {
            thread_mutex_.unlock();
            throw;
        }
    }

    /// Takes the lock if it is free now; never blocks.
    bool try_lock() { return try_lock_until(std::chrono::steady_clock::now()); }

    /// Waits at most `timeout` for the lock.
    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
        return try_lock_until(std::chrono::steady_clock::now() + timeout);
    }

    /// Waits until `deadline` for the lock. flock has no timeout, so this
    /// polls with LOCK_NB and a backoff from 1 ms to 25 ms.
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
        refuse_relock();
        if (!lock_thread_mutex_until(deadline)) return false;
        try {
            if (detail::poll_until(deadline, [&] { return acquire(LOCK_EX | LOCK_NB); })) return true;
        } catch (...) {
            thread_mutex_.unlock();
            throw;
        }
        thread_mutex_.unlock();
        return false;
    }

    /// Releases the lock; the descriptor stays open for the next acquisition.
    /// LOCK_UN, not a close, is what releases: a child forked during the
    /// transaction shares the open file description, and a close alone
    /// would leave the lock held until that child exits. (Such a child must
    /// not use this lock object while the parent holds it: it inherits the
    /// thread mutex in whatever state the fork found it.)
    void unlock() noexcept {
        owner_.store(std::thread::id(), std::memory_order_relaxed);
        // Should LOCK_UN ever fail, closing the descriptor releases the lock
        // all the same (unless a forked child still shares it).
        if (fd_ && detail::sys::flock(fd_.get(), LOCK_UN) != 0) fd_.reset();
        thread_mutex_.unlock();
    }

    /// The lock file.
    const std::filesystem::path& path() const noexcept { return path_; }

private:
    // Relocking a std::timed_mutex from its owner thread is undefined (in
    // practice a silent hang); a nested transaction gets an error instead.
    void refuse_relock() const {
        if (owner_.load(std::memory_order_relaxed) == std::this_thread::get_id()) {
            detail::throw_os_error(errc::io_failure, path_,
                                   "this thread already holds the lock (transactions do not nest)", EDEADLK);
        }
    }

    template <class Clock, class Duration>
    bool lock_thread_mutex_until(const std::chrono::time_point<Clock, Duration>& deadline) {
#if defined(PROCREG_DETAIL_TSAN)  // see detail/polling.hpp
        return detail::poll_until(deadline, [&] { return thread_mutex_.try_lock(); });
#else
        return thread_mutex_.try_lock_until(deadline);
#endif
    }

    // One acquisition with the thread mutex held: flock(`operation`) on the
    // file the path names now. True when held (the owner is recorded);
    // false only for LOCK_NB when another holds it; throws on failure.
    bool acquire(int operation) {
        for (;;) {
            if (detail::sys::flock(descriptor(), operation) != 0) {
                if (errno == EINTR) continue;
                if ((operation & LOCK_NB) != 0 && errno == EWOULDBLOCK) return false;
                detail::throw_os_error(errc::io_failure, path_,
                                       (operation & LOCK_NB) != 0 ? "flock(LOCK_EX|LOCK_NB) failed"
                                                                  : "flock(LOCK_EX) failed",
                                       errno);
            }
            if (!still_names_locked_file()) continue;
            owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
            return true;
        }
    }

    // The descriptor to flock, opened on first use and again in a forked
    // child (see the invariants). Called with the thread mutex held.
    int descriptor() {
        const pid_t self = ::getpid();
        if (fd_ && opened_by_ == self) return fd_.get();
        // A forked child closes its inherited copy without LOCK_UN: the
        // description, and any lock on it, is the parent's.
        fd_.reset();
        const int fd = detail::sys::openat(AT_FDCWD, path_.c_str(),
                                           O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        if (fd < 0) {
            const int err = errno;
            if (err == ELOOP) detail::throw_os_error(errc::unsafe_path, path_, "lock file is a symbolic link (refused)", err);
            detail::throw_os_error(errc::io_failure, path_, "cannot open lock file", err);
        }
        detail::unique_fd handle(fd);
        struct ::stat st {};
        if (detail::sys::fstat(fd, &st) != 0) detail::throw_os_error(errc::io_failure, path_, "cannot stat lock file", errno);
        if (!S_ISREG(st.st_mode)) throw error(errc::unsafe_path, path_, "lock file is not a regular file (refused)");
        fd_ = std::move(handle);
        opened_by_ = self;
        device_ = st.st_dev;
        inode_ = st.st_ino;
        return fd_.get();
    }

    // Called right after a successful flock: whether the path still names
    // the inode just locked. When it does not (the file was removed or
    // replaced since it was opened), the lock is let go and the descriptor
    // dropped, so the caller's next round opens and locks the file there now.
    bool still_names_locked_file() {
        struct ::stat st {};
        int err = 0;
        do {
            err = detail::sys::fstatat(AT_FDCWD, path_.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
        } while (err == EINTR);
        if (err == 0 && st.st_dev == device_ && st.st_ino == inode_) return true;
        (void)detail::sys::flock(fd_.get(), LOCK_UN);  // the close below releases it anyway
        fd_.reset();
        if (err != 0 && err != ENOENT) detail::throw_os_error(errc::io_failure, path_, "cannot stat lock file", err);
        return false;
    }

    std::filesystem::path path_;
    std::timed_mutex thread_mutex_;
    std::atomic<std::thread::id> owner_{};  // the holding thread, for refuse_relock
    // Guarded by thread_mutex_:
    detail::unique_fd fd_;  // the lock file, kept open between acquisitions
    pid_t opened_by_ = 0;   // the process that opened fd_
    dev_t device_ = 0;      // fd_'s file, to see that the path still names it
    ino_t inode_ = 0;
};

}  // namespace procreg::lock
