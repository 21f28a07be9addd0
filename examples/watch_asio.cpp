// procreg_watch_asio — a registry watcher inside a Boost.Asio event loop.
//
// The watcher's `native_handle()` is one epoll descriptor that polls
// readable when an event may be ready (inotify on the registry's directory,
// a pidfd per live owner). Wrapped in a `posix::stream_descriptor`, it is
// waited on like any socket: `async_wait(wait_read)`, then `try_next()`
// until it returns nothing, then wait again. Nothing polls.
//
// Usage: procreg_watch_asio <registry.json> [seconds]   (default: 10 s)
// In another shell, register and kill processes with procreg_demo, or any
// algocline-format writer of the same file.
#include <procreg/presets/algocline.hpp>
#include <procreg/watch/watcher.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s <registry.json> [seconds]\n", argv[0]);
        return 2;
    }
    const int seconds = argc > 2 ? std::atoi(argv[2]) : 10;
    auto reg = procreg::algocline::open(std::filesystem::path(argv[1]));
    procreg::watcher<procreg::algocline::pool_registry> events(reg);
    std::printf("watching %s: %zu record(s)\n", argv[1], events.current().active.size());

    boost::asio::io_context io;
    // The descriptor stays the watcher's: release() it before the stream closes it.
    boost::asio::posix::stream_descriptor readable(io, events.native_handle());
    std::function<void()> arm = [&] {
        readable.async_wait(boost::asio::posix::stream_descriptor::wait_read, [&](const boost::system::error_code& ec) {
            if (ec) return;  // cancelled: the time is up
            while (const auto event = events.try_next()) {
                std::printf("%-10s %s (pid %llu)\n", procreg::to_string(event->kind), event->key.c_str(),
                            static_cast<unsigned long long>(event->pid));
                std::fflush(stdout);
            }
            arm();
        });
    };
    arm();
    boost::asio::steady_timer stop(io, std::chrono::seconds(seconds));
    stop.async_wait([&](const boost::system::error_code&) { readable.cancel(); });
    io.run();
    (void)readable.release();
    return 0;
}
