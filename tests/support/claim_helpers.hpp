// tests/support/claim_helpers.hpp — processes and files for the claim tests.
//
// `live_child` is a real process that stays alive (blocked on a pipe) until
// the test stops it or ends; it is the honest way to have "a live pid that
// is not me", and, given what to hold, a holder in another process (a
// daemon, a pod) that the test can SIGKILL. A `claim_pipe` is also a start
// gate for many forked children at once: each blocks reading it while only
// the parent keeps the write end, and closing that wakes them together.
#pragma once

#include "process.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <fcntl.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace procreg_test {

/// A pipe whose ends can be closed one by one.
class claim_pipe {
public:
    claim_pipe() {
        if (::pipe2(fds_, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    }
    ~claim_pipe() {
        close_read();
        close_write();
    }
    claim_pipe(const claim_pipe&) = delete;
    claim_pipe& operator=(const claim_pipe&) = delete;

    int read_end() const noexcept { return fds_[0]; }
    int write_end() const noexcept { return fds_[1]; }
    void close_read() noexcept {
        if (fds_[0] >= 0) ::close(fds_[0]);
        fds_[0] = -1;
    }
    void close_write() noexcept {
        if (fds_[1] >= 0) ::close(fds_[1]);
        fds_[1] = -1;
    }
    /// Blocks until the write end is closed everywhere (EOF) or a byte arrives.
    void wait_for_close() noexcept {
        char byte = 0;
        while (::read(fds_[0], &byte, 1) < 0 && errno == EINTR) {
        }
    }

private:
    int fds_[2] = {-1, -1};
};

/// A child process that stays alive until stopped or destroyed (then
/// SIGKILLed and reaped). With `hold`, the child first runs `hold()` and
/// keeps what it returns (e.g. a claim handle) for the rest of its life.
/// The constructor returns once the child is ready (`ready()`), or has died
/// trying (`!ready()`).
class live_child {
public:
    live_child() : live_child([] { return 0; }) {}
    template <class Hold>
    explicit live_child(Hold&& hold) {
        pid_ = spawn([&] {
            gate_.close_write();
            ready_.close_read();
            [[maybe_unused]] auto held = hold();
            const char byte = 1;
            if (::write(ready_.write_end(), &byte, 1) != 1) return 2;
            gate_.wait_for_close();
            return 0;
        });
        gate_.close_read();
        ready_.close_write();
        char byte = 0;
        ssize_t got = 0;
        while ((got = ::read(ready_.read_end(), &byte, 1)) < 0 && errno == EINTR) {
        }
        ready_ok_ = got == 1;
    }
    ~live_child() { stop(); }
    live_child(const live_child&) = delete;
    live_child& operator=(const live_child&) = delete;

    /// The child's pid (also after `stop`).
    pid_t pid() const noexcept { return pid_; }
    /// Whether the child got through `hold()` and is holding.
    bool ready() const noexcept { return ready_ok_; }
    /// Kills and reaps the child; its pid is dead afterwards. Returns its
    /// exit code as `wait_exit` does (128 + SIGKILL), or -1 if already stopped.
    int stop() {
        if (stopped_) return -1;
        stopped_ = true;
        ::kill(pid_, SIGKILL);
        return wait_exit(pid_);
    }

private:
    claim_pipe gate_;
    claim_pipe ready_;
    pid_t pid_ = -1;
    bool ready_ok_ = false;
    bool stopped_ = false;
};

/// Replaces `path` by a new file (new inode) holding `text`, as a writer that
/// does not take procreg's lock would (write temp + rename).
inline void foreign_replace(const std::filesystem::path& path, const std::string& text) {
    const std::filesystem::path temp = path.string() + ".foreign-tmp";
    const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) throw std::runtime_error("cannot create " + temp.string());
    const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    if (!ok || ::rename(temp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot replace " + path.string());
}

/// Names of the entries of `dir`, sorted.
inline std::string list_dir(const std::filesystem::path& dir) {
    std::string out;
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    for (const auto& name : names) out += name + " ";
    return out;
}

}  // namespace procreg_test
