// tests/support/claim_helpers.hpp — processes and files for the claim tests.
//
// `live_child` is a real process that stays alive (blocked on a pipe) until
// the test ends; it is the honest way to have "a live pid that is not me".
// `gate` releases many forked children at once: each blocks reading a pipe
// whose write end only the parent keeps, and closing it wakes them together.
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

/// A child process that stays alive until destroyed (then SIGKILLed and reaped).
class live_child {
public:
    live_child() {
        pid_ = spawn([this] {
            gate_.close_write();
            gate_.wait_for_close();
            return 0;
        });
        gate_.close_read();
    }
    ~live_child() { stop(); }
    live_child(const live_child&) = delete;
    live_child& operator=(const live_child&) = delete;

    pid_t pid() const noexcept { return pid_; }
    /// Kills and reaps the child; its pid is dead afterwards.
    void stop() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        (void)wait_exit(pid_);
        pid_ = -1;
    }

private:
    claim_pipe gate_;
    pid_t pid_ = -1;
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
