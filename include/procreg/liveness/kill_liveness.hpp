// procreg/liveness/kill_liveness.hpp — "is the owner alive?" by kill(pid, 0).
//
// Invariant (docs/engineering.md §4; the guards of the trusty and INSOMNIA
// seeds, of which algocline's and yoi's seeds keep only part, see
// docs/seeds.md): pid 0 and pids above INT_MAX are dead without a system
// call (kill would address a process group or every process); kill
// returning 0 or failing with EPERM is alive (the process exists but is
// not ours); only ESRCH is dead.
//
// Caveat: a zombie answers kill, and a reused pid looks alive. Use
// `pidfd_liveness` where that matters.
#pragma once

#include <procreg/detail/owner_watch.hpp>
#include <procreg/detail/sys.hpp>

#include <boost/json/object.hpp>

#include <cstdint>

namespace procreg::liveness {

/// Probes a pid with kill(pid, 0), with the guards above (detail::sys::process_exists).
inline bool pid_alive(std::uint64_t pid) noexcept { return detail::sys::process_exists(pid); }

/// Liveness by kill(pid, 0). Stores no identity in records.
struct kill_liveness {
    /// The answer depends on the pid alone: a list or reap probes each
    /// distinct pid once (transaction.hpp).
    static constexpr bool answers_by_pid_alone = true;
    /// True when the record's owner is alive.
    bool is_alive(std::uint64_t pid, const boost::json::object& /*stored*/) const noexcept { return pid_alive(pid); }
    /// kill liveness keeps no identity: nothing to add to the record.
    void stamp_identity(std::uint64_t /*pid*/, boost::json::object& /*stored*/) const noexcept {}
    /// A pidfd that polls readable when `pid` exits, or -1 (no pidfd_open:
    /// a watcher then polls; see docs/watch.md). The caller closes it.
    int watch_owner(std::uint64_t pid) const noexcept { return detail::open_owner_watch(pid); }
};

}  // namespace procreg::liveness
