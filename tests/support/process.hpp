// tests/support/process.hpp — real child processes for multi-process tests.
//
// Children run a callable after fork() and leave with _exit() so no test
// framework state (atexit handlers, Boost.Test reports) runs twice.
#pragma once

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include <fcntl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace procreg_test {

/// Forks; the child runs `body()` and exits with its int result (or 70 if it
/// threw). Returns the child's pid to the parent.
template <class Body>
pid_t spawn(Body&& body) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
        int code = 70;
        try {
            code = body();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "child %d: %s\n", static_cast<int>(::getpid()), e.what());
        } catch (...) {
        }
        std::fflush(nullptr);
        ::_exit(code);
    }
    return pid;
}

/// Waits for `pid`; returns its exit code, or 128 + signal if it was killed.
inline int wait_exit(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) throw std::runtime_error("waitpid failed");
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

/// A pid that certainly belonged to a process that is now dead and reaped.
inline pid_t dead_pid() {
    const pid_t pid = spawn([] { return 0; });
    wait_exit(pid);
    return pid;
}

/// A pipe used to make a child signal the parent ("I hold the lock now").
class signal_pipe {
public:
    signal_pipe() {
        if (::pipe2(fds_, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    }
    ~signal_pipe() {
        for (int fd : fds_)
            if (fd >= 0) ::close(fd);
    }
    signal_pipe(const signal_pipe&) = delete;
    signal_pipe& operator=(const signal_pipe&) = delete;

    /// In the child: tell the parent.
    void notify() {
        const char byte = 1;
        (void)!::write(fds_[1], &byte, 1);
    }
    /// In the parent: wait up to `timeout` for the child's notification.
    bool wait(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        ::fcntl(fds_[0], F_SETFL, O_NONBLOCK);
        char byte = 0;
        while (std::chrono::steady_clock::now() < deadline) {
            if (::read(fds_[0], &byte, 1) == 1) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        return false;
    }

private:
    int fds_[2] = {-1, -1};
};

}  // namespace procreg_test
