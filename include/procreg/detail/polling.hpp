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
