// procreg/lock/flock_lock.hpp — registry-wide exclusion by flock(2) on a dedicated lock file.
//
// Why flock and not fcntl/Boost.Interprocess file_lock (docs/engineering.md
// §1): an fcntl lock belongs to the process, so closing *any* descriptor of
// the file drops it and two threads never exclude each other. flock belongs
// to the open file description.
//
// Invariants:
// - the lock file is only ever opened, locked and closed; procreg never
//   renames or unlinks it;
// - it is reached through a directory descriptor opened once (the storage's
//   own when the lock lies in the data directory, detail/located_file.hpp),
//   never through its path again: moving the directory or swapping a
//   symlink at its name cannot split the lock from the data;
// - it is opened O_CLOEXEC|O_NOFOLLOW, mode 0600, must be a regular file of
//   this user not writable by group or others (unless the storage's
//   directory policy allows shared files), and is kept open between
//   acquisitions. Kept open is not kept locked: every release is an
//   explicit LOCK_UN, so an exec'd child (the descriptor is not inherited)
//   never keeps it held;
// - fork(): everything this object knows is per process. A child finds the
//   parent's state (thread mutex, descriptor, holder) and leaves it alone:
//   it opens its own descriptor, takes a fresh thread mutex, and waits for
//   the lock like any other process; an `unlock()` in the child of a lock
//   the parent holds does nothing, so a child that unwinds a transaction it
//   was forked in never releases the parent's lock;
// - a lock is held on the file the directory holds *now*: after each flock
//   the name is checked to still name the locked inode, and when the file
//   was removed or replaced meanwhile (a tmp cleaner, an operator) the lock
//   is let go and taken on the new file, so two processes never lock two
//   different inodes under one name;
// - an in-process mutex is taken first, so threads sharing one lock object
//   exclude each other too (flock would let one description in twice);
// - a thread that already holds a lock file, through this object or any
//   other of this process, gets EDEADLK instead of waiting for itself.
#pragma once

#include <procreg/detail/file_io.hpp>
#include <procreg/detail/located_file.hpp>
#include <procreg/detail/polling.hpp>
#include <procreg/error.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

namespace procreg::lock {

namespace flock_detail {

/// The lock files this process's threads hold, by (device, inode), with
/// the holding thread: how a second lock object on the same file sees that
/// its own thread holds it already. Entries of another process (inherited
/// through fork) are ignored.
class held_files {
public:
    /// Whether this thread of this process holds the file.
    static bool held_by_this_thread(dev_t device, ino_t inode) {
        std::lock_guard<std::mutex> guard(mutex());
        const pid_t self = ::getpid();
        const auto me = std::this_thread::get_id();
        for (const auto& e : entries())
            if (e.device == device && e.inode == inode && e.process == self && e.thread == me) return true;
        return false;
    }
    /// Records that this thread holds the file.
    static void add(dev_t device, ino_t inode) {
        std::lock_guard<std::mutex> guard(mutex());
        const pid_t self = ::getpid();
        auto& all = entries();
        all.erase(std::remove_if(all.begin(), all.end(), [&](const entry& e) { return e.process != self; }), all.end());
        all.push_back(entry{device, inode, self, std::this_thread::get_id()});
    }
    /// Records that this thread no longer holds the file.
    static void remove(dev_t device, ino_t inode) noexcept {
        std::lock_guard<std::mutex> guard(mutex());
        const pid_t self = ::getpid();
        const auto me = std::this_thread::get_id();
        auto& all = entries();
        for (auto it = all.begin(); it != all.end(); ++it) {
            if (it->device == device && it->inode == inode && it->process == self && it->thread == me) {
                all.erase(it);
                return;
            }
        }
    }

private:
    struct entry {
        dev_t device;
        ino_t inode;
        pid_t process;
        std::thread::id thread;
    };
    // A child forked while another thread held this mutex would inherit it
    // locked: the table is only touched for a few instructions, and a
    // program that forks from a threaded process and then locks in the
    // child already relies on the same of malloc's own locks.
    static std::mutex& mutex() {
        static std::mutex m;
        return m;
    }
    static std::vector<entry>& entries() {
        static std::vector<entry> all;
        return all;
    }
};

}  // namespace flock_detail

/// Exclusive flock(2) on a lock file; Lockable and TimedLockable.
class flock_lock {
public:
    /// Locks `lock_file`, which is created (0600) on first use; its directory
    /// must exist and is opened now, so a later chdir or a moved directory
    /// cannot move the lock away from the data.
    explicit flock_lock(const std::filesystem::path& lock_file) : flock_lock(detail::locate(lock_file)) {}

    /// Locks the file `where` names: how a registry gives the lock its
    /// storage's own directory descriptor.
    explicit flock_lock(detail::located_file where)
        : where_(std::move(where)), state_(new process_state(::getpid())) {}

    flock_lock(const flock_lock&) = delete;
    flock_lock& operator=(const flock_lock&) = delete;

    ~flock_lock() {
        process_state* state = state_.load(std::memory_order_acquire);
        // Another process's state (inherited through fork) may hold a locked
        // mutex, which must not be destroyed: it is left to the process's end.
        if (state->process == ::getpid()) delete state;
    }

    /// Blocks until this thread holds the lock. Throws
    /// `errc::nested_transaction` (EDEADLK) if this thread holds it already,
    /// through this object or another one on the same file.
    void lock() {
        process_state& state = here();
        refuse_relock(state);
        state.thread_mutex.lock();
        try {
            (void)acquire(state, LOCK_EX);
        } catch (...) {
            state.thread_mutex.unlock();
            throw;
        }
    }

    /// Takes the lock if it is free now; never blocks.
    bool try_lock() { return try_lock_until(std::chrono::steady_clock::now()); }

    /// Waits at most `timeout` for the lock (any duration: `hours::max()` waits).
    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
        return try_lock_until(detail::deadline_after(timeout));
    }

    /// Waits until `deadline` for the lock. flock has no timeout, so this
    /// polls with LOCK_NB and a backoff from 1 ms to 25 ms.
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
        process_state& state = here();
        refuse_relock(state);
        if (!lock_thread_mutex_until(state, deadline)) return false;
        try {
            if (detail::poll_until(deadline, [&] { return acquire(state, LOCK_EX | LOCK_NB); })) return true;
        } catch (...) {
            state.thread_mutex.unlock();
            throw;
        }
        state.thread_mutex.unlock();
        return false;
    }

    /// Releases the lock if this thread of this process holds it; otherwise
    /// (a child forked while the parent held it) does nothing. The
    /// descriptor stays open for the next acquisition. LOCK_UN, not a
    /// close, is what releases.
    void unlock() noexcept {
        process_state* state = state_.load(std::memory_order_acquire);
        if (state->process != ::getpid()) return;
        if (state->owner.load(std::memory_order_relaxed) != std::this_thread::get_id()) return;
        flock_detail::held_files::remove(state->device, state->inode);
        state->owner.store(std::thread::id(), std::memory_order_relaxed);
        // Should LOCK_UN ever fail, closing the descriptor releases the lock
        // all the same (unless a forked child still shares it).
        if (state->fd && detail::sys::flock(state->fd.get(), LOCK_UN) != 0) state->fd.reset();
        state->thread_mutex.unlock();
    }

    /// The lock file.
    const std::filesystem::path& path() const noexcept { return where_.path; }

private:
    // What one process knows of the lock. A forked child replaces it with
    // its own (see the invariants).
    struct process_state {
        explicit process_state(pid_t self) noexcept : process(self) {}
        const pid_t process;
        std::timed_mutex thread_mutex;
        std::atomic<std::thread::id> owner{};  // the holding thread, for refuse_relock and unlock
        // Guarded by thread_mutex:
        detail::unique_fd fd;  // the lock file, kept open between acquisitions
        dev_t device = 0;      // fd's file, to see that the name still names it
        ino_t inode = 0;
    };

    // This process's state, made on first use in a forked child. The
    // inherited one is abandoned, not freed: its mutex may be locked by a
    // thread that does not exist here, and its descriptor is the parent's
    // open file description, which this process must not unlock.
    process_state& here() {
        const pid_t self = ::getpid();
        process_state* current = state_.load(std::memory_order_acquire);
        while (current->process != self) {
            auto* fresh = new process_state(self);
            if (state_.compare_exchange_strong(current, fresh, std::memory_order_acq_rel)) {
                // The parent's description: closed here without LOCK_UN (that
                // would release the parent's lock), so that should the parent
                // die holding it, this process does not keep it held.
                current->fd.reset();
                return *fresh;
            }
            delete fresh;  // another thread of this child made one first; `current` is it now
        }
        return *current;
    }

    // Relocking a std::timed_mutex from its owner thread is undefined (in
    // practice a silent hang); a nested transaction gets an error instead.
    void refuse_relock(const process_state& state) const {
        if (state.owner.load(std::memory_order_relaxed) == std::this_thread::get_id()) throw_relock();
    }

    [[noreturn]] void throw_relock() const {
        detail::throw_os_error(errc::nested_transaction, where_.path,
                               "this thread already holds the lock (transactions do not nest)", EDEADLK);
    }

    template <class Clock, class Duration>
    static bool lock_thread_mutex_until(process_state& state, const std::chrono::time_point<Clock, Duration>& deadline) {
#if defined(PROCREG_DETAIL_TSAN)  // see detail/polling.hpp
        return detail::poll_until(deadline, [&] { return state.thread_mutex.try_lock(); });
#else
        return state.thread_mutex.try_lock_until(deadline);
#endif
    }

    // One acquisition with the thread mutex held: flock(`operation`) on the
    // file the directory holds now. True when held (the owner is recorded);
    // false only for LOCK_NB when another holds it; throws on failure.
    bool acquire(process_state& state, int operation) {
        for (;;) {
            const int fd = descriptor(state);
            if (flock_detail::held_files::held_by_this_thread(state.device, state.inode)) throw_relock();
            if (detail::sys::flock(fd, operation) != 0) {
                const int err = errno;
                if (err == EINTR) continue;
                if ((operation & LOCK_NB) != 0 && err == EWOULDBLOCK) return false;
                detail::throw_os_error(errc::io_failure, where_.path,
                                       (operation & LOCK_NB) != 0 ? "flock(LOCK_EX|LOCK_NB) failed"
                                                                  : "flock(LOCK_EX) failed",
                                       err);
            }
            if (!still_names_locked_file(state)) continue;
            flock_detail::held_files::add(state.device, state.inode);
            state.owner.store(std::this_thread::get_id(), std::memory_order_relaxed);
            return true;
        }
    }

    // The descriptor to flock, opened on first use in this process (see the
    // invariants). Called with the thread mutex held.
    int descriptor(process_state& state) {
        if (state.fd) return state.fd.get();
        const int fd = detail::sys::openat(where_.directory.get(), where_.name.c_str(),
                                           O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        if (fd < 0) {
            const int err = errno;
            if (err == ELOOP) detail::throw_os_error(errc::unsafe_path, where_.path, "lock file is a symbolic link (refused)", err);
            detail::throw_os_error(errc::io_failure, where_.path, "cannot open lock file", err);
        }
        detail::unique_fd handle(fd);
        struct ::stat st {};
        if (detail::sys::fstat(fd, &st) != 0) {
            const int err = errno;
            detail::throw_os_error(errc::io_failure, where_.path, "cannot stat lock file", err);
        }
        if (!S_ISREG(st.st_mode)) throw error(errc::unsafe_path, where_.path, "lock file is not a regular file (refused)");
        if (!where_.allow_shared) {
            if (st.st_uid != ::geteuid()) {
                throw error(errc::unsafe_path, where_.path,
                            "lock file is owned by uid " + std::to_string(st.st_uid) + ", not by this user (uid " +
                                std::to_string(::geteuid()) + "); refused (set directory_policy::allow_shared "
                                "for a registry shared on purpose)");
            }
            if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
                throw error(errc::unsafe_path, where_.path,
                            "lock file is writable by group or others; refused (chmod 0600 it, or set "
                            "directory_policy::allow_shared)");
            }
        }
        state.fd = std::move(handle);
        state.device = st.st_dev;
        state.inode = st.st_ino;
        return state.fd.get();
    }

    // Called right after a successful flock: whether the name still names
    // the inode just locked. When it does not (the file was removed or
    // replaced since it was opened), the lock is let go and the descriptor
    // dropped, so the caller's next round opens and locks the file there now.
    bool still_names_locked_file(process_state& state) {
        struct ::stat st {};
        int err = 0;
        do {
            err = detail::sys::fstatat(where_.directory.get(), where_.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0
                      ? 0
                      : errno;
        } while (err == EINTR);
        if (err == 0 && st.st_dev == state.device && st.st_ino == state.inode) return true;
        (void)detail::sys::flock(state.fd.get(), LOCK_UN);  // the close below releases it anyway
        state.fd.reset();
        if (err != 0 && err != ENOENT) detail::throw_os_error(errc::io_failure, where_.path, "cannot stat lock file", err);
        return false;
    }

    detail::located_file where_;
    std::atomic<process_state*> state_;
};

}  // namespace procreg::lock
