// tools/procreg/watch.cpp — `watch`: a poll-based stand-in for the library's watcher.
//
// Invariant: every event comes from comparing two listings each taken under
// the registry's lock, so an event never reports a state no transaction
// saw. This file is the whole of the fallback (re-list every 100 ms); it is
// meant to be replaced by the library's watch feature, keeping the event
// names and the output format (docs/cli.md).
#include "commands.hpp"

#include "listing.hpp"
#include "open_registry.hpp"
#include "output.hpp"

#include <chrono>
#include <csignal>
#include <iostream>
#include <map>
#include <thread>

namespace procreg_cli {
namespace {

volatile std::sig_atomic_t interrupted = 0;
extern "C" void on_interrupt(int) { interrupted = 1; }

std::map<std::string, row> by_key(listing&& found) {
    std::map<std::string, row> out;
    for (auto& r : found.rows) {
        std::string key = r.key;
        out.emplace(std::move(key), std::move(r));
    }
    return out;
}

}  // namespace

int cmd_watch(const common_options& common, long count, double timeout_seconds) {
    const target t = resolve(common.target);
    std::signal(SIGINT, on_interrupt);
    std::signal(SIGTERM, on_interrupt);
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                      std::chrono::duration<double>(timeout_seconds));
    long printed = 0;
    const auto emit = [&](const char* event, const row& r) {
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
        std::map<std::string, row> before = by_key(collect(reg));
        while (!interrupted && (count == 0 || printed < count) &&
               (timeout_seconds == 0 || std::chrono::steady_clock::now() < deadline)) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            std::map<std::string, row> now = by_key(collect(reg));
            for (const auto& [key, r] : now) {
                if (count != 0 && printed >= count) break;
                const auto old = before.find(key);
                if (old == before.end()) {
                    emit("added", r);
                } else if (old->second.fields != r.fields) {
                    emit("changed", r);
                } else if (old->second.alive == std::optional<bool>(true) && r.alive == std::optional<bool>(false)) {
                    emit("owner_died", r);
                }
            }
            for (const auto& [key, r] : before) {
                if (count != 0 && printed >= count) break;
                if (now.find(key) == now.end()) emit("removed", r);
            }
            before = std::move(now);
        }
        return exit_ok;
    });
}

}  // namespace procreg_cli
