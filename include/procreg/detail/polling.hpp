// procreg/detail/polling.hpp — what the lock policies share to wait with a deadline.
//
// - `PROCREG_DETAIL_TSAN` is defined when compiling under ThreadSanitizer.
//   GCC 12's and LLVM 14's TSan runtimes intercept neither
//   pthread_mutex_clocklock (std::timed_mutex::try_lock_until on
//   steady_clock) nor an EOWNERDEAD result of pthread_mutex_timedlock: they
//   would miss the acquisition, report the unlock as "unlock of an unlocked
//   mutex" and lose the happens-before edge the mutex makes. Under TSan the
//   locks wait by polling a try-lock instead, which TSan models fully.
// - `poll_until` is that polling wait, and flock's (flock has no timeout).
// - `deadline_after` turns a timeout into a steady_clock deadline that
//   saturates: `hours::max()` means "wait", never an overflow into the past.
//
// Invariant: `try_once` is called at least once, and again after each pause
// until it succeeds or `deadline` has passed.
#pragma once

#include <algorithm>
#include <chrono>
#include <thread>

#if !defined(PROCREG_DETAIL_TSAN)
#if defined(__SANITIZE_THREAD__)
#define PROCREG_DETAIL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PROCREG_DETAIL_TSAN 1
#endif
#endif
#endif

namespace procreg::detail {

/// The longest wait a lock performs in one go: a hundred years, far beyond
/// any process's life, and small enough for every clock and timespec.
inline constexpr std::chrono::hours longest_wait{24 * 365 * 100};

/// `steady_clock::now() + timeout`, with a timeout beyond `longest_wait`
/// (up to `duration::max()` of any representation) waiting `longest_wait`,
/// and a negative one meaning now.
template <class Rep, class Period>
std::chrono::steady_clock::time_point deadline_after(const std::chrono::duration<Rep, Period>& timeout) {
    const auto now = std::chrono::steady_clock::now();
    if (timeout <= timeout.zero()) return now;
    // Compared as floating-point seconds: no conversion of `timeout` can overflow.
    if (std::chrono::duration<double>(timeout) >= std::chrono::duration<double>(longest_wait)) {
        return now + longest_wait;
    }
    return now + std::chrono::ceil<std::chrono::steady_clock::duration>(timeout);
}

/// Calls `try_once()` until it returns true (then true) or `deadline` has
/// passed (then false), sleeping between calls with a backoff from 1 ms to
/// 25 ms. What `try_once` throws propagates.
template <class Clock, class Duration, class TryOnce>
bool poll_until(const std::chrono::time_point<Clock, Duration>& deadline, TryOnce&& try_once) {
    auto pause = std::chrono::milliseconds(1);
    for (;;) {
        if (try_once()) return true;
        if (Clock::now() >= deadline) return false;
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::milliseconds(25));
    }
}

}  // namespace procreg::detail
