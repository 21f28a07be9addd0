// procreg_watch_bench — how fast a watcher hears what another process did.
//
// Three latencies on tmpfs (docs/watch.md), each from the moment one process
// acts to the moment another process has the result, over many events
// (median and p99), beside polling at the anchors' default intervals
// (10 ms, the demo's old loop; 50 ms, py-filelock's default):
// - watch_added: a writer process stamps steady_clock (system-wide
//   CLOCK_MONOTONIC) into a record and inserts it; the watcher process
//   computes now - stamp when `added` arrives;
// - watch_owner_died: a killer process stamps the clock and SIGKILLs a
//   registered owner; the watcher measures until `owner_died`;
// - claim_wait: a holder process stamps the clock and releases its claim;
//   the waiter measures until `acquire_within` returns the claim.
// And the CPU time an idle watcher (one live owner, no events) uses in 10 s.
//
// Rows are merged into results.json next to the executable (rows of these
// ops replaced, other rows kept), in the format of procreg_bench.
//
//     procreg_watch_bench [--events N] [--poll-events N] [--idle-seconds S] [--dir DIR] [--out FILE] [--only OP]
#include <procreg/claim.hpp>
#include <procreg/liveness/pidfd_liveness.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/claim_file.hpp>
#include <procreg/storage/json_table.hpp>
#include <procreg/watch/wait.hpp>
#include <procreg/watch/watcher.hpp>

#include <boost/describe/class.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace watch_bench {
struct stamped {
    std::string name;
    std::uint64_t pid = 0;
    std::int64_t stamp_ns = 0;
};
BOOST_DESCRIBE_STRUCT(stamped, (), (name, pid, stamp_ns))
}  // namespace watch_bench

template <>
struct procreg::record_traits<watch_bench::stamped> {
    static std::string_view key(const watch_bench::stamped& r) noexcept { return r.name; }
    static std::uint64_t pid(const watch_bench::stamped& r) noexcept { return r.pid; }
};

namespace {

using watch_bench::stamped;
using table_registry = procreg::registry<stamped, procreg::lock::flock_lock, procreg::storage::json_table,
                                         procreg::liveness::pidfd_liveness>;
using claim_storage = procreg::storage::claim_file<procreg::storage::json_record_format>;
using claim_registry = procreg::registry<stamped, procreg::lock::flock_lock, claim_storage,
                                         procreg::liveness::pidfd_liveness>;

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

table_registry open_table(const fs::path& dir) {
    procreg::storage::json_table_options opts;
    opts.file = dir / "registry.json";
    opts.durable = false;  // tmpfs
    return table_registry(procreg::storage::json_table(opts));
}

std::shared_ptr<claim_registry> open_claim(const fs::path& dir) {
    procreg::storage::claim_file_options opts;
    opts.file = dir / "daemon.lock";
    opts.durable = false;
    return std::make_shared<claim_registry>(claim_storage(opts));
}

struct pipe_pair {
    int fds[2] = {-1, -1};
    pipe_pair() {
        if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    }
    ~pipe_pair() {
        for (int fd : fds)
            if (fd >= 0) ::close(fd);
    }
    void put(std::int64_t v) { (void)!::write(fds[1], &v, sizeof v); }
    std::int64_t get() {
        std::int64_t v = 0;
        if (::read(fds[0], &v, sizeof v) != static_cast<ssize_t>(sizeof v)) throw std::runtime_error("pipe read");
        return v;
    }
};

template <class Body>
pid_t spawn(Body&& body) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork");
    if (pid == 0) {
        int code = 1;
        try {
            code = body();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "child: %s\n", e.what());
        }
        ::_exit(code);
    }
    return pid;
}

void reap(pid_t pid) {
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
}

struct figures {
    double median_us = 0, p99_us = 0;
    int n = 0;
};

figures summarize(std::vector<double> us) {
    figures f;
    f.n = static_cast<int>(us.size());
    if (us.empty()) return f;
    std::sort(us.begin(), us.end());
    f.median_us = us[us.size() / 2];
    f.p99_us = us[std::min(us.size() - 1, static_cast<std::size_t>(static_cast<double>(us.size()) * 0.99))];
    return f;
}

// How the listening process learns of the event: the watcher, or a poll
// every `interval` (the alternative).
struct listener {
    std::optional<std::chrono::milliseconds> poll;  // empty: the watcher
};

// The pause before the i-th action: spread over one polling interval when
// the listener polls (so the event falls anywhere in its cycle, as it
// would in real use), a little spread otherwise.
std::chrono::microseconds gap(int i, const listener& how) {
    const std::int64_t spread = how.poll ? std::chrono::microseconds(*how.poll).count() : 800;
    return std::chrono::microseconds(200 + (static_cast<std::int64_t>(i) * 7919) % spread);
}

// A writer process inserts `events` stamped records, one at a time, each
// after the listener acknowledged the previous one (which it then erases,
// so that the figure does not grow with the table: each resync reads it whole).
std::vector<double> measure_added(const fs::path& dir, int events, const listener& how) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    auto reg = open_table(dir);
    std::optional<procreg::watcher<table_registry>> w;
    if (!how.poll) w.emplace(reg);
    pipe_pair ack;
    const pid_t writer = spawn([&] {
        auto mine = open_table(dir);
        for (int i = 0; i < events; ++i) {
            std::this_thread::sleep_for(gap(i, how));
            mine.insert(stamped{"r" + std::to_string(i), static_cast<std::uint64_t>(::getppid()), now_ns()});
            (void)ack.get();
            mine.erase("r" + std::to_string(i));  // the table stays at one record: see docs/watch.md
        }
        return 0;
    });
    std::vector<double> out;
    for (int i = 0; i < events; ++i) {
        const std::string key = "r" + std::to_string(i);
        std::int64_t stamp = 0;
        if (!how.poll) {
            for (;;) {
                auto e = w->next(std::chrono::seconds(10));
                if (!e) throw std::runtime_error("watch_added: no event");
                if (e->kind == procreg::watch_event_kind::added && e->key == key) {
                    stamp = e->record->stamp_ns;
                    break;
                }
            }
        } else {
            for (;;) {
                if (auto found = reg.find(key)) {
                    stamp = found->stamp_ns;
                    break;
                }
                std::this_thread::sleep_for(*how.poll);
            }
        }
        out.push_back(static_cast<double>(now_ns() - stamp) / 1000.0);
        ack.put(0);
    }
    reap(writer);
    return out;
}

// Owners register (and wait); a killer process stamps and SIGKILLs each.
std::vector<double> measure_owner_died(const fs::path& dir, int events, const listener& how) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    auto reg = open_table(dir);
    std::optional<procreg::watcher<table_registry>> w;
    if (!how.poll) w.emplace(reg);
    pipe_pair to_killer, from_killer;
    const pid_t killer = spawn([&] {
        for (int i = 0;; ++i) {
            const auto victim = static_cast<pid_t>(to_killer.get());
            if (victim <= 0) return 0;
            std::this_thread::sleep_for(gap(i, how));
            const std::int64_t stamp = now_ns();
            ::kill(victim, SIGKILL);
            from_killer.put(stamp);
        }
    });
    std::vector<double> out;
    for (int i = 0; i < events; ++i) {
        const std::string key = "owner";
        pipe_pair ready;
        const pid_t owner = spawn([&] {
            auto mine = open_table(dir);
            mine.upsert(stamped{key, static_cast<std::uint64_t>(::getpid()), 0});
            ready.put(0);
            for (;;) ::pause();
            return 0;
        });
        (void)ready.get();
        if (!how.poll) {  // the watcher has seen the owner (added or changed) before it is killed
            for (;;) {
                auto e = w->next(std::chrono::seconds(10));
                if (!e) throw std::runtime_error("watch_owner_died: owner not seen");
                if (e->pid == static_cast<std::uint64_t>(owner) && e->kind != procreg::watch_event_kind::owner_died) break;
            }
        }
        to_killer.put(owner);
        if (!how.poll) {
            for (;;) {
                auto e = w->next(std::chrono::seconds(10));
                if (!e) throw std::runtime_error("watch_owner_died: no event");
                if (e->kind == procreg::watch_event_kind::owner_died && e->pid == static_cast<std::uint64_t>(owner)) break;
            }
        } else {
            for (;;) {
                const auto rows = reg.list();
                if (!rows.empty() && !rows.front().alive) break;
                std::this_thread::sleep_for(*how.poll);
            }
        }
        const std::int64_t done = now_ns();
        out.push_back(static_cast<double>(done - from_killer.get()) / 1000.0);
        reap(owner);
    }
    to_killer.put(0);
    reap(killer);
    return out;
}

// A holder process acquires, then stamps and releases; the waiter measures
// until its own acquire returns.
std::vector<double> measure_claim_wait(const fs::path& dir, int events, const listener& how) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    procreg::claim<claim_registry> mine(open_claim(dir), "daemon");
    const stamped me{"daemon", static_cast<std::uint64_t>(::getpid()), 0};
    std::vector<double> out;
    for (int i = 0; i < events; ++i) {
        pipe_pair held, stamp;
        const pid_t holder = spawn([&] {
            procreg::claim<claim_registry> theirs(open_claim(dir), "daemon");
            auto handle = theirs.acquire(stamped{"daemon", static_cast<std::uint64_t>(::getpid()), 0});
            held.put(0);
            std::this_thread::sleep_for(gap(i, how));
            stamp.put(now_ns());
            return handle.release() == procreg::release_status::released ? 0 : 1;
        });
        (void)held.get();
        std::optional<procreg::claim<claim_registry>::handle> got;
        if (!how.poll) {
            got.emplace(procreg::acquire_within(mine, me, std::chrono::seconds(10)));
        } else {
            for (;;) {
                std::error_code ec;
                got = mine.acquire(me, ec);
                if (got) break;
                std::this_thread::sleep_for(*how.poll);
            }
        }
        const std::int64_t done = now_ns();
        out.push_back(static_cast<double>(done - stamp.get()) / 1000.0);
        got->release();
        reap(holder);
    }
    return out;
}

// CPU time (µs) of a watcher of one live owner waiting `seconds` with no event.
double idle_cpu_us(const fs::path& dir, int seconds) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    auto reg = open_table(dir);
    reg.insert(stamped{"me", static_cast<std::uint64_t>(::getpid()), 0});
    procreg::watcher<table_registry> w(reg);
    // CPU time of this thread, where the watcher waits: earlier watchers'
    // inotify descriptors may still be being closed by detached threads
    // (detail/inotify.hpp), which is not this watcher's cost.
    struct timespec a {}, b {};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    const auto e = w.next(std::chrono::seconds(seconds));
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    if (e) throw std::runtime_error(std::string("idle watcher got an event: ") + procreg::to_string(e->kind) + " " + e->key);
    if (w.stats().reads != 1) throw std::runtime_error("idle watcher read the registry again");
    return static_cast<double>(b.tv_sec - a.tv_sec) * 1e6 + static_cast<double>(b.tv_nsec - a.tv_nsec) / 1e3;
}

boost::json::object row(const std::string& storage, const std::string& op, const std::string& via, const figures& f) {
    boost::json::object r;
    r["storage"] = storage;
    r["medium"] = "tmpfs";
    r["op"] = op;
    r["via"] = via;
    r["n"] = f.n;
    r["reps"] = f.n;
    r["procreg_us"] = f.median_us;
    r["median_us"] = f.median_us;
    r["p99_us"] = f.p99_us;
    return r;
}

fs::path executable_dir() {
    std::error_code ec;
    const auto self = fs::read_symlink("/proc/self/exe", ec);
    return ec ? fs::current_path() : self.parent_path();
}

}  // namespace

int main(int argc, char** argv) {
    int events = 1000, poll_events = 100, idle_seconds = 10;
    std::string only;  // one op alone (for investigating); its rows are not written
    fs::path base = "/dev/shm";
    fs::path out = executable_dir() / "results.json";
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string flag = argv[i];
        const std::string value = argv[i + 1];
        if (flag == "--events") events = std::stoi(value);
        else if (flag == "--poll-events") poll_events = std::stoi(value);
        else if (flag == "--idle-seconds") idle_seconds = std::stoi(value);
        else if (flag == "--dir") base = value;
        else if (flag == "--out") out = value;
        else if (flag == "--only") only = value;
        else {
            std::fprintf(stderr, "unknown option %s\n", flag.c_str());
            return 2;
        }
    }
    const fs::path dir = base / ("procreg-watch-bench-" + std::to_string(::getpid()));
    boost::json::array rows;
    struct op_run {
        const char* op;
        const char* storage;
        std::function<std::vector<double>(const fs::path&, int, const listener&)> measure;
    };
    const op_run runs[] = {{"watch_added", "json_table", measure_added},
                           {"watch_owner_died", "json_table", measure_owner_died},
                           {"claim_wait", "claim_file", measure_claim_wait}};
    std::printf("%-18s %-10s %8s %12s %12s\n", "op", "via", "events", "median_us", "p99_us");
    for (const auto& run : runs) {
        if (!only.empty() && only != run.op) continue;
        const std::pair<const char*, listener> ways[] = {{"watch", listener{}},
                                                         {"poll_10ms", listener{std::chrono::milliseconds(10)}},
                                                         {"poll_50ms", listener{std::chrono::milliseconds(50)}}};
        for (const auto& way : ways) {
            const int n = way.second.poll ? poll_events : events;
            const figures f = summarize(run.measure(dir, n, way.second));
            std::printf("%-18s %-10s %8d %12.1f %12.1f\n", run.op, way.first, f.n, f.median_us, f.p99_us);
            std::fflush(stdout);
            rows.push_back(row(run.storage, run.op, way.first, f));
        }
    }
    if (!only.empty()) return 0;
    const double idle = idle_cpu_us(dir, idle_seconds);
    std::printf("idle watcher: %.1f us CPU in %d s\n", idle, idle_seconds);
    boost::json::object idle_row;
    idle_row["storage"] = "json_table";
    idle_row["medium"] = "tmpfs";
    idle_row["op"] = "watch_idle_cpu";
    idle_row["n"] = idle_seconds;
    idle_row["procreg_us"] = idle;
    rows.push_back(idle_row);
    fs::remove_all(dir);

    // Merge: keep other programs' rows, replace ours.
    boost::json::array merged;
    {
        std::ifstream in(out);
        if (in) {
            const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            boost::system::error_code ec;
            auto old = boost::json::parse(text, ec);
            if (!ec && old.is_array()) {
                for (auto& r : old.as_array()) {
                    const auto* op = r.is_object() ? r.as_object().if_contains("op") : nullptr;
                    const bool ours = op && op->is_string() &&
                                      (*op == "watch_added" || *op == "watch_owner_died" || *op == "claim_wait" ||
                                       *op == "watch_idle_cpu");
                    if (!ours) merged.push_back(r);
                }
            }
        }
    }
    for (auto& r : rows) merged.push_back(r);
    std::ofstream file(out, std::ios::trunc);
    file << "[\n";
    for (std::size_t i = 0; i < merged.size(); ++i) {
        file << "  " << boost::json::serialize(merged[i]) << (i + 1 < merged.size() ? ",\n" : "\n");
    }
    file << "]\n";
    std::printf("wrote %s\n", out.c_str());
    return file ? 0 : 1;
}
