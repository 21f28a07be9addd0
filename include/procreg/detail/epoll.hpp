// procreg/detail/epoll.hpp — one pollable descriptor for many event sources.
//
// The watcher combines its inotify descriptor and one pidfd per live owner
// in an epoll instance, so that a program can put the single epoll
// descriptor in its own event loop (epoll, poll, Boost.Asio) and learn that
// something may have happened without knowing how many sources there are.
//
// Invariant: each source is registered with a 64-bit tag chosen by the
// caller and reported by that tag; level-triggered, so nothing readable is
// ever forgotten between two waits.
//
// epoll is not I/O on a registry, so it does not go through detail::sys.
#pragma once

#include <procreg/detail/file_io.hpp>
#include <procreg/error.hpp>

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <vector>

#include <sys/epoll.h>

namespace procreg::detail {

/// An epoll instance whose sources are identified by tags.
class event_poller {
public:
    /// A fresh, empty instance (close-on-exec).
    event_poller() : fd_(::epoll_create1(EPOLL_CLOEXEC)) {
        if (!fd_) throw_os_error(errc::io_failure, std::filesystem::path(), "epoll_create1 failed", errno);
    }

    /// The descriptor: readable while any source is.
    int fd() const noexcept { return fd_.get(); }

    /// Adds `source`, reported as `tag` when readable.
    void add(int source, std::uint64_t tag) {
        struct ::epoll_event event {};
        event.events = EPOLLIN;
        event.data.u64 = tag;
        if (::epoll_ctl(fd_.get(), EPOLL_CTL_ADD, source, &event) != 0) {
            throw_os_error(errc::io_failure, std::filesystem::path(), "epoll_ctl(ADD) failed", errno);
        }
    }

    /// Removes `source` (before it is closed); a source already gone is not an error.
    void remove(int source) noexcept { (void)::epoll_ctl(fd_.get(), EPOLL_CTL_DEL, source, nullptr); }

    /// Waits up to `timeout_ms` (-1: forever, 0: not at all) and returns the
    /// tags of the readable sources; empty on timeout or a signal.
    std::vector<std::uint64_t> wait(int timeout_ms) {
        struct ::epoll_event events[32];
        const int got = ::epoll_wait(fd_.get(), events, 32, timeout_ms);
        std::vector<std::uint64_t> tags;
        if (got < 0) {
            if (errno == EINTR) return tags;
            throw_os_error(errc::io_failure, std::filesystem::path(), "epoll_wait failed", errno);
        }
        tags.reserve(static_cast<std::size_t>(got));
        for (int i = 0; i < got; ++i) tags.push_back(events[i].data.u64);
        return tags;
    }

private:
    unique_fd fd_;
};

}  // namespace procreg::detail
