// procreg/detail/owner_watch.hpp — a descriptor that becomes readable when a process exits.
//
// Owner death is a liveness capability (procreg/watch/target.hpp's
// `can_watch_owner`): a policy that can pin a process offers
// `watch_owner(pid)`, and the watcher polls what it returns. On Linux ≥ 5.3
// that is a pidfd (pidfd_open(2)): it polls readable once the process has
// exited, whether or not anyone reaps it, and it cannot be confused by a
// later process that reuses the pid.
//
// Like kill, pidfd_open probes a process and is not I/O on a registry, so it
// does not go through detail::sys (fault injection has nothing to prove there).
#pragma once

#include <cerrno>
#include <climits>
#include <cstdint>

#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

namespace procreg::detail {

/// pidfd_open(pid) (close-on-exec, as every pidfd is), or -1 with errno:
/// ESRCH for no such process, ENOSYS before Linux 5.3. pid 0 and pids
/// above INT_MAX are refused with ESRCH without a system call.
inline int open_owner_watch(std::uint64_t pid) noexcept {
    if (pid == 0 || pid > static_cast<std::uint64_t>(INT_MAX)) {
        errno = ESRCH;
        return -1;
    }
#if defined(SYS_pidfd_open)
    return static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0));
#else
    errno = ENOSYS;
    return -1;
#endif
}

}  // namespace procreg::detail
