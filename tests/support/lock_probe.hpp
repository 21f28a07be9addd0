// tests/support/lock_probe.hpp — ask another process whether a lock is free.
//
// A forked child opens its own `Lock` on the path, tries it once and lets
// go at once. Its exit code is the answer, so a child that could not even
// open the lock (an exception: exit code 70) is told apart from "held".
#pragma once

#include "process.hpp"

#include <filesystem>

#include <sys/types.h>

namespace procreg_test {

/// 0 when a fresh `Lock` on `lock_path` in another process found the lock
/// free, 1 when it was held; anything else is the child's failure (see
/// `spawn` and `wait_exit`).
template <class Lock>
int probe_lock_in_child(const std::filesystem::path& lock_path) {
    const pid_t child = spawn([&] {
        Lock other(lock_path);
        if (!other.try_lock()) return 1;
        other.unlock();
        return 0;
    });
    return wait_exit(child);
}

}  // namespace procreg_test
