// tests/support/pidfs.hpp — whether the kernel has pidfs, for the tests of
// the owner identity that only pidfs gives (the pidfd's inode number).
#pragma once

#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

namespace procreg_test {

/// Whether this kernel has pidfs (Linux >= 6.9): pidfds with inode numbers
/// unique among the processes of a boot.
inline bool kernel_has_pidfs() {
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0));
    if (fd < 0) return false;
    struct ::statfs fs {};
    const bool pidfs = ::fstatfs(fd, &fs) == 0 && fs.f_type == 0x50494446;  // PID_FS_MAGIC
    ::close(fd);
    return pidfs;
}

}  // namespace procreg_test
