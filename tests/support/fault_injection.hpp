// tests/support/fault_injection.hpp — drive procreg's system-call seam in tests.
//
// Only for test executables compiled with PROCREG_FAULT_INJECTION. A `plan`
// says which intercepted call fails (the k-th among the calls its mask
// selects), with which errno, once or from then on; or at which call the
// process SIGKILLs itself (a crash point). This is SQLite's I/O-error and
// crash harness, applied to procreg's one system-call layer.
#pragma once

#if !defined(PROCREG_FAULT_INJECTION)
#error "compile fault-injection tests with -DPROCREG_FAULT_INJECTION"
#endif

#include <procreg/detail/sys.hpp>

#include <csignal>
#include <initializer_list>

namespace procreg_test::faults {

using procreg::detail::sys::call;

/// A set of calls, as a bit mask.
constexpr unsigned bit(call c) { return 1u << static_cast<unsigned>(c); }
constexpr unsigned all_calls = ~0u;
inline unsigned calls(std::initializer_list<call> list) {
    unsigned mask = 0;
    for (const call c : list) mask |= bit(c);
    return mask;
}

/// What to inject.
struct plan {
    unsigned long fail_at = 0;  ///< fail the k-th selected call (1-based); 0 = never
    bool persistent = false;    ///< keep failing every selected call after the k-th
    int error = 0;              ///< errno to inject
    unsigned mask = all_calls;  ///< which calls count and may fail
    unsigned long kill_at = 0;  ///< SIGKILL this process at the k-th call of any kind; 0 = never

    unsigned long selected_seen = 0;  ///< selected calls seen so far
    unsigned long calls_seen = 0;     ///< all intercepted calls seen so far
    unsigned long injected = 0;       ///< faults injected so far
};

/// A plan that fails every selected call (`mask`) with `error`, from the first on.
inline plan failing_every(unsigned mask, int error) {
    plan p;
    p.fail_at = 1;
    p.persistent = true;
    p.error = error;
    p.mask = mask;
    return p;
}

inline int hook(call c, void* context) {
    plan& p = *static_cast<plan*>(context);
    ++p.calls_seen;
    if (p.kill_at != 0 && p.calls_seen == p.kill_at) ::raise(SIGKILL);
    if ((p.mask & bit(c)) == 0 || p.fail_at == 0) return 0;
    ++p.selected_seen;
    if (p.selected_seen == p.fail_at || (p.persistent && p.selected_seen > p.fail_at)) {
        ++p.injected;
        return p.error;
    }
    return 0;
}

/// Installs any hook `before(call, context)` for its lifetime (a counter, a
/// symlink planter, ...); `armed` below installs a `plan`.
class hook_guard {
public:
    hook_guard(procreg::detail::sys::fault_hook_fn before, void* context) {
        procreg::detail::sys::installed_fault_hook() = {before, context};
    }
    ~hook_guard() { procreg::detail::sys::installed_fault_hook() = {}; }
    hook_guard(const hook_guard&) = delete;
    hook_guard& operator=(const hook_guard&) = delete;
};

/// Installs `p` for its lifetime.
class armed : public hook_guard {
public:
    explicit armed(plan& p) : hook_guard(&hook, &p) {}
};

/// One injection mode: an errno, the calls it fits, once or persistent.
struct mode {
    const char* name;
    int error;
    unsigned mask;
    bool persistent;
};

/// The modes every mutating operation is run under. EINTR only where procreg
/// must retry it (read, write, flock), and only once: a persistent EINTR
/// would be a livelock by definition.
inline const std::initializer_list<mode>& standard_modes() {
    static const std::initializer_list<mode> modes = {
        {"EIO once", EIO, all_calls, false},
        {"EIO persistent", EIO, all_calls, true},
        {"ENOSPC once", ENOSPC, bit(call::write) | bit(call::open) | bit(call::mkdir), false},
        {"ENOSPC persistent", ENOSPC, bit(call::write) | bit(call::open) | bit(call::mkdir), true},
        {"EINTR once", EINTR, bit(call::read) | bit(call::write) | bit(call::flock), false},
    };
    return modes;
}

}  // namespace procreg_test::faults
