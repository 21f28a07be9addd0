// tools/procreg/watch.cpp — `watch`: the library's watcher, one line per event.
//
// Invariant: every event is one the library's watcher reports
// (procreg/watch/watcher.hpp, docs/watch.md): a difference between two
// states each read under the registry's lock, or an owner's exit seen by
// its pidfd without any write. Nothing here polls: the tool sleeps in
// poll(2) on the watcher's descriptor and a pipe its signal handler writes
// to, so an interrupt ends a wait at once.
//
// The watcher reads the registry on the thread that calls it (this one),
// inside with_registry's layout scope, so every record it decodes has the
// layout of the registry named on the command line.
#include "commands.hpp"

#include "listing.hpp"
#include "open_registry.hpp"
#include "output.hpp"

#include <procreg/watch/watcher.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <type_traits>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

namespace procreg_cli {
namespace {

volatile std::sig_atomic_t interrupted = 0;
int wake_fd = -1;  // the write end of the pipe a signal wakes the wait through

extern "C" void on_interrupt(int) {
    const int saved = errno;
    interrupted = 1;
    const char byte = 1;
    (void)!::write(wake_fd, &byte, 1);
    errno = saved;
}

/// SIGINT and SIGTERM end the watch (exit 0); returns the pipe's read end.
int catch_interrupts() {
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC | O_NONBLOCK) != 0) {
        procreg::detail::throw_os_error(procreg::errc::io_failure, std::filesystem::path(), "pipe2 failed", errno);
    }
    wake_fd = ends[1];
    struct sigaction action {};
    action.sa_handler = on_interrupt;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);
    return ends[0];
}

/// The event's name: the watcher's kind; an event about the retired copy
/// alone (a tombstone written, rewritten or deleted while no active record
/// moved) is `tombstone_added`, `tombstone_changed` or `tombstone_removed`.
std::string event_name(procreg::watch_event_kind kind, bool tombstone) {
    using procreg::watch_event_kind;
    if (!tombstone) return procreg::to_string(kind);
    switch (kind) {
    case watch_event_kind::retired: return "tombstone_added";
    case watch_event_kind::changed: return "tombstone_changed";
    case watch_event_kind::removed: return "tombstone_removed";
    default: return procreg::to_string(kind);
    }
}

}  // namespace

int cmd_watch(const common_options& common, long count, double timeout_seconds) {
    const target t = resolve(common.target);
    const int woken = catch_interrupts();
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(timeout_seconds));
    long printed = 0;
    const auto emit = [&](const std::string& event, const row& r) {
        if (common.json) {
            boost::json::object out = to_json(r);
            out.emplace("event", event);
            print_json(out);
        } else {
            std::cout << event << '\t' << escape_cell(r.key) << '\t' << (r.pid ? std::to_string(*r.pid) : "-") << '\t'
                      << status_of(r) << '\n';
        }
        std::cout.flush();
        ++printed;
    };
    return with_registry(t, [&](auto& reg) {
        // The state now is the starting point. On the heap: GCC's flow
        // analysis sees the watcher's optional descriptors as maybe
        // uninitialized on the stack (-Wmaybe-uninitialized, a false positive).
        const auto watching = std::make_unique<procreg::watcher<std::decay_t<decltype(reg)>>>(reg);
        auto& events = *watching;
        while (!interrupted && (count == 0 || printed < count)) {
            if (auto e = events.try_next()) {
                // The status as of now: dead once the owner's pidfd said so,
                // else what the registry's liveness policy says of the record.
                const bool alive = e->kind != procreg::watch_event_kind::owner_died && !events.owner_exited(e->pid) &&
                                   reg.liveness().is_alive(e->pid, e->record->fields());
                emit(event_name(e->kind, e->tombstone), make_row(*e->record, alive));
                continue;
            }
            int wait_ms = -1;
            if (timeout_seconds > 0) {
                const auto left = deadline - std::chrono::steady_clock::now();
                if (left <= left.zero()) break;
                wait_ms = static_cast<int>(
                    std::min<long long>(std::chrono::ceil<std::chrono::milliseconds>(left).count(), INT_MAX));
            }
            struct pollfd ready[2] = {{events.native_handle(), POLLIN, 0}, {woken, POLLIN, 0}};
            if (::poll(ready, 2, wait_ms) < 0 && errno != EINTR) {
                procreg::detail::throw_os_error(procreg::errc::io_failure, t.path, "poll failed", errno);
            }
        }
        return exit_ok;
    });
}

}  // namespace procreg_cli
