// procreg/liveness/kill_liveness.hpp — "is the owner alive?" by kill(pid, 0).
//
// Invariant (the seeds' guards, engineering notes §4): pid 0 and pids above
// INT_MAX are dead without a system call (kill would address a process
// group or every process); kill returning 0 or failing with EPERM is alive
// (the process exists but is not ours); only ESRCH is dead.
//
// Caveat: a zombie answers kill, and a reused pid looks alive. Use
// `pidfd_liveness` where that matters.
#pragma once

#include <procreg/detail/sys.hpp>

#include <boost/json/object.hpp>

#include <cerrno>
#include <climits>
#include <cstdint>

namespace procreg::liveness {

/// Probes a pid with kill(pid, 0).
inline bool pid_alive(std::uint64_t pid) noexcept {
    if (pid == 0 || pid > static_cast<std::uint64_t>(INT_MAX)) return false;
    if (detail::sys::kill(static_cast<pid_t>(pid), 0) == 0) return true;
    return errno != ESRCH;  // EPERM: exists, not ours — alive
}

/// Liveness by kill(pid, 0). Stores no identity in records.
struct kill_liveness {
    /// True when the record's owner is alive.
    bool is_alive(std::uint64_t pid, const boost::json::object& /*stored*/) const noexcept { return pid_alive(pid); }
    /// kill liveness keeps no identity: nothing to add to the record.
    void stamp_identity(std::uint64_t /*pid*/, boost::json::object& /*stored*/) const noexcept {}
};

}  // namespace procreg::liveness
