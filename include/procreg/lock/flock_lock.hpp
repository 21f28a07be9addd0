// procreg/lock/flock_lock.hpp — registry-wide exclusion by flock(2) on a dedicated lock file.
//
// Why flock and not fcntl/Boost.Interprocess file_lock (engineering notes
// §1): an fcntl lock belongs to the process, so closing *any* descriptor of
// the file drops it and two threads never exclude each other. flock belongs
// to the open file description.
//
// Invariants:
// - the lock file is only ever opened, locked and closed; procreg never
//   renames or unlinks it (a waiter on an unlinked inode would split off);
// - it is opened O_CLOEXEC|O_NOFOLLOW, mode 0600, afresh for each
//   acquisition, so a forked or exec'd child never inherits a held lock;
// - an in-process mutex is taken first, so threads sharing one registry
//   object exclude each other too (flock would let one description in twice).
#pragma once

#include <procreg/detail/file_io.hpp>
#include <procreg/error.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <thread>
#include <utility>

namespace procreg::lock {

/// Exclusive flock(2) on a lock file; Lockable and TimedLockable.
class flock_lock {
public:
    /// Locks `lock_file`, which is created (0600) on first use; its directory must exist.
    explicit flock_lock(std::filesystem::path lock_file) : path_(std::move(lock_file)) {}

    flock_lock(const flock_lock&) = delete;
    flock_lock& operator=(const flock_lock&) = delete;

    /// Blocks until this thread holds the lock.
    void lock() {
        thread_mutex_.lock();
        try {
            detail::unique_fd fd = open_lock_file();
            while (detail::sys::flock(fd.get(), LOCK_EX) != 0) {
                if (errno == EINTR) continue;
                detail::throw_os_error(errc::io_failure, path_, "flock(LOCK_EX) failed", errno);
            }
            fd_ = std::move(fd);
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
        if (!thread_mutex_.try_lock_until(deadline)) return false;
        try {
            detail::unique_fd fd = open_lock_file();
            auto pause = std::chrono::milliseconds(1);
            for (;;) {
                if (detail::sys::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) {
                    fd_ = std::move(fd);
                    return true;
                }
                if (errno == EINTR) continue;
                if (errno != EWOULDBLOCK) {
                    detail::throw_os_error(errc::io_failure, path_, "flock(LOCK_EX|LOCK_NB) failed", errno);
                }
                if (Clock::now() >= deadline) break;
                std::this_thread::sleep_for(pause);
                pause = std::min(pause * 2, std::chrono::milliseconds(25));
            }
        } catch (...) {
            thread_mutex_.unlock();
            throw;
        }
        thread_mutex_.unlock();
        return false;
    }

    /// Releases the lock. Closing the descriptor releases the flock.
    void unlock() noexcept {
        fd_.reset();
        thread_mutex_.unlock();
    }

    /// The lock file.
    const std::filesystem::path& path() const noexcept { return path_; }

private:
    detail::unique_fd open_lock_file() const {
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
        return handle;
    }

    std::filesystem::path path_;
    std::timed_mutex thread_mutex_;
    detail::unique_fd fd_;
};

}  // namespace procreg::lock
