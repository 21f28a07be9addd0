// procreg/watch/wait.hpp — waits that return as soon as the awaited event happens.
//
// Built on the watcher (watch/watcher.hpp): no sleep-and-retry loop. A wait
// first creates its watcher (so nothing that happens from then on is
// missed), then checks, then sleeps in the watcher until an event or the
// deadline.
//
// - `wait_until(registry, timeout, predicate)`: until `predicate(snapshot)`
//   holds for the registry's state (e.g. "a record with key X exists and its
//   owner is alive": `record_alive(key)`).
// - `acquire_within(claim, record, timeout)`: `claim.acquire(record)`, and
//   while a live process holds the claim, again as soon as the holder
//   releases it, is replaced or dies.
//
// One exception to "no polling": under a liveness policy that judges a
// zombie alive (kill_liveness), a holder whose pidfd says it exited but
// which its parent has not reaped yet still holds the claim; acquire_within
// then tries again every `watch_options::owner_poll_interval` until the
// zombie is reaped or the deadline passes.
#pragma once

#include <procreg/claim.hpp>
#include <procreg/detail/polling.hpp>
#include <procreg/watch/watcher.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <string_view>
#include <utility>

namespace procreg {

/// Waits up to `timeout` until `predicate(const watch_snapshot<Record>&)`
/// holds for `registry`'s state; returns whether it did.
template <class Registry, class Rep, class Period, class Predicate>
bool wait_until(Registry& registry, const std::chrono::duration<Rep, Period>& timeout, Predicate&& predicate,
                watch_options opts = watch_options{}) {
    const auto deadline = detail::deadline_after(timeout);
    watcher<Registry> events(registry, opts);
    for (;;) {
        while (events.try_next()) {
        }
        if (predicate(events.current())) return true;
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline) return false;
        (void)events.next(deadline - now);
    }
}

/// A `wait_until` predicate: an active record with `key` exists and its owner is alive.
inline auto record_alive(std::string key) {
    return [key = std::move(key)](const auto& snapshot) {
        const auto* found = snapshot.find(key);
        return found && found->alive;
    };
}

/// A `wait_until` predicate: no active record with `key` exists.
inline auto record_absent(std::string key) {
    return [key = std::move(key)](const auto& snapshot) { return snapshot.find(key) == nullptr; };
}

/// `claim.acquire(record)`, waiting up to `timeout` for a live holder to
/// release the claim or die; throws the last `claim_in_use` when it still
/// holds at the deadline (other errors as acquire).
template <class Registry, on_destroy Destroy, class Rep, class Period>
typename claim<Registry, Destroy>::handle acquire_within(claim<Registry, Destroy>& target,
                                                         const typename Registry::record_type& record,
                                                         const std::chrono::duration<Rep, Period>& timeout,
                                                         watch_options opts = watch_options{}) {
    const auto deadline = detail::deadline_after(timeout);
    watcher<Registry> events(target.registry(), opts);
    for (;;) {
        try {
            return target.acquire(record);
        } catch (const claim_in_use& held) {
            const auto now = std::chrono::steady_clock::now();
            if (now >= deadline) throw;
            auto wait = deadline - now;
            // An exited holder still looks alive (an unreaped zombie): no
            // further event will come, so look again shortly.
            if (held.pid() && events.owner_exited(*held.pid())) {
                wait = std::min<std::chrono::steady_clock::duration>(wait, opts.owner_poll_interval);
            }
            if (events.next(wait)) {
                while (events.try_next()) {
                }
            }
        }
    }
}

}  // namespace procreg
