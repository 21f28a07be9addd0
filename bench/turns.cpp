// bench/turns.cpp — issue 17's multi-writer measurement: P processes taking
// strict turns on one registry, procreg's json_table (the algocline preset,
// durable = false on tmpfs) against the seed (algocline's own Rust code,
// `seedio bench ring`), so every transaction finds the previous process's
// write and has to read the file afresh.
//
// The ring: P worker processes (exec'd: this program with `worker`, or
// seedio), process i reading a token from pipe i and writing it to pipe
// i + 1 (mod P). The driver writes token 0 into pipe 0; the process holding
// token t performs turn t and passes t + 1 on; the process of the last turn
// writes it to the driver's finish pipe instead. Every process checks that
// it receives exactly the tokens i, i + P, i + 2P, ... The first P turns
// (each process's first: a fresh process's first allocations, for one, cost
// differently from the later ones) are a warm-up, outside the figures: the
// process of turn P - 1 also writes token P to the finish pipe, where the
// driver's clock for the turn time starts.
//
// One turn is one timed operation, then an untimed write that keeps the
// table at N (+ 1) records throughout the ring (insert, erase), gives the
// next process a changed file where the operation wrote nothing (find,
// list), or something to reap (reap):
//
//   insert  insert turn-t (N records before);  untimed: erase turn-t
//   erase   erase victim-t (N + 1 before);     untimed: insert victim-(t+1)
//   find    find sess-(7919 t mod N);          untimed: erase touch-t and insert touch-(t+1), one transaction
//   list    list (N + 1 live records);         untimed: the same touch write
//   reap    reap (exactly one dead record, dead-t); untimed: insert dead-(t+1) with a dead pid
//
// The seed does each with its own code paths (seedio's bench.rs: lock,
// load_or_default, add/remove/find/scan_and_gc, save; its list is its
// scan_and_gc + save, the only way it enumerates). Per operation: the op
// time measured inside the worker (monotonic clock, from the token's arrival
// until the operation returned; median over all turns) and the turn time
// (the driver's wall time from token 0 to the finish token, divided by the
// turns: includes the untimed write and the hand-over). Each worker reports
// its own peak RSS (VmHWM). After each ring the driver checks that every
// worker did its turns and that the registry holds exactly the records
// expected; a mismatch fails the run.
//
//     procreg_turns_bench [--quick] [--n 10,100,...] [--procs 2,8] [--ops insert,...]
//                         [--tmpfs-dir DIR] [--out results.json]
//     (PROCREG_TURNS_QUICK=1 is --quick; PROCREG_TURNS_RAW=1 prints every worker's report)
//
// A third contender, the floor, runs the same ring on a table of the same
// size with the system calls of the atomic replace protocol alone (lock,
// open, fstat, read; for an operation that writes, an O_EXCL temp file,
// write, rename; unlock; nothing parsed or encoded): what no registry of
// one JSON file can go below, against which the targets at small N are
// judged.
//
// Prints a Markdown table with the ratios and the targets, and
// merges its rows (those with "writers") into results.json beside the
// executable, replacing the multi-writer rows of an earlier run.
#include "harness.hpp"
#include "seed.hpp"

#include <procreg/presets/algocline.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <functional>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace procreg_bench {
namespace {

constexpr std::uint32_t dead_pid = 0x3fffffffU;  // above PID_MAX_LIMIT: ESRCH everywhere
const std::vector<std::string> all_ops = {"insert", "erase", "find", "list", "reap"};

using record = procreg::algocline::pool_session;

std::string key(const char* prefix, std::uint64_t i) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%s-%010llu", prefix, static_cast<unsigned long long>(i));
    return buf;
}

record make(const std::string& sid, std::uint32_t pid) {
    return record{sid, pid, "/run/user/1000/algocline/pool/" + sid + ".sock", "0.30.0", "2026-01-01T00:00:00Z"};
}

procreg::algocline::pool_registry open_registry(const fs::path& file) {
    auto opts = procreg::algocline::options(file);
    opts.durable = false;  // tmpfs, as procreg_bench
    return procreg::algocline::open(std::move(opts));
}

/// This thread's CPU time in µs (CLOCK_THREAD_CPUTIME_ID, as the seed's worker).
double cpu_us() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

/// This process's peak resident set (VmHWM), in KiB.
long peak_rss_kib() {
    const std::string value = first_line_value("/proc/self/status", "VmHWM");
    return value.empty() ? -1 : std::atol(value.c_str());
}

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "procreg_turns_bench: %s\n", what.c_str());
    std::exit(1);
}

void write_all(int fd, const void* data, std::size_t size, const char* what) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
        const ssize_t w = ::write(fd, p, size);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) die(std::string(what) + ": " + std::strerror(errno));
        p += w;
        size -= static_cast<std::size_t>(w);
    }
}

// ---------------------------------------------------------------------------
// The floor: the system calls of the atomic replace protocol alone, no JSON.
// ---------------------------------------------------------------------------

// One operation of the floor contender on the table `name` in `dir`: take
// the lock (flock), open, fstat and read the file, and for an operation
// that writes, write the same bytes to an O_EXCL temp file and rename it
// over the table (no fsync: tmpfs, as procreg's durable = false); unlock.
// What any registry of one JSON file pays per transaction at least, with
// nothing parsed, checked or encoded: the bound below which no
// implementation of the protocol can go.
void floor_op(int dir, int lock, const char* name, bool writes, std::string& buffer, std::uint64_t turn) {
    if (::flock(lock, LOCK_EX) != 0) die("floor: flock");
    const int fd = ::openat(dir, name, O_RDONLY | O_CLOEXEC);
    struct ::stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0) die("floor: open");
    buffer.resize(static_cast<std::size_t>(st.st_size) + 1);
    const ssize_t got = ::read(fd, buffer.data(), buffer.size());
    ::close(fd);
    if (got != st.st_size) die("floor: short read");
    if (writes) {
        const std::string temp = ".floor-" + std::to_string(::getpid()) + "-" + std::to_string(turn);
        const int out = ::openat(dir, temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (out < 0) die("floor: temp file");
        write_all(out, buffer.data(), static_cast<std::size_t>(got), "floor: write");
        if (::close(out) != 0 || ::renameat(dir, temp.c_str(), dir, name) != 0) die("floor: rename");
    }
    if (::flock(lock, LOCK_UN) != 0) die("floor: unlock");
}

// ---------------------------------------------------------------------------
// The procreg worker (and the floor's): the same protocol as `seedio bench ring`.
// ---------------------------------------------------------------------------

int worker(int argc, char** argv) {
    if (argc != 13) die("worker: wrong arguments");
    const bool floor = std::string(argv[1]) == "floor";
    const fs::path file = argv[2];
    const std::string op = argv[3];
    const std::uint64_t index = std::stoull(argv[4]), procs = std::stoull(argv[5]), total = std::stoull(argv[6]),
                        n = std::stoull(argv[7]);
    const auto owner = static_cast<std::uint32_t>(std::stoul(argv[8]));
    const int in = std::atoi(argv[9]), out = std::atoi(argv[10]), finish = std::atoi(argv[11]),
              report = std::atoi(argv[12]);
    if (total <= procs) die("worker: total must exceed procs");
    auto reg = open_registry(file);
    const int floor_dir = floor ? ::open(file.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    const int floor_lock = floor ? ::open((file.parent_path() / "registry.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
    if (floor && (floor_dir < 0 || floor_lock < 0)) die("floor: cannot open the directory or the lock file");
    const std::string floor_name = file.filename().string();
    std::string floor_buffer;
    write_all(report, "ready\n", 6, "report");
    std::vector<std::pair<double, double>> times;  // (wall, CPU) µs
    for (std::uint64_t expect = index; expect < total; expect += procs) {
        std::uint64_t t = 0;
        std::size_t got = 0;
        while (got < sizeof t) {
            const ssize_t r = ::read(in, reinterpret_cast<char*>(&t) + got, sizeof t - got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) die("worker " + std::to_string(index) + ": the token never came");
            got += static_cast<std::size_t>(r);
        }
        if (t != expect) die("worker " + std::to_string(index) + " got token " + std::to_string(t) + ", expected " +
                             std::to_string(expect));
        const auto bad = [&](const std::string& what) { die("turn " + std::to_string(t) + ", " + op + ": " + what); };
        const auto t0 = clock_type::now();
        const double c0 = cpu_us();
        if (floor) {
            floor_op(floor_dir, floor_lock, floor_name.c_str(), op != "find" && op != "list", floor_buffer, t);
        } else if (op == "insert") {
            reg.insert(make(key("turn", t), owner));
        } else if (op == "erase") {
            if (!reg.erase(key("victim", t))) bad("no record " + key("victim", t));
        } else if (op == "find") {
            if (!reg.find(key("sess", (t * 7919) % n))) bad("no record " + key("sess", (t * 7919) % n));
        } else if (op == "list") {
            const auto rows = reg.list();
            const auto live = std::count_if(rows.begin(), rows.end(), [](const auto& r) { return r.alive; });
            if (static_cast<std::uint64_t>(live) != n + 1) bad(std::to_string(live) + " live records");
        } else if (op == "reap") {
            const auto reaped = reg.reap();
            if (reaped.size() != 1) bad(std::to_string(reaped.size()) + " records reaped, expected 1");
        } else {
            bad("unknown operation");
        }
        const double us = std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
        const double cpu = cpu_us() - c0;
        if (t >= procs) times.push_back({us, cpu});  // each process's first turn is its warm-up
        if (floor) {
            // nothing untimed: the floor reads the file whole every time
        } else if (op == "insert") {
            if (!reg.erase(key("turn", t))) bad("no record " + key("turn", t));
        } else if (op == "erase") {
            reg.insert(make(key("victim", t + 1), owner));
        } else if (op == "find" || op == "list") {
            reg.transact([&](auto& tx) {
                if (!tx.erase(key("touch", t))) bad("no record " + key("touch", t));
                tx.insert(make(key("touch", t + 1), owner));
            });
        } else if (op == "reap") {
            reg.insert(make(key("dead", t + 1), dead_pid));
        }
        const std::uint64_t next = t + 1;
        if (next == procs) write_all(finish, &next, sizeof next, "marking the warm-up's end");
        write_all(next == total ? finish : out, &next, sizeof next, "passing the token");
    }
    std::ostringstream line;
    line << "done " << index << " " << times.size() << " " << peak_rss_kib();
    char buf[32];
    for (const auto& [wall, cpu] : times) {
        std::snprintf(buf, sizeof buf, " %.3f %.3f", wall, cpu);
        line << buf;
    }
    line << "\n";
    const std::string text = line.str();
    write_all(report, text.data(), text.size(), "report");
    return 0;
}

// ---------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------

struct config {
    std::vector<std::uint64_t> ns = {10, 100, 1000, 10000, 100000};
    std::vector<int> procs = {2, 8};
    std::vector<std::string> ops = all_ops;
    bool quick = false;
    fs::path tmpfs_parent;
    fs::path out;
};

// Turns per ring (a multiple of every P): the issue's own loop did 400 at
// N <= 1,000 and 40 at 10,000; at 100,000 one turn of either side costs a
// good part of a second.
std::uint64_t turns_for(const config& cfg, std::uint64_t n) {
    if (cfg.quick) return n <= 1000 ? 80 : 16;
    if (n <= 1000) return 400;
    if (n <= 10000) return 40;
    return 16;
}

struct ring_result {
    std::vector<double> op_us;   // every turn's op time
    std::vector<double> cpu_us;  // and its CPU time
    double turn_us = 0;         // wall time / turns
    long peak_rss_kib = 0;      // largest VmHWM among the workers
};

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const std::size_t mid = v.size() / 2;
    return v.size() % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

// Starts P workers (`argv_for(i, in, out, finish, report)` gives worker i's
// command line), runs `total` turns, checks every report.
ring_result run_ring(int procs, std::uint64_t total,
                     const std::function<std::vector<std::string>(int, int, int, int, int)>& argv_for) {
    std::vector<std::array<int, 2>> ring(static_cast<std::size_t>(procs)), report(static_cast<std::size_t>(procs));
    int finish[2];
    for (int i = 0; i < procs; ++i) {
        if (::pipe2(ring[i].data(), O_CLOEXEC) != 0 || ::pipe2(report[i].data(), O_CLOEXEC) != 0) die("pipe");
    }
    if (::pipe2(finish, O_CLOEXEC) != 0) die("pipe");
    std::vector<pid_t> children;
    for (int i = 0; i < procs; ++i) {
        const pid_t child = ::fork();
        if (child < 0) die("fork");
        if (child == 0) {
            // dup() drops O_CLOEXEC: exactly these four reach the worker.
            const int in = ::dup(ring[i][0]), out = ::dup(ring[(i + 1) % procs][1]), fin = ::dup(finish[1]),
                      rep = ::dup(report[i][1]);
            const auto args = argv_for(i, in, out, fin, rep);
            std::vector<char*> argv;
            for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
            argv.push_back(nullptr);
            ::execv(argv[0], argv.data());
            std::fprintf(stderr, "exec %s: %s\n", argv[0], std::strerror(errno));
            ::_exit(127);
        }
        children.push_back(child);
    }
    const auto kill_all = [&] {
        for (const pid_t c : children) ::kill(c, SIGKILL);
        for (const pid_t c : children) ::waitpid(c, nullptr, 0);
    };
    for (int i = 0; i < procs; ++i) {
        ::close(ring[i][0]);
        if (i != 0) ::close(ring[i][1]);
        ::close(report[i][1]);
    }
    ::close(finish[1]);

    // Reads report i until a full line; "" on EOF.
    std::vector<std::string> buffers(static_cast<std::size_t>(procs));
    const auto read_line = [&](int i) -> std::string {
        for (;;) {
            const auto nl = buffers[i].find('\n');
            if (nl != std::string::npos) {
                std::string line = buffers[i].substr(0, nl);
                buffers[i].erase(0, nl + 1);
                return line;
            }
            char buf[65536];
            const ssize_t r = ::read(report[i][0], buf, sizeof buf);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) return {};
            buffers[i].append(buf, static_cast<std::size_t>(r));
        }
    };
    for (int i = 0; i < procs; ++i) {
        if (read_line(i) != "ready") {
            kill_all();
            die("worker " + std::to_string(i) + " did not start (see its message above)");
        }
    }

    const std::uint64_t token = 0;
    write_all(ring[0][1], &token, sizeof token, "the first token");
    // Wait for the finish token, or for a worker to die: its report pipe
    // closes without a "done" line (the others would wait for the token forever).
    // The finish pipe carries two tokens: P when the warm-up turns (each
    // process's first) are done, the start of the timed stretch; then total.
    std::uint64_t last = 0;
    double wall_us = 0;
    std::optional<clock_type::time_point> warm;
    std::vector<bool> closed(static_cast<std::size_t>(procs), false);
    for (;;) {
        std::vector<pollfd> fds;
        fds.push_back({finish[0], POLLIN, 0});
        for (int i = 0; i < procs; ++i) {
            if (!closed[i]) fds.push_back({report[i][0], POLLIN, 0});
        }
        const int r = ::poll(fds.data(), fds.size(), 600000);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            kill_all();
            die("a ring of " + std::to_string(procs) + " made no progress in 600 s");
        }
        if (fds[0].revents & POLLIN) {
            const auto now = clock_type::now();
            if (::read(finish[0], &last, sizeof last) != static_cast<ssize_t>(sizeof last)) {
                kill_all();
                die("the ring ended without its last token (a worker failed: see above)");
            }
            if (!warm) {
                if (last != static_cast<std::uint64_t>(procs)) {
                    kill_all();
                    die("the warm-up ended with token " + std::to_string(last));
                }
                warm = now;
                continue;
            }
            wall_us = std::chrono::duration<double, std::micro>(now - *warm).count();
            break;
        }
        for (int i = 0; i < procs; ++i) {
            const auto fd = std::find_if(fds.begin() + 1, fds.end(), [&](const pollfd& p) { return p.fd == report[i][0]; });
            if (closed[i] || fd == fds.end() || !fd->revents) continue;
            char buf[65536];
            const ssize_t got = ::read(report[i][0], buf, sizeof buf);
            if (got > 0) {
                buffers[i].append(buf, static_cast<std::size_t>(got));
            } else if (got == 0) {
                closed[i] = true;
                if (buffers[i].rfind("done ", 0) != 0) {
                    kill_all();
                    die("worker " + std::to_string(i) + " ended without finishing its turns (see its message above)");
                }
            }
        }
    }
    if (last != total) die("the last token is " + std::to_string(last) + ", expected " + std::to_string(total));

    ring_result out;
    const std::uint64_t measured = total - static_cast<std::uint64_t>(procs);
    out.turn_us = wall_us / static_cast<double>(measured);
    for (int i = 0; i < procs; ++i) {
        const std::string line = read_line(i);
        if (std::getenv("PROCREG_TURNS_RAW")) std::cerr << "worker " << i << ": " << line << "\n";
        std::istringstream in(line);
        // "done <index> <turns> <peak RSS KiB> <wall µs> <CPU µs> ..." and nothing else.
        std::string word, rss_text;
        int index = -1;
        std::uint64_t count = 0;
        in >> word >> index >> count >> rss_text;
        long rss = -1;
        if (!rss_text.empty() && rss_text.find_first_not_of("-0123456789") == std::string::npos) {
            rss = std::stol(rss_text);
        } else {
            die("worker " + std::to_string(i) + ": no peak RSS in '" + line + "'");
        }
        const std::uint64_t expected = measured / static_cast<std::uint64_t>(procs);
        if (word != "done" || index != i || count != expected) {
            kill_all();
            die("worker " + std::to_string(i) + " reported '" + line + "', expected done with " +
                std::to_string(expected) + " turns");
        }
        double us = 0, cpu = 0;
        for (std::uint64_t k = 0; k < count; ++k) {
            if (!(in >> us >> cpu)) die("worker " + std::to_string(i) + ": short report");
            out.op_us.push_back(us);
            out.cpu_us.push_back(cpu);
        }
        if (std::string rest; in >> rest) die("worker " + std::to_string(i) + ": more values than turns in its report");
        out.peak_rss_kib = std::max(out.peak_rss_kib, rss);
        ::close(report[i][0]);
    }
    ::close(ring[0][1]);
    ::close(finish[0]);
    for (const pid_t c : children) {
        int status = 0;
        ::waitpid(c, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("a worker exited with status " + std::to_string(status));
    }
    return out;
}

// The records every ring starts from: sess-0 … sess-(N-1), owned by the
// driver (alive throughout), and what the op needs.
struct prefill_part {
    const char* prefix;
    std::uint64_t count;
    std::uint32_t pid;
};
std::vector<prefill_part> prefill_for(const std::string& op, std::uint64_t n, std::uint32_t owner) {
    std::vector<prefill_part> parts = {{"sess", n, owner}};
    if (op == "erase") parts.push_back({"victim", 1, owner});
    if (op == "find" || op == "list") parts.push_back({"touch", 1, owner});
    if (op == "reap") parts.push_back({"dead", 1, dead_pid});
    return parts;
}

// The keys the registry must hold after `total` turns of `op`.
std::set<std::string> expected_keys(const std::string& op, std::uint64_t n, std::uint64_t total) {
    std::set<std::string> keys;
    for (std::uint64_t i = 0; i < n; ++i) keys.insert(key("sess", i));
    if (op == "erase") {
        keys.insert(key("victim", total));
    } else if (op == "find" || op == "list") {
        keys.insert(key("touch", total));
    } else if (op == "reap") {
        keys.insert(key("dead", total));
    }
    return keys;
}

// Reads the registry file with procreg (the format is the seed's) and
// compares its keys with the expected ones.
void check_registry(const fs::path& file, const std::string& what, const std::set<std::string>& expected) {
    auto reg = open_registry(file);
    std::set<std::string> found;
    std::size_t count = 0;
    for (const auto& row : reg.list()) {
        found.insert(row.record.sid);
        ++count;
    }
    if (found != expected || count != expected.size()) {
        std::string sample;
        for (const auto& k : expected) {
            if (!found.count(k)) {
                sample = "missing " + k;
                break;
            }
        }
        for (const auto& k : found) {
            if (sample.empty() && !expected.count(k)) sample = "unexpected " + k;
        }
        die(what + ": the registry holds " + std::to_string(count) + " records, expected " +
            std::to_string(expected.size()) + " (" + sample + ")");
    }
}

struct row {
    int writers = 0;
    std::string op;
    std::uint64_t n = 0;
    std::uint64_t turns = 0;
    std::optional<double> procreg_us, seed_us, procreg_turn_us, seed_turn_us, procreg_cpu_us, seed_cpu_us;
    std::optional<double> floor_us;  // the protocol's system calls alone
    std::optional<long> procreg_rss_kib, seed_rss_kib;
};

std::string self_exe() {
    std::error_code ec;
    const auto p = fs::read_symlink("/proc/self/exe", ec);
    if (ec) die("cannot read /proc/self/exe");
    return p.string();
}

row measure(const config& cfg, const fs::path& base, int procs, const std::string& op, std::uint64_t n,
            const std::string& seed) {
    row out;
    out.writers = procs;
    out.op = op;
    out.n = n;
    const std::uint64_t total = turns_for(cfg, n) + static_cast<std::uint64_t>(procs);  // + the warm-up turns
    out.turns = turns_for(cfg, n);
    const auto owner = static_cast<std::uint32_t>(::getpid());
    const auto parts = prefill_for(op, n, owner);
    const auto expected = expected_keys(op, n, total);
    const std::string self = self_exe();

    enum class side { procreg, seed, floor };
    const auto run_side = [&](side who) {
        const bool is_seed = who == side::seed;
        const fs::path dir = make_private_dir(base, is_seed ? "seed" : who == side::floor ? "floor" : "procreg");
        const fs::path file = dir / "registry.json";
        if (is_seed) {
            seed_server loader(seed, file);  // the seed writes its own file
            for (const auto& p : parts) {
                loader.request("prefill " + std::string(p.prefix) + " 0 " + std::to_string(p.count) + " " +
                               std::to_string(p.pid));
            }
        } else {
            auto reg = open_registry(file);
            reg.transact([&](auto& tx) {
                for (const auto& p : parts) {
                    for (std::uint64_t i = 0; i < p.count; ++i) tx.insert(make(key(p.prefix, i), p.pid));
                }
            });
        }
        const auto result = run_ring(procs, total, [&](int i, int in, int o, int fin, int rep) {
            std::vector<std::string> args;
            if (is_seed) {
                args = {seed, "bench", "ring"};
            } else {
                args = {self, who == side::floor ? "floor" : "worker"};
            }
            for (const std::string& a :
                 {file.string(), op, std::to_string(i), std::to_string(procs), std::to_string(total), std::to_string(n),
                  std::to_string(owner), std::to_string(in), std::to_string(o), std::to_string(fin),
                  std::to_string(rep)}) {
                args.push_back(a);
            }
            return args;
        });
        if (who != side::floor) {  // the floor writes back what it read: the prefill
            check_registry(file, std::string(is_seed ? "seed" : "procreg") + " " + op + " P=" + std::to_string(procs) +
                                     " N=" + std::to_string(n),
                           expected);
        }
        fs::remove_all(dir);
        if (who == side::floor) {
            out.floor_us = median(result.op_us);
        } else if (is_seed) {
            out.seed_us = median(result.op_us);
            out.seed_cpu_us = median(result.cpu_us);
            out.seed_turn_us = result.turn_us;
            out.seed_rss_kib = result.peak_rss_kib;
        } else {
            out.procreg_us = median(result.op_us);
            out.procreg_cpu_us = median(result.cpu_us);
            out.procreg_turn_us = result.turn_us;
            out.procreg_rss_kib = result.peak_rss_kib;
        }
    };
    // Alternate which side goes first, so neither always meets the other's leftovers.
    const bool seed_first = ((n / 10) + static_cast<std::uint64_t>(procs) + op.size()) % 2 == 0;
    for (const bool is_seed : {seed_first, !seed_first}) {
        if (is_seed && seed.empty()) continue;
        run_side(is_seed ? side::seed : side::procreg);
    }
    run_side(side::floor);
    return out;
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

std::string ratio(std::optional<double> a, std::optional<double> b) { return ratio_cell(a, b); }

std::string mib(std::optional<long> kib) {
    if (!kib || *kib < 0) return "—";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", static_cast<double>(*kib) / 1024.0);
    return buf;
}

void print_table(const std::vector<row>& rows) {
    std::cout << "\n### Multi-writer: processes taking strict turns (tmpfs, fsync off for procreg; the seed "
                 "always fsyncs)\n\n"
                 "op µs: median wall time of the operation inside the process, from the token's arrival until it "
                 "returned; CPU µs: the same operation's CPU time (median); turn µs: wall time per turn, with the "
                 "untimed write and the hand-over. Target and met: op µs against the seed's. floor: the "
                 "protocol's system calls alone (lock, open, fstat, read; for a write an O_EXCL temp file, write, "
                 "rename; unlock), no JSON: what no implementation of one JSON file goes below.\n\n"
                 "| P | op | N | turns | procreg op µs | seed op µs | op ratio | procreg CPU µs | seed CPU µs | "
                 "CPU ratio | procreg turn µs | seed turn µs | turn ratio | floor op µs | floor / seed | target ≤ | met |\n"
                 "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
    for (const auto& r : rows) {
        const bool scan = (r.op == "list" || r.op == "reap") && r.n >= 1000;
        const double limit = scan ? 0.25 : 0.5;
        std::string met = "—";
        if (r.procreg_us && r.seed_us) met = *r.procreg_us / *r.seed_us <= limit ? "met" : "MISSED";
        char lim[16];
        std::snprintf(lim, sizeof lim, "%.2f×", limit);
        std::cout << "| " << r.writers << " | " << r.op << " | " << r.n << " | " << r.turns << " | "
                  << cell(r.procreg_us) << " | " << cell(r.seed_us) << " | " << ratio(r.procreg_us, r.seed_us) << " | "
                  << cell(r.procreg_cpu_us) << " | " << cell(r.seed_cpu_us) << " | "
                  << ratio(r.procreg_cpu_us, r.seed_cpu_us) << " | " << cell(r.procreg_turn_us) << " | " << cell(r.seed_turn_us) << " | "
                  << ratio(r.procreg_turn_us, r.seed_turn_us) << " | " << cell(r.floor_us) << " | "
                  << ratio(r.floor_us, r.seed_us) << " | " << lim << " | " << met << " |\n";
    }
    bool any_rss = false;
    for (const auto& r : rows) any_rss = any_rss || r.n == 100000;
    if (any_rss) {
        std::cout << "\n### Peak RSS at N = 100,000 (largest VmHWM among the workers, MiB)\n\n"
                     "| P | op | procreg MiB | seed MiB | target | met |\n|---:|---|---:|---:|---|---|\n";
        for (const auto& r : rows) {
            if (r.n != 100000) continue;
            std::string met = "—";
            if (r.procreg_rss_kib && r.seed_rss_kib) met = *r.procreg_rss_kib <= *r.seed_rss_kib ? "met" : "MISSED";
            std::cout << "| " << r.writers << " | " << r.op << " | " << mib(r.procreg_rss_kib) << " | "
                      << mib(r.seed_rss_kib) << " | ≤ seed | " << met << " |\n";
        }
    }
    int met = 0, missed = 0;
    for (const auto& r : rows) {
        if (!r.procreg_us || !r.seed_us) continue;
        const double limit = ((r.op == "list" || r.op == "reap") && r.n >= 1000) ? 0.25 : 0.5;
        (*r.procreg_us / *r.seed_us <= limit ? met : missed)++;
        if (r.n == 100000 && r.procreg_rss_kib && r.seed_rss_kib) {
            (*r.procreg_rss_kib <= *r.seed_rss_kib ? met : missed)++;
        }
    }
    std::cout << "\nmulti-writer targets (op time vs the seed's; RSS at N = 100,000): " << met << " met, " << missed
              << " missed\n";
}

std::string json_long(std::optional<long> v) { return v ? std::to_string(*v) : "null"; }

std::string row_json(const row& r) {
    std::ostringstream o;
    const auto ratio_of = [](std::optional<double> a, std::optional<double> b) -> std::optional<double> {
        if (!a || !b || *b <= 0) return std::nullopt;
        return *a / *b;
    };
    o << "{\"storage\": \"json_table\", \"medium\": \"tmpfs\", \"writers\": " << r.writers
      << ", \"op\": " << json_string(r.op) << ", \"n\": " << r.n << ", \"turns\": " << r.turns
      << ", \"procreg_us\": " << json_number(r.procreg_us) << ", \"seed_us\": " << json_number(r.seed_us)
      << ", \"ratio\": " << json_number(ratio_of(r.procreg_us, r.seed_us))
      << ", \"cpu_us\": " << json_number(r.procreg_cpu_us) << ", \"seed_cpu_us\": " << json_number(r.seed_cpu_us)
      << ", \"cpu_ratio\": " << json_number(ratio_of(r.procreg_cpu_us, r.seed_cpu_us))
      << ", \"turn_us\": " << json_number(r.procreg_turn_us) << ", \"seed_turn_us\": " << json_number(r.seed_turn_us)
      << ", \"turn_ratio\": " << json_number(ratio_of(r.procreg_turn_us, r.seed_turn_us))
      << ", \"procreg_rss_kib\": " << json_long(r.procreg_rss_kib) << ", \"seed_rss_kib\": " << json_long(r.seed_rss_kib)
      << ", \"floor_us\": " << json_number(r.floor_us)
      << ", \"floor_ratio\": " << json_number(ratio_of(r.floor_us, r.seed_us)) << ", \"sqlite_us\": null}";
    return o.str();
}

// Keeps the rows of results.json without "writers" (procreg_bench's, the
// watch bench's) and appends ours, as bench/watch_latency.cpp merges.
void merge_json(const fs::path& path, const std::vector<row>& rows) {
    boost::json::array merged;
    if (std::ifstream in(path); in) {
        const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        boost::system::error_code ec;
        auto old = boost::json::parse(text, ec);
        if (ec || !old.is_array()) die(path.string() + " is not a JSON array: not merging into it");
        for (auto& r : old.as_array()) {
            if (!r.is_object() || !r.as_object().contains("writers")) merged.push_back(r);
        }
    }
    for (const auto& r : rows) merged.push_back(boost::json::parse(row_json(r)));
    fs::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::trunc);
    out << "[\n";
    for (std::size_t i = 0; i < merged.size(); ++i) {
        out << "  " << boost::json::serialize(merged[i]) << (i + 1 < merged.size() ? ",\n" : "\n");
    }
    out << "]\n";
    if (!out) die("cannot write " + path.string());
}

std::vector<std::string> split(const std::string& text) {
    std::vector<std::string> out;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) {
        if (!item.empty()) out.push_back(item);
    }
    return out;
}

config parse_args(int argc, char** argv) {
    config cfg;
    const char* xdg = std::getenv("XDG_RUNTIME_DIR");
    cfg.tmpfs_parent = (xdg && *xdg && filesystem_type(xdg) == "tmpfs") ? fs::path(xdg) : fs::path("/dev/shm");
    cfg.out = fs::path(self_exe()).parent_path() / "results.json";
    const auto quick = [&] {
        cfg.quick = true;
        cfg.ns = {10, 100, 1000};
    };
    if (const char* q = std::getenv("PROCREG_TURNS_QUICK"); q && *q && std::string(q) != "0") quick();
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const auto value = [&]() -> std::string {
            if (i + 1 >= argc) die(arg + " needs a value");
            return argv[++i];
        };
        if (arg == "--quick") {
            quick();
        } else if (arg == "--n") {
            cfg.ns.clear();
            for (const auto& s : split(value())) cfg.ns.push_back(std::stoull(s));
        } else if (arg == "--procs") {
            cfg.procs.clear();
            for (const auto& s : split(value())) cfg.procs.push_back(std::stoi(s));
        } else if (arg == "--ops") {
            cfg.ops = split(value());
            for (const auto& op : cfg.ops) {
                if (std::find(all_ops.begin(), all_ops.end(), op) == all_ops.end()) die("unknown op " + op);
            }
        } else if (arg == "--tmpfs-dir") {
            cfg.tmpfs_parent = value();
        } else if (arg == "--out") {
            cfg.out = value();
        } else if (arg == "-h" || arg == "--help") {
            std::cout << "usage: procreg_turns_bench [--quick] [--n 10,100,...] [--procs 2,8] [--ops insert,...] "
                         "[--tmpfs-dir DIR] [--out results.json]   (PROCREG_TURNS_QUICK=1 is --quick)\n";
            std::exit(0);
        } else {
            die("unknown argument " + arg + " (see --help)");
        }
    }
    for (const int p : cfg.procs) {
        if (p < 2) die("--procs: a ring needs at least 2 processes");
    }
    return cfg;
}

int run(int argc, char** argv) {
    const config cfg = parse_args(argc, argv);
    // A worker that died must not kill the driver through SIGPIPE before it
    // can say which one (write_all reports EPIPE instead).
    ::signal(SIGPIPE, SIG_IGN);
    const std::string unavailable = seed_unavailable();
    const std::string seed = unavailable.empty() ? seed_program() : std::string();
    const auto machine = describe_machine();
    const fs::path base = make_private_dir(cfg.tmpfs_parent, "procreg-turns");
    std::cout << "## procreg_turns_bench" << (cfg.quick ? " (quick)" : "") << "\n\nmachine: " << machine.cpus
              << " CPUs, " << machine.cpu_model << ", " << machine.kernel << ", " << machine.memory << "\n- registry: "
              << base.string() << " (" << filesystem_type(base) << ")\n- seed: "
              << (seed.empty() ? "MISSING" : seed) << "\n";
    std::cout.flush();
    if (!unavailable.empty()) shout_seed_unavailable(unavailable);
    std::vector<row> rows;
    const auto start = clock_type::now();
    for (const auto n : cfg.ns) {
        const auto n_start = clock_type::now();
        for (const int procs : cfg.procs) {
            if (turns_for(cfg, n) % static_cast<std::uint64_t>(procs) != 0) die("turns must be a multiple of P");
            for (const auto& op : cfg.ops) rows.push_back(measure(cfg, base, procs, op, n, seed));
        }
        std::cerr << "  N=" << n << ": " << seconds_since(n_start) << " s\n";
    }
    fs::remove_all(base);
    print_table(rows);
    merge_json(cfg.out, rows);
    std::cout << "\nmerged " << rows.size() << " multi-writer rows into " << cfg.out.string() << " in "
              << static_cast<int>(seconds_since(start)) << " s\n";
    if (!unavailable.empty()) {
        shout_seed_unavailable(unavailable);
        return 2;
    }
    return 0;
}

}  // namespace
}  // namespace procreg_bench

int main(int argc, char** argv) {
    try {
        if (argc > 1 && (std::string(argv[1]) == "worker" || std::string(argv[1]) == "floor")) {
            return procreg_bench::worker(argc, argv);
        }
        return procreg_bench::run(argc, argv);
    } catch (const std::exception& e) {
        std::cerr << "procreg_turns_bench: " << e.what() << "\n";
        return 1;
    }
}
