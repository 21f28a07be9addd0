// procreg_demo — the main job of `./run demo`.
//
// Starts three real worker processes (this program re-executed with
// `--worker`), each of which registers itself in an algocline-format
// registry under $XDG_RUNTIME_DIR (a temp directory when unset). The parent
// lists them with liveness, kills one with SIGKILL, reaps it, and prints the
// table before and after. Then it stops the others, which deregister on
// their way out. The parent never polls: a watcher (procreg/watch/watcher.hpp)
// tells it when each worker registered and when the killed one died.
#include <procreg/presets/algocline.hpp>
#include <procreg/watch/watcher.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;
using procreg::algocline::pool_session;

namespace {

volatile std::sig_atomic_t stop_requested = 0;

fs::path registry_path() {
    const char* runtime = std::getenv("XDG_RUNTIME_DIR");
    fs::path base = runtime && *runtime ? fs::path(runtime) : fs::temp_directory_path();
    return base / ("procreg-demo-" + std::to_string(::getuid())) / "registry.json";
}

// A worker: register, serve until SIGTERM, deregister.
//
// SIGTERM is blocked before the worker registers, so it can be delivered
// only inside sigsuspend, which unblocks it and waits in one atomic step. A
// SIGTERM sent at any moment after registration therefore ends the wait;
// with `while (!stop) pause();` one arriving between the test and pause()
// would be handled there and pause() would then wait for ever.
int run_worker(const std::string& name, const fs::path& path) {
    sigset_t terminate;
    sigset_t while_waiting;
    sigemptyset(&terminate);
    sigaddset(&terminate, SIGTERM);
    sigprocmask(SIG_BLOCK, &terminate, &while_waiting);
    sigdelset(&while_waiting, SIGTERM);  // whatever the worker inherited, SIGTERM gets through while it waits
    struct sigaction on_terminate {};
    on_terminate.sa_handler = [](int) { stop_requested = 1; };
    sigemptyset(&on_terminate.sa_mask);
    sigaction(SIGTERM, &on_terminate, nullptr);

    auto reg = procreg::algocline::open(path);
    const auto pid = static_cast<std::uint32_t>(::getpid());
    reg.insert(pool_session::make(name, pid, (path.parent_path() / (name + ".sock")).string(), "0.30.0"));
    while (!stop_requested) sigsuspend(&while_waiting);
    reg.erase(name);
    return 0;
}

void print_table(procreg::algocline::pool_registry& reg, const char* title) {
    std::printf("\n%s\n", title);
    std::printf("  %-10s %-8s %-6s %-22s %s\n", "sid", "pid", "alive", "created_at", "sock");
    const auto rows = reg.list();
    if (rows.empty()) std::printf("  (empty)\n");
    for (const auto& row : rows) {
        std::printf("  %-10s %-8u %-6s %-22s %s\n", row.record.sid.c_str(), row.record.pid,
                    row.alive ? "yes" : "NO", row.record.created_at.c_str(), row.record.sock.c_str());
    }
}

using pool_watcher = procreg::watcher<procreg::algocline::pool_registry>;

// Prints events as they come until `done(event)` says so, for at most 10 s.
template <class Done>
bool print_events_until(pool_watcher& events, Done&& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (auto now = std::chrono::steady_clock::now(); now < deadline; now = std::chrono::steady_clock::now()) {
        const auto event = events.next(deadline - now);
        if (!event) break;
        std::printf("  event: %-10s %s (pid %llu)\n", procreg::to_string(event->kind), event->key.c_str(),
                    static_cast<unsigned long long>(event->pid));
        if (done(*event)) return true;
    }
    return false;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 4 && std::string(argv[1]) == "--worker") return run_worker(argv[2], argv[3]);

    const fs::path path = registry_path();
    std::printf("procreg demo: registry %s\n", path.c_str());
    auto reg = procreg::algocline::open(path);
    const auto leftovers = reg.reap();  // records of a previous run's dead workers
    if (!leftovers.empty()) std::printf("reaped %zu leftover record(s) from an earlier run\n", leftovers.size());

    pool_watcher events(reg);  // before the workers start: no registration can be missed
    std::printf("\nwatching (inotify on the registry's directory, a pidfd per live worker):\n");
    std::vector<pid_t> workers;
    for (int i = 1; i <= 3; ++i) {
        const std::string name = "worker-" + std::to_string(i);
        const pid_t pid = ::fork();
        if (pid < 0) {
            std::perror("fork");
            return 1;
        }
        if (pid == 0) {
            ::execl("/proc/self/exe", argv[0], "--worker", name.c_str(), path.c_str(), static_cast<char*>(nullptr));
            std::perror("exec");
            ::_exit(127);
        }
        workers.push_back(pid);
    }
    std::size_t registered = 0;
    const bool all_registered = print_events_until(events, [&](const auto& event) {
        return event.kind == procreg::watch_event_kind::added && ++registered == workers.size();
    });
    if (!all_registered) {
        std::fprintf(stderr, "workers did not register in time\n");
        for (const pid_t pid : workers) ::kill(pid, SIGKILL);
        return 1;
    }
    print_table(reg, "Registered workers:");

    const pid_t victim = workers[1];
    std::printf("\nkill -KILL %d (worker-2): it cannot deregister itself\n", static_cast<int>(victim));
    ::kill(victim, SIGKILL);
    // The pidfd says so at once, though nothing was written and the zombie is not reaped yet.
    const bool died = print_events_until(events, [&](const auto& event) {
        return event.kind == procreg::watch_event_kind::owner_died && event.key == "worker-2";
    });
    ::waitpid(victim, nullptr, 0);  // reap the zombie: kill(pid, 0) still answers for a zombie
    print_table(reg, "After SIGKILL, before reap:");

    const auto reaped = reg.reap();
    std::printf("\nreap() removed %zu record(s):", reaped.size());
    for (const auto& r : reaped) std::printf(" %s(pid %u)", r.sid.c_str(), r.pid);
    std::printf("\n");
    print_table(reg, "After reap:");

    for (const pid_t pid : workers) {
        if (pid == victim) continue;
        ::kill(pid, SIGTERM);
        ::waitpid(pid, nullptr, 0);
    }
    print_table(reg, "After the remaining workers exited cleanly:");
    const bool ok = died && reaped.size() == 1 && reaped[0].sid == "worker-2" && reg.list().empty();
    std::printf("\n%s\n", ok ? "demo: OK" : "demo: FAILED");
    return ok ? 0 : 1;
}
