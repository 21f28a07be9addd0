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
// - fork(): everything this object knows is per process. A child's copies
//   of the lock descriptors are closed as it is born (a pthread_atfork
//   handler), so a child never keeps its parent's lock alive, even one that
//   never touches the registry and outlives a parent killed while holding
//   it. On first use the child takes a fresh thread mutex and its own
//   descriptor and waits for the lock like any other process; its
//   `unlock()` of a lock the parent holds does nothing, so a child that
//   unwinds a transaction it was forked in never releases the parent's lock;
// - a lock is taken on the file the directory holds *now*: after each
//   flock the name is checked to still name the locked inode, and when the
//   file was removed or replaced meanwhile (a tmp cleaner, an operator) the
//   lock is let go and taken on the new file, so every process that waits
//   ends up on the file there now. (A holder whose lock file is removed
//   while it holds it keeps a lock nobody else sees: lock files must never
//   be removed while the registry is in use.)
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

#include <pthread.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

namespace procreg::lock {

namespace flock_detail {

/// The lock files the calling thread holds, by (device, inode): how a second
/// lock object on the same file sees that its own thread holds it already.
/// Per thread, so it needs no mutex (a fork can never find one locked);
/// entries carry the process, so a forked child ignores what it inherited.
/// Each function takes the caller's pid (`self`, its ::getpid()): one lock
/// or unlock asks the kernel once, not once per step (issue 17: getpid is a
/// system call, ~0.1 µs, and a transaction made nine). A thread's pid cannot
/// change during one call: a fork in another thread makes a child with a
/// copy of that thread only.
class held_files {
public:
    /// Whether this thread of this process holds the file.
    static bool held_by_this_thread(dev_t device, ino_t inode, pid_t self) noexcept {
        for (const auto& e : entries())
            if (e.device == device && e.inode == inode && e.process == self) return true;
        return false;
    }
    /// Whether this thread of this process holds any lock file.
    static bool any_held_by_this_thread(pid_t self) noexcept {
        for (const auto& e : entries())
            if (e.process == self) return true;
        return false;
    }
    /// Records that this thread holds the file.
    static void add(dev_t device, ino_t inode, pid_t self) {
        auto& all = entries();
        all.erase(std::remove_if(all.begin(), all.end(), [&](const entry& e) { return e.process != self; }), all.end());
        all.push_back(entry{device, inode, self});
    }
    /// Records that this thread no longer holds the file.
    static void remove(dev_t device, ino_t inode, pid_t self) noexcept {
        auto& all = entries();
        for (auto it = all.begin(); it != all.end(); ++it) {
            if (it->device == device && it->inode == inode && it->process == self) {
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
    };
    static std::vector<entry>& entries() noexcept {
        static thread_local std::vector<entry> all;
        return all;
    }
};

/// Keeps `state` (another process's lock state, inherited through fork and
/// abandoned: its mutex may be locked by a thread that does not exist here,
/// so it is never destroyed) reachable for the life of the process, so that
/// leak checkers see a deliberate keep, not a leak. Lock-free: a forked
/// child may call it while another of its threads does too.
inline void keep_reachable(const void* state) {
    struct node {
        const void* state;
        node* next;
    };
    static std::atomic<node*> kept{nullptr};
    auto* added = new node{state, kept.load(std::memory_order_relaxed)};
    while (!kept.compare_exchange_weak(added->next, added, std::memory_order_release, std::memory_order_relaxed)) {
    }
}

/// Every lock descriptor this process keeps open, closed in a forked child
/// the moment it is born (a pthread_atfork child handler), before any of
/// its code runs: a child that never touches the registry must not keep its
/// parent's open file description — and with it a lock the parent held —
/// alive after the parent dies, and a descriptor number the child may later
/// reuse for a file of its own is never closed behind its back.
class fork_guard {
public:
    /// Registers `fd` (a lock object's descriptor slot) for the life of the object.
    static void add(detail::unique_fd* fd) {
        install();
        std::lock_guard<std::mutex> guard(mutex());
        slots().push_back(fd);
    }
    /// Deregisters `fd`.
    static void remove(detail::unique_fd* fd) noexcept {
        std::lock_guard<std::mutex> guard(mutex());
        auto& all = slots();
        all.erase(std::remove(all.begin(), all.end(), fd), all.end());
    }

private:
    static std::mutex& mutex() noexcept {
        static std::mutex m;
        return m;
    }
    static std::vector<detail::unique_fd*>& slots() noexcept {
        static std::vector<detail::unique_fd*> all;
        return all;
    }
    static void install() {
        static std::once_flag once;
        std::call_once(once, [] { (void)::pthread_atfork(&prepare, &parent, &child); });
    }
    // The forking thread holds the mutex across fork(), so the child finds
    // the list whole and the mutex held by its only thread, which unlocks it.
    static void prepare() noexcept { mutex().lock(); }
    static void parent() noexcept { mutex().unlock(); }
    static void child() noexcept {
        for (detail::unique_fd* fd : slots()) {
            const int number = fd->release();
            if (number >= 0) (void)::close(number);  // close, not LOCK_UN: the lock is the parent's
        }
        slots().clear();
        mutex().unlock();
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
        if (state->process == ::getpid()) {
            delete state;
        } else {
            flock_detail::keep_reachable(state);
        }
    }

    /// Blocks until this thread holds the lock. Throws
    /// `errc::nested_transaction` (EDEADLK) if this thread holds it already,
    /// through this object or another one on the same file.
    void lock() {
        const pid_t self = ::getpid();
        process_state& state = here(self);
        refuse_relock(state, self);
        state.thread_mutex.lock();
        try {
            (void)acquire(state, LOCK_EX, self);
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
        const pid_t self = ::getpid();
        process_state& state = here(self);
        refuse_relock(state, self);
        if (!lock_thread_mutex_until(state, deadline)) return false;
        try {
            if (detail::poll_until(deadline, [&] { return acquire(state, LOCK_EX | LOCK_NB, self); })) return true;
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
        const pid_t self = ::getpid();
        process_state* state = state_.load(std::memory_order_acquire);
        if (state->process != self) return;
        if (state->owner.load(std::memory_order_relaxed) != std::this_thread::get_id()) return;
        flock_detail::held_files::remove(state->device, state->inode, self);
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
        explicit process_state(pid_t self) : process(self) { flock_detail::fork_guard::add(&fd); }
        ~process_state() { flock_detail::fork_guard::remove(&fd); }
        process_state(const process_state&) = delete;
        process_state& operator=(const process_state&) = delete;
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
    // thread that does not exist here. Its descriptor, the parent's open
    // file description, was closed when the child was born (fork_guard).
    process_state& here(pid_t self) {
        process_state* current = state_.load(std::memory_order_acquire);
        while (current->process != self) {
            auto* fresh = new process_state(self);
            if (state_.compare_exchange_strong(current, fresh, std::memory_order_acq_rel)) {
                flock_detail::keep_reachable(current);
                return *fresh;
            }
            delete fresh;  // another thread of this child made one first; `current` is it now
        }
        return *current;
    }

    // Relocking a std::timed_mutex from its owner thread is undefined (in
    // practice a silent hang); a nested transaction gets an error instead.
    // Also refused before the thread mutex is touched: a second lock object
    // on a file this thread holds (found by the file's identity), since
    // waiting for its thread mutex could wait for a thread that waits for us.
    void refuse_relock(const process_state& state, pid_t self) const {
        if (state.owner.load(std::memory_order_relaxed) == std::this_thread::get_id()) throw_relock();
        if (!flock_detail::held_files::any_held_by_this_thread(self)) return;  // the common case: no system call
        struct ::stat st {};
        if (detail::sys::fstatat(where_.directory.get(), where_.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            flock_detail::held_files::held_by_this_thread(st.st_dev, st.st_ino, self)) {
            throw_relock();
        }
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
    bool acquire(process_state& state, int operation, pid_t self) {
        for (;;) {
            const int fd = descriptor(state);
            if (flock_detail::held_files::held_by_this_thread(state.device, state.inode, self)) throw_relock();
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
            flock_detail::held_files::add(state.device, state.inode, self);
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
