// tests/support/syscall_counter.hpp — count (and fail chosen) system calls procreg makes.
//
// For unit tests that prove how much I/O an operation does (a lookup opens
// one file, a listing reads the directory once) or that fail one precise
// call. Counts every call by kind and in total through sys.hpp's seam; a
// fault (`fail_errno`) is injected at whichever of these is set:
// - `fail_at`: the k-th call of any kind;
// - `fail_nth[c]`: the n-th call of kind `c`;
// - `fail_first_after = {c, d}`: the first call of kind `c` made after a
//   call of kind `d` (so the test need not know how many calls the lock
//   policy makes before it).
// The fault matrices of tests/reliability use fault_injection.hpp instead.
#pragma once

#if !defined(PROCREG_FAULT_INJECTION)
#error "compile tests that count system calls with -DPROCREG_FAULT_INJECTION"
#endif

#include "fault_injection.hpp"

#include <procreg/detail/sys.hpp>

#include <cerrno>
#include <map>
#include <optional>
#include <utility>

namespace procreg_test {

/// What a test saw of procreg's system calls, and which one to fail.
struct syscall_counter {
    using call = procreg::detail::sys::call;

    std::map<call, int> counts;  ///< calls made, by kind
    int total = 0;               ///< calls made, all kinds
    int fail_at = 0;             ///< fail the k-th call of any kind (1-based); 0 = none
    std::map<call, int> fail_nth;  ///< fail the n-th call of that kind (1-based)
    std::optional<std::pair<call, call>> fail_first_after;  ///< {c, d}: fail the first c after a d
    bool armed_after = false;    ///< a `d` of `fail_first_after` was seen
    int fail_errno = EIO;        ///< the errno injected

    /// The seam's hook; `self` is the counter.
    static int before(call c, void* self) {
        auto& me = *static_cast<syscall_counter*>(self);
        const int n = ++me.counts[c];
        if (++me.total == me.fail_at) return me.fail_errno;
        if (me.fail_first_after) {
            if (me.armed_after && c == me.fail_first_after->first) {
                me.fail_first_after.reset();
                return me.fail_errno;
            }
            if (c == me.fail_first_after->second) me.armed_after = true;
        }
        const auto it = me.fail_nth.find(c);
        return it != me.fail_nth.end() && it->second == n ? me.fail_errno : 0;
    }

    /// Calls of kind `c` made so far.
    int operator[](call c) const {
        const auto it = counts.find(c);
        return it == counts.end() ? 0 : it->second;
    }
};

/// Installs `counter` as the seam's hook for its lifetime.
class counting : public faults::hook_guard {
public:
    explicit counting(syscall_counter& counter) : hook_guard(&syscall_counter::before, &counter) {}
};

}  // namespace procreg_test
