// procreg/liveness/callable_liveness.hpp — liveness decided by a callable.
//
// The test seam of the yoi seed (`reclaim_stale_with`) made a policy: the
// caller supplies `bool(std::uint64_t pid)`. Also serves programs that know
// liveness better than the kernel does (a supervisor's own child table).
// `always_alive` is the policy of registries without liveness (AgentMux):
// nothing is ever reaped.
#pragma once

#include <boost/json/object.hpp>

#include <cstdint>
#include <functional>
#include <utility>

namespace procreg::liveness {

/// Liveness answered by a caller-supplied probe.
class callable_liveness {
public:
    /// Reads nothing of the stored record but its pid (detail/ask_liveness.hpp).
    static constexpr bool judges_by_stored_identity = true;

    /// The probe: true when `pid` is alive.
    using probe_type = std::function<bool(std::uint64_t pid)>;

    /// Without a probe every owner is alive (the safe default: nothing is reaped).
    callable_liveness() : probe_([](std::uint64_t) { return true; }) {}
    /// Uses `probe` for every liveness question.
    explicit callable_liveness(probe_type probe) : probe_(std::move(probe)) {}

    /// True when the probe says `pid` is alive.
    bool is_alive(std::uint64_t pid, const boost::json::object& /*stored*/) const { return probe_(pid); }
    /// Stores no identity.
    void stamp_identity(std::uint64_t /*pid*/, boost::json::object& /*stored*/) const noexcept {}

private:
    probe_type probe_;
};

/// Every owner is alive: for registries whose records outlive processes.
struct always_alive {
    /// Reads nothing of the stored record (detail/ask_liveness.hpp).
    static constexpr bool judges_by_stored_identity = true;
    /// Always true.
    bool is_alive(std::uint64_t /*pid*/, const boost::json::object& /*stored*/) const noexcept { return true; }
    /// Stores no identity.
    void stamp_identity(std::uint64_t /*pid*/, boost::json::object& /*stored*/) const noexcept {}
};

}  // namespace procreg::liveness
