// procreg/lock/named_mutex/segment.hpp — the named mutex's shared segment: layout, mapping, one-time initialisation.
//
// The segment holds a robust, process-shared, error-checking pthread mutex
// and a few words around it (`shared_block`), mapped with Boost.Interprocess
// and accessed with the compiler's __atomic builtins, so zero-filled memory
// another process wrote is valid without running a constructor.
//
// Invariants:
// - nobody touches the mutex before the segment's init word reads `ready`;
//   the word is claimed by compare-and-swap with the claimant's pid, so two
//   first users never both initialise, and a claimant that died half way is
//   detected (its pid is gone) and replaced;
// - a segment not owned by this user, or open to group/others, is refused
//   (errc::unsafe_path), and one of another layout (errc::unsupported_file):
//   it is never reused.
#pragma once

#include <procreg/detail/file_io.hpp>
#include <procreg/detail/sys.hpp>
#include <procreg/error.hpp>
#include <procreg/liveness/kill_liveness.hpp>

#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/permissions.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

namespace procreg::lock {

namespace named_mutex_detail {

/// The init word of a segment nobody has claimed yet (a fresh segment is all zeros).
inline constexpr std::uint32_t state_fresh = 0;
/// The init word once the mutex is initialised; any other value is the pid
/// of the process initialising it.
inline constexpr std::uint32_t state_ready = 0xffffffffu;

/// Identifies the layout below; a segment with another value (another
/// procreg version, or a 32-bit program's segment) is refused, never reused.
inline constexpr std::uint64_t layout_id =
    (std::uint64_t{0x5052434e4d58ull} << 16) |  // "PRCNMX"
    (std::uint64_t{1} << 8) |                    // layout version 1
    static_cast<std::uint64_t>(sizeof(pthread_mutex_t));

/// The shared segment. Fields are plain integers accessed with the
/// compiler's __atomic builtins, so that zero-filled memory written by
/// another process is valid without running any constructor.
struct shared_block {
    std::uint32_t init_state;  ///< state_fresh, an initialiser's pid, or state_ready
    std::uint32_t reserved;    ///< zero
    std::uint64_t layout;      ///< layout_id, written before init_state becomes ready
    std::uint64_t recoveries;  ///< how many acquisitions found the holder dead (EOWNERDEAD)
    pthread_mutex_t mutex;     ///< robust, process-shared, error-checking
    char lock_path[1024];      ///< the canonical lock path, for administrators (may be truncated)
};

/// Where glibc keeps the segment `name`, as errors name it.
inline std::filesystem::path segment_path(const std::string& name) {
    return std::filesystem::path("/dev/shm") / name;
}

/// Throws `code` about the segment `name`, with `err` as its OS error when not 0.
[[noreturn]] inline void fail(const std::string& name, errc code, const std::string& what, int err = 0) {
    if (err != 0) detail::throw_os_error(code, segment_path(name), what, err);
    throw error(code, segment_path(name), what);
}

// Runs only in the process whose pid is in init_state.
inline void initialise(shared_block* b, std::uint32_t me, const std::string& name,
                       const std::filesystem::path& lock_path) {
    const auto give_back = [&](const std::string& what, int err) {
        std::uint32_t expected = me;
        (void)__atomic_compare_exchange_n(&b->init_state, &expected, state_fresh, false, __ATOMIC_ACQ_REL,
                                          __ATOMIC_ACQUIRE);
        fail(name, errc::io_failure, what, err);
    };
    std::memset(static_cast<void*>(&b->mutex), 0, sizeof b->mutex);
    std::memset(b->lock_path, 0, sizeof b->lock_path);
    const std::string& text = lock_path.empty() ? name : lock_path.native();
    std::memcpy(b->lock_path, text.data(), std::min(text.size(), sizeof b->lock_path - 1));
    __atomic_store_n(&b->recoveries, std::uint64_t{0}, __ATOMIC_RELAXED);
    pthread_mutexattr_t attr;
    if (const int rc = ::pthread_mutexattr_init(&attr)) give_back("pthread_mutexattr_init failed", rc);
    int rc = ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (rc == 0) rc = ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (rc == 0) rc = ::pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
    if (rc == 0) rc = ::pthread_mutex_init(&b->mutex, &attr);
    (void)::pthread_mutexattr_destroy(&attr);
    if (rc != 0) give_back("cannot initialise a robust process-shared mutex", rc);
    __atomic_store_n(&b->layout, layout_id, __ATOMIC_RELEASE);
    __atomic_store_n(&b->init_state, state_ready, __ATOMIC_RELEASE);
}

/// Initialises `b`'s mutex unless another process has, or is doing so
/// (then waits at most `init_wait` for it).
inline void initialise_once(shared_block* b, const std::string& name, const std::filesystem::path& lock_path,
                            std::chrono::seconds init_wait) {
    const auto me = static_cast<std::uint32_t>(::getpid());
    const auto deadline = std::chrono::steady_clock::now() + init_wait;
    for (;;) {
        std::uint32_t seen = __atomic_load_n(&b->init_state, __ATOMIC_ACQUIRE);
        if (seen == state_ready) return;
        // Claim a fresh word, or take over from a claimant that died
        // mid-initialisation (nobody uses the mutex before `ready`);
        // kill(pid, 0) decides, EPERM counting as alive.
        if (seen == state_fresh || !liveness::pid_alive(seen)) {
            if (__atomic_compare_exchange_n(&b->init_state, &seen, me, false, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE)) {
                initialise(b, me, name, lock_path);
                return;
            }
            continue;  // another process claimed it first; look again
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            fail(name, errc::io_failure, "process " + std::to_string(seen) +
                                             " claimed the named-mutex segment for initialisation and has not "
                                             "finished within " + std::to_string(init_wait.count()) +
                                             " s; if no process uses it, remove it with named_mutex_lock::remove()");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

/// Opens or creates the segment `name`, checks who owns it, maps it and
/// makes sure its mutex is initialised exactly once (waiting at most
/// `init_wait` for another initialiser); the mapping keeps the segment.
inline boost::interprocess::mapped_region attach(const std::string& name, const std::filesystem::path& lock_path,
                                                 std::chrono::seconds init_wait) {
    namespace bip = boost::interprocess;
    bip::shared_memory_object shm;
    bip::mapped_region region;
    try {
        // open_or_create creates with O_EXCL and then fchmods to 0600, so
        // the umask cannot widen the mode.
        shm = bip::shared_memory_object(bip::open_or_create, name.c_str(), bip::read_write,
                                        bip::permissions(0600));
    } catch (const bip::interprocess_exception& e) {
        const int err = e.get_native_error();
        if (err == EACCES || err == EPERM) {
            fail(name, errc::unsafe_path,
                 "cannot open the named-mutex segment; it exists and belongs to another user (segments are "
                 "0600: use flock_lock for a registry shared between users)",
                 err);
        }
        if (err == ELOOP) fail(name, errc::unsafe_path, "the named-mutex segment is a symbolic link (refused)", err);
        fail(name, errc::io_failure, std::string("cannot open or create the named-mutex segment: ") + e.what(), err);
    }
    const int fd = shm.get_mapping_handle().handle;
    struct ::stat st {};
    if (detail::sys::fstat(fd, &st) != 0) fail(name, errc::io_failure, "cannot stat the named-mutex segment", errno);
    if (st.st_uid != ::geteuid()) {
        fail(name, errc::unsafe_path, "the named-mutex segment is owned by uid " + std::to_string(st.st_uid) +
                                          ", not by this user (uid " + std::to_string(::geteuid()) +
                                          "); refusing to share a lock with another user");
    }
    if (!S_ISREG(st.st_mode) || (st.st_mode & 077) != 0) {
        fail(name, errc::unsafe_path, "the named-mutex segment is accessible to group or others (refused)");
    }
    const auto needed = static_cast<bip::offset_t>(sizeof(shared_block));
    if (st.st_size < needed) {
        // Growing is idempotent and zero-fills; never shrink (a newer
        // layout may be larger, and is then refused below, untouched).
        try {
            shm.truncate(needed);
        } catch (const bip::interprocess_exception& e) {
            fail(name, errc::io_failure, std::string("cannot size the named-mutex segment: ") + e.what(),
                 e.get_native_error());
        }
    }
    try {
        region = bip::mapped_region(shm, bip::read_write, 0, sizeof(shared_block));
    } catch (const bip::interprocess_exception& e) {
        fail(name, errc::io_failure, std::string("cannot map the named-mutex segment: ") + e.what(),
             e.get_native_error());
    }
    // The descriptor is no longer needed: the mapping keeps the segment.
    bip::shared_memory_object().swap(shm);
    auto* const block = static_cast<shared_block*>(region.get_address());
    initialise_once(block, name, lock_path, init_wait);
    if (__atomic_load_n(&block->layout, __ATOMIC_ACQUIRE) != layout_id) {
        fail(name, errc::unsupported_file,
             "the named-mutex segment has another layout (another procreg version or ABI); when no process "
             "uses it, remove it with named_mutex_lock::remove()");
    }
    return region;
}

}  // namespace named_mutex_detail

}  // namespace procreg::lock
