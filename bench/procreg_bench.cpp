// bench/procreg_bench.cpp — procreg against the system-call floor, SQLite and the seed.
//
// For each medium (tmpfs with fsync off, the disk with fsync on), each
// storage policy and N = 10 … 100,000 existing records, measures the median
// latency of one insert, erase, find, list and reap, each a whole
// transaction, next to the floor (the same system calls without parsing or
// formatting), SQLite (WAL) and the seed (algocline's own Rust code, whose
// file json_table's rows share: bench/seed.hpp) doing the same operation on
// the same records.
// Then 1, 2, 4 and 8 processes insert and erase on one registry at once:
// total operations per second.
//
// Prints a Markdown table and writes the same figures, one JSON object per
// measurement, to results.json next to the executable (build/bench/).
//
//     procreg_bench [--quick] [--n 10,100,...] [--media tmpfs,disk]
//                   [--storages json_table,json_table_nocache,record_files]
//                   [--budget SECONDS] [--no-contention] [--no-claims]
//                   [--tmpfs-dir DIR] [--disk-dir DIR] [--out FILE]
#include "backends.hpp"
#include "harness.hpp"
#include "seed.hpp"

#include <procreg/storage/json_table.hpp>
#if __has_include(<procreg/storage/record_files.hpp>)
#include <procreg/storage/record_files.hpp>
#define PROCREG_BENCH_HAVE_RECORD_FILES 1
#endif
#if __has_include(<procreg/presets/trusty.hpp>)
#include <procreg/presets/trusty.hpp>
#define PROCREG_BENCH_HAVE_CLAIMS 1
#endif

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace procreg_bench {
namespace {

// A pid above the kernel's PID_MAX_LIMIT (4,194,304): kill(2) answers ESRCH
// for it on every Linux system, and it can never be reused during the run.
constexpr std::uint32_t dead_pid = 0x3fffffffU;

// The owner of the N existing records: init, alive as long as the machine
// (kill(1, 0) is 0 for root, EPERM — alive — for anyone else). Not the
// bench's own pid: the record directories kept between runs (below) would
// then hold records of a dead process, and reap would remove them all.
constexpr std::uint32_t resident_pid = 1;

const std::vector<std::string> all_ops = {"insert", "erase", "find", "list", "reap"};

struct config {
    std::vector<std::uint64_t> ns = {10, 100, 1000, 10000, 100000};
    std::vector<std::string> media = {"tmpfs", "disk"};
    std::set<std::string> storages = {"json_table", "json_table_nocache", "record_files"};
    double budget_s = 0.25;
    bool contention = true;
    bool claims = true;
    double contention_s = 0.6;
    std::uint64_t contention_n = 1000;
    std::vector<int> procs = {1, 2, 4, 8};
    std::string seed;  // the release seedio, "" when it is missing (said loudly)
    fs::path tmpfs_parent;
    fs::path disk_parent;
    fs::path out;
};

struct measurement {
    std::string storage, medium, op;
    std::uint64_t n = 0;
    std::optional<double> procreg_us, floor_us, sqlite_us, seed_us;
    int procreg_reps = 0;
    std::optional<int> procs;
    std::optional<double> ops_per_s, floor_ops_per_s, sqlite_ops_per_s;
};

using op_figures = std::map<std::string, std::pair<double, int>>;  // op -> (median µs, reps)

// Budget for one figure: bounded so the whole run stays within minutes even
// where one call takes a quarter of a second (a 100,000-record table parsed
// afresh, or 100,000 files listed).
sampling sampling_for(const config& cfg, std::uint64_t n) {
    sampling s;
    s.budget_s = cfg.budget_s;
    s.min_reps = n >= 100000 ? 3 : 5;
    s.max_reps = 400;
    return s;
}

// The seed: algocline's own Rust code in a `seedio bench serve` process
// (bench/seed.hpp), on the same kind of file as json_table's (the seed's
// `{"sessions": [...]}`, written by the seed itself). Its records belong to
// this process, not to init: the seed counts only kill(pid, 0) == 0 as
// alive, and init answers EPERM to anyone but root.
class seed_backend final : public backend {
public:
    seed_backend(const std::string& program, const fs::path& dir, std::uint64_t n)
        : server_(program, dir / "registry.json") {
        server_.request("prefill sess 0 " + std::to_string(n) + " " + std::to_string(::getpid()));
    }
    void insert(const record& r) override { last_ = server_.request("insert " + r.sid + " " + std::to_string(r.pid)).first; }
    void erase(const std::string& key) override { last_ = server_.request("erase " + key).first; }
    void find(const std::string& key) override { last_ = server_.request("find " + key).first; }
    std::size_t list() override { return answer(server_.request("list")); }
    std::size_t reap() override { return answer(server_.request("reap")); }
    std::optional<double> own_us() const override { return last_; }

private:
    std::size_t answer(std::pair<double, std::size_t> a) {
        last_ = a.first;
        return a.second;
    }
    seed_server server_;
    double last_ = 0;
};

// One implementation under test, by name, in an interleaved run.
struct contender {
    std::string name;
    backend* b;
};

double median_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t mid = v.size() / 2;
    return v.size() % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

// Runs the five operations against every contender, each holding `n`
// live records (owned by resident_pid, init). The contenders take turns in
// short bursts (up to 8 calls or 10 ms, after one untimed call when a call
// is cheap, so each burst runs with its own data in the CPU caches), so a
// disturbance lasting more than a few ms (another process's I/O, a journal
// commit of the shared disk) falls on all of them alike: ratios come from
// the same moments.
std::map<std::string, op_figures> run_ops(const std::vector<contender>& all, std::uint64_t n, const sampling& how,
                                          std::uint64_t& serial) {
    std::map<std::string, op_figures> out;
    const double budget = how.budget_s * static_cast<double>(all.size());
    const auto me = static_cast<std::uint32_t>(::getpid());
    const auto us_since = [](clock_type::time_point t0) {
        return std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
    };
    // A backend in another process (the seed) times its own calls.
    const auto took = [&](const contender& c, clock_type::time_point t0) {
        const double outside = us_since(t0);
        const auto own = c.b->own_us();
        return own ? *own : outside;
    };
    // `turn(c, keep)` runs one call of `c` (with its untimed set-up),
    // records its figure when `keep`, and returns the µs it took.
    using turn_fn = std::function<double(const contender&, bool)>;
    using count_fn = std::function<std::size_t(const contender&)>;
    const auto sample = [&](const turn_fn& turn, const count_fn& count) {
        std::map<std::string, double> last;
        for (const auto& c : all) last[c.name] = turn(c, false);  // warm-up: first-touch page faults
        const auto start = clock_type::now();
        for (;;) {
            std::size_t least = static_cast<std::size_t>(-1);
            for (const auto& c : all) least = std::min(least, count(c));
            if (least >= static_cast<std::size_t>(how.max_reps)) break;
            if (least >= static_cast<std::size_t>(how.min_reps) && seconds_since(start) > budget) break;
            for (const auto& c : all) {
                double spent = 0;
                if (last[c.name] < 1000) spent += turn(c, false);
                int calls = 0;
                do {
                    last[c.name] = turn(c, true);
                    spent += last[c.name];
                } while (++calls < 8 && spent < 10000 && count(c) < static_cast<std::size_t>(how.max_reps));
            }
        }
    };
    {
        // insert and erase alternate: each insert sees n records, each erase n + 1.
        std::map<std::string, std::vector<double>> ins, era;
        sample(
            [&](const contender& c, bool keep) {
                const record r = make_record(key_for(serial++, "new"), me);
                const auto t0 = clock_type::now();
                c.b->insert(r);
                const double t_ins = took(c, t0);
                const auto t1 = clock_type::now();
                c.b->erase(r.sid);
                const double t_era = took(c, t1);
                if (keep) {
                    ins[c.name].push_back(t_ins);
                    era[c.name].push_back(t_era);
                }
                return t_ins + t_era;
            },
            [&](const contender& c) { return ins[c.name].size(); });
        for (const auto& c : all) {
            out[c.name]["insert"] = {median_of(ins[c.name]), static_cast<int>(ins[c.name].size())};
            out[c.name]["erase"] = {median_of(era[c.name]), static_cast<int>(era[c.name].size())};
        }
    }
    const auto simple = [&](const std::string& op, const std::function<void(backend&)>& setup,
                            const std::function<void(backend&)>& timed) {
        std::map<std::string, std::vector<double>> times;
        sample(
            [&](const contender& c, bool keep) {
                const auto t0 = [&] {
                    try {
                        if (setup) setup(*c.b);
                        const auto start = clock_type::now();
                        timed(*c.b);
                        return start;
                    } catch (const std::exception& e) {
                        throw std::runtime_error(c.name + " " + op + ", N = " + std::to_string(n) + ": " + e.what());
                    }
                }();
                const double t = took(c, t0);
                if (keep) times[c.name].push_back(t);
                return t;
            },
            [&](const contender& c) { return times[c.name].size(); });
        for (const auto& c : all) {
            out[c.name][op] = {median_of(times[c.name]), static_cast<int>(times[c.name].size())};
        }
    };
    std::mt19937_64 rng(42);
    std::string key;
    simple("find", [&](backend&) { key = key_for(rng() % n); }, [&](backend& b) { b.find(key); });
    simple("list", nullptr, [&](backend& b) {
        if (b.list() != n) throw std::runtime_error("list: wrong count");
    });
    simple("reap", [&](backend& b) { b.insert(make_record(key_for(serial++, "dead"), dead_pid)); },
           [&](backend& b) {
               if (b.reap() != 1) throw std::runtime_error("reap: expected one dead record");
           });
    return out;
}

template <class Options, class = void>
struct has_cache_switch : std::false_type {};
template <class Options>
struct has_cache_switch<Options, std::void_t<decltype(std::declval<Options&>().reuse_unchanged)>> : std::true_type {};

// json_table options for `dir`; `cache` false turns the unchanged-file shortcut off.
template <class Options = procreg::storage::json_table_options>
Options table_options(const fs::path& dir, bool durable, bool cache) {
    Options opts;
    opts.file = dir / "registry.json";
    opts.array_key = "sessions";
    opts.durable = durable;
    if constexpr (has_cache_switch<Options>::value) {
        opts.reuse_unchanged = cache;
    } else {
        (void)cache;
    }
    return opts;
}

#ifdef PROCREG_BENCH_HAVE_RECORD_FILES
procreg::storage::record_files_options files_options(const fs::path& dir, bool durable) {
    procreg::storage::record_files_options opts;
    opts.root = dir / "records";
    opts.durable = durable;
    return opts;
}
#endif

std::string read_all(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// On a disk mounted with `discard` every unlink waits for the device (a
// few ms here), so deleting 100,000 record files takes minutes. On the disk,
// the record directories for N >= 10,000 are therefore kept between runs
// (build/bench/data/kept-record_files-init-<N>), checked and tidied at the start
// of each run, instead of being created and deleted every time.
constexpr std::uint64_t keep_records_from = 10000;

fs::path kept_records_dir(const config& cfg, std::uint64_t n) {
    // "-init": its records belong to resident_pid (directories of earlier
    // runs, named without it, held records of the bench's own, dead, pid).
    return cfg.disk_parent / "data" / ("kept-record_files-init-" + std::to_string(n));
}

// Makes `dir` hold exactly the records sess-0 … sess-(n-1), reusing what a
// previous run left there when it is that; returns true when reused.
bool prepare_kept_records(const fs::path& dir, std::uint64_t n) {
    const fs::path records = dir / "records";
    std::error_code ec;
    if (fs::is_directory(records, ec)) {
        std::uint64_t count = 0;
        std::vector<fs::path> strays;
        for (const auto& entry : fs::directory_iterator(records)) {
            const std::string name = entry.path().filename().string();
            if (name.rfind("sess-", 0) == 0 && name.size() == key_for(0).size() + 5) {
                ++count;
            } else if (entry.is_regular_file() && name != ".registry.lock" && name != ".floor.lock") {
                strays.push_back(entry.path());  // a record or temp file an interrupted run left
            }
        }
        if (count == n && fs::exists(records / (key_for(n - 1) + ".json"))) {
            for (const auto& stray : strays) fs::remove(stray);
            return true;
        }
        std::cerr << "  removing " << dir << " (it does not hold the " << n << " records expected)\n";
        fs::remove_all(dir);
    }
    fs::create_directories(dir);
    ::chmod(dir.c_str(), 0700);
    return false;
}

void remove_dir(const medium&, const fs::path& dir) { fs::remove_all(dir); }

// Everything measured for one medium and one N.
struct n_figures {
    std::map<std::string, op_figures> by_backend;  // "json_table", "floor_table", "sqlite", ...
};

n_figures measure_n(const config& cfg, const medium& m, std::uint64_t n, std::uint64_t& serial) {
    n_figures out;
    const auto how = sampling_for(cfg, n);
    const auto me = resident_pid;
    const auto fresh = [&](const std::string& name) { return make_private_dir(m.dir, name); };
    std::vector<contender> all;
    std::vector<fs::path> dirs;
    std::vector<std::unique_ptr<backend>> owned;
    const auto enlist = [&](const std::string& name, std::unique_ptr<backend> b) {
        all.push_back({name, b.get()});
        owned.push_back(std::move(b));
    };

    // Set-up (not measured): every store gets the same n records, written
    // without fsync and then flushed once.
    std::string table_contents;
    std::size_t record_bytes = 200;
    for (const bool cache : {true, false}) {
        const std::string name = cache ? "json_table" : "json_table_nocache";
        if (!cfg.storages.count(name)) continue;
        if (!cache && !has_cache_switch<procreg::storage::json_table_options>::value) continue;
        const fs::path dir = fresh(name);
        dirs.push_back(dir);
        {
            procreg_backend<procreg::storage::json_table> loader(table_options(dir, false, cache));
            loader.populate(n, me);
        }
        table_contents = read_all(dir / "registry.json");
        record_bytes = std::max<std::size_t>(1, table_contents.size() / std::max<std::uint64_t>(n, 1));
        enlist(name, std::make_unique<procreg_backend<procreg::storage::json_table>>(table_options(dir, m.durable, cache)));
    }
    if (!table_contents.empty()) {
        const fs::path dir = fresh("floor_table");
        dirs.push_back(dir);
        { floor_table writer(dir, false, &table_contents, record_bytes, {}); }
        enlist("floor_table", std::make_unique<floor_table>(dir, m.durable, nullptr, record_bytes,
                                                            std::vector<std::uint32_t>(n, me)));
    }
#ifdef PROCREG_BENCH_HAVE_RECORD_FILES
    if (cfg.storages.count("record_files")) {
        const bool keep = m.durable && n >= keep_records_from;
        const fs::path dir = keep ? kept_records_dir(cfg, n) : fresh("record_files");
        if (!keep) dirs.push_back(dir);
        if (!keep || !prepare_kept_records(dir, n)) {
            procreg_backend<procreg::storage::record_files> loader(files_options(dir, false));
            loader.populate(n, me);
        }
        const auto file_bytes = static_cast<std::size_t>(fs::file_size(dir / "records" / (key_for(0) + ".json")));
        enlist("record_files", std::make_unique<procreg_backend<procreg::storage::record_files>>(files_options(dir, m.durable)));
        // The floor works on the same files (it reads and writes bytes only,
        // and leaves alone the files it did not create or adopt): on a slow
        // disk, creating and deleting 100,000 files twice would cost minutes.
        auto f = std::make_unique<floor_files>(dir / "records", m.durable, file_bytes);
        f->adopt(n, me);
        enlist("floor_files", std::move(f));
    }
#endif
    {
        const fs::path dir = fresh("sqlite");
        dirs.push_back(dir);
        {
            sqlite_backend loader(dir / "registry.sqlite", false);
            loader.populate(n, me);
        }
        enlist("sqlite", std::make_unique<sqlite_backend>(dir / "registry.sqlite", m.durable));
    }
    if (!cfg.seed.empty() && (cfg.storages.count("json_table") || cfg.storages.count("json_table_nocache"))) {
        const fs::path dir = fresh("seed");
        dirs.push_back(dir);
        enlist("seed", std::make_unique<seed_backend>(cfg.seed, dir, n));
    }
    ::sync();

    // json_table without the shortcut is measured on its own: at large N one
    // of its calls takes as long as hundreds of the others', and would leave
    // them few samples within the budget.
    std::vector<contender> fast, slow;
    for (const auto& c : all) (c.name == "json_table_nocache" ? slow : fast).push_back(c);
    out.by_backend = run_ops(fast, n, how, serial);
    if (!slow.empty()) out.by_backend.merge(run_ops(slow, n, how, serial));
    owned.clear();
    for (const auto& dir : dirs) remove_dir(m, dir);
    return out;
}

// ---------------------------------------------------------------------------
// Contention: `procs` processes insert and erase their own keys on one
// registry for a fixed time; the figure is the total operations per second.
// ---------------------------------------------------------------------------

double run_contention(const std::function<std::unique_ptr<backend>()>& open, int procs, double seconds) {
    int ready[2], go[2], done[2];
    if (::pipe(ready) != 0 || ::pipe(go) != 0 || ::pipe(done) != 0) fail("pipe");
    std::vector<pid_t> children;
    for (int p = 0; p < procs; ++p) {
        const pid_t child = ::fork();
        if (child < 0) fail("fork");
        if (child == 0) {
            ::close(ready[0]);
            ::close(go[1]);
            ::close(done[0]);
            std::uint64_t count = 0;
            int status = 0;
            try {
                auto b = open();
                char c = 1;
                if (::write(ready[1], &c, 1) != 1) ::_exit(2);
                (void)::read(go[0], &c, 1);  // returns 0 when the parent closes go[1]
                const std::uint32_t me = static_cast<std::uint32_t>(::getpid());
                const auto start = clock_type::now();
                std::uint64_t i = 0;
                while (seconds_since(start) < seconds) {
                    const auto r = make_record(key_for(static_cast<std::uint64_t>(me) * 1000000ULL + i++, "c"), me);
                    b->insert(r);
                    b->erase(r.sid);
                    count += 2;
                }
            } catch (const std::exception& e) {
                std::fprintf(stderr, "contention worker: %s\n", e.what());
                status = 1;
            }
            if (::write(done[1], &count, sizeof count) != static_cast<ssize_t>(sizeof count)) status = 2;
            ::_exit(status);
        }
        children.push_back(child);
    }
    ::close(ready[1]);
    ::close(go[0]);
    ::close(done[1]);
    for (int p = 0; p < procs; ++p) {
        char c;
        if (::read(ready[0], &c, 1) != 1) break;
    }
    ::close(go[1]);  // start
    std::uint64_t total = 0;
    for (int p = 0; p < procs; ++p) {
        std::uint64_t count = 0;
        if (::read(done[0], &count, sizeof count) == static_cast<ssize_t>(sizeof count)) total += count;
    }
    bool ok = true;
    for (const pid_t child : children) {
        int status = 0;
        ::waitpid(child, &status, 0);
        ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    ::close(ready[0]);
    ::close(done[0]);
    if (!ok) throw std::runtime_error("a contention worker failed");
    return static_cast<double>(total) / seconds;
}

std::vector<measurement> measure_contention(const config& cfg, const medium& m) {
    std::vector<measurement> out;
    const auto me = static_cast<std::uint32_t>(::getpid());
    const std::uint64_t n = cfg.contention_n;
    std::map<std::string, std::map<int, double>> ops;  // backend -> procs -> ops/s

    const auto sweep = [&](const std::string& name, const std::function<std::unique_ptr<backend>()>& open) {
        for (const int procs : cfg.procs) ops[name][procs] = run_contention(open, procs, cfg.contention_s);
    };

    std::string table_contents;
    std::size_t record_bytes = 200;
    if (cfg.storages.count("json_table")) {
        const fs::path dir = make_private_dir(m.dir, "c-json_table");
        {
            procreg_backend<procreg::storage::json_table> loader(table_options(dir, false, true));
            loader.populate(n, me);
        }
        ::sync();
        table_contents = read_all(dir / "registry.json");
        record_bytes = table_contents.size() / n;
        sweep("json_table", [&] {
            return std::make_unique<procreg_backend<procreg::storage::json_table>>(table_options(dir, m.durable, true));
        });
        fs::remove_all(dir);

        const fs::path floor_dir = make_private_dir(m.dir, "c-floor_table");
        { floor_table writer(floor_dir, false, &table_contents, record_bytes, {}); }
        ::sync();
        sweep("floor_table", [&] {
            return std::make_unique<floor_table>(floor_dir, m.durable, nullptr, record_bytes,
                                                 std::vector<std::uint32_t>{});
        });
        fs::remove_all(floor_dir);
    }
#ifdef PROCREG_BENCH_HAVE_RECORD_FILES
    if (cfg.storages.count("record_files")) {
        const fs::path dir = make_private_dir(m.dir, "c-record_files");
        {
            procreg_backend<procreg::storage::record_files> loader(files_options(dir, false));
            loader.populate(n, me);
        }
        ::sync();
        const auto file_bytes = static_cast<std::size_t>(fs::file_size(dir / "records" / (key_for(0) + ".json")));
        sweep("record_files", [&] {
            return std::make_unique<procreg_backend<procreg::storage::record_files>>(files_options(dir, m.durable));
        });
        fs::remove_all(dir);

        const fs::path floor_dir = make_private_dir(m.dir, "c-floor_files");
        {
            floor_files writer(floor_dir, false, file_bytes);
            writer.populate(n, me);
        }
        ::sync();
        sweep("floor_files", [&] { return std::make_unique<floor_files>(floor_dir, m.durable, file_bytes); });
        fs::remove_all(floor_dir);
    }
#endif
    {
        const fs::path dir = make_private_dir(m.dir, "c-sqlite");
        {
            sqlite_backend loader(dir / "registry.sqlite", false);
            loader.populate(n, me);
        }
        ::sync();
        sweep("sqlite", [&] { return std::make_unique<sqlite_backend>(dir / "registry.sqlite", m.durable); });
        fs::remove_all(dir);
    }

    for (const std::string storage : {"json_table", "record_files"}) {
        if (!ops.count(storage)) continue;
        const std::string floor_name = storage == "json_table" ? "floor_table" : "floor_files";
        for (const int procs : cfg.procs) {
            measurement row;
            row.storage = storage;
            row.medium = m.name;
            row.op = "insert+erase";
            row.n = n;
            row.procs = procs;
            row.ops_per_s = ops[storage][procs];
            if (ops.count(floor_name)) row.floor_ops_per_s = ops[floor_name][procs];
            if (ops.count("sqlite")) row.sqlite_ops_per_s = ops["sqlite"][procs];
            // Mean time per operation seen by one process, for the latency columns.
            row.procreg_us = 1e6 * procs / *row.ops_per_s;
            if (row.floor_ops_per_s) row.floor_us = 1e6 * procs / *row.floor_ops_per_s;
            if (row.sqlite_ops_per_s) row.sqlite_us = 1e6 * procs / *row.sqlite_ops_per_s;
            out.push_back(row);
        }
    }
    return out;
}

// ---------------------------------------------------------------------------
// Single-holder claims (storage::claim_file): acquire and release.
// ---------------------------------------------------------------------------
#ifdef PROCREG_BENCH_HAVE_CLAIMS
std::vector<measurement> measure_claims(const config& cfg, const medium& m) {
    std::vector<measurement> out;
    const sampling how = sampling_for(cfg, 1);
    const fs::path dir = make_private_dir(m.dir, "claims");
    struct claimant {
        std::string name;
        std::function<void()> acquire, release;
        std::vector<double> acquired, released;
    };
    std::vector<claimant> all;

    // procreg: trusty-memory's daemon lock (claim_file, pid text format).
    auto opts = procreg::trusty::options(dir / "procreg" / "daemon.lock");
    opts.durable = m.durable;
    auto claim = procreg::trusty::open(opts);
    std::optional<procreg::trusty::daemon_lock> held;
    const procreg::trusty::daemon_lock_record me{static_cast<std::uint32_t>(::getpid())};
    all.push_back({"procreg", [&] { held.emplace(claim.acquire(me)); },
                   [&] {
                       if (held->release() != procreg::release_status::released) {
                           throw std::runtime_error("claim release failed");
                       }
                       held.reset();
                   },
                   {}, {}});

    // The floor of a claim, the system calls of claim_file's protocol:
    // acquire = lock; look for the claim file; write a temp file, fsync,
    // link it to the claim name, unlink the temp, fsync the directory;
    // unlock. Release = lock; read the claim; rename it to a private
    // name and read it there again (the check that it is still the file
    // that was judged); unlink it; fsync the directory; unlock.
    fs::create_directories(dir / "floor");
    const int dirfd = ::open((dir / "floor").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const std::string lock_path = (dir / "floor" / "daemon.lock.lock").string();
    const std::string text = std::to_string(::getpid()) + "\n";
    std::string buffer(64, '\0');
    const auto lock = [&] {
        const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 || ::flock(fd, LOCK_EX) != 0) fail("floor claim lock");
        return fd;
    };
    const auto sync_dir = [&] {
        if (m.durable && ::fsync(dirfd) != 0) fail("fsync dir");
    };
    const auto read_claim = [&](const char* name) {
        const int fd = ::openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) fail("floor claim read");
        struct ::stat st {};
        ::fstat(fd, &st);
        (void)::read(fd, buffer.data(), buffer.size());
        ::close(fd);
    };
    all.push_back({"floor",
                   [&] {
                       const int lk = lock();
                       const int existing = ::openat(dirfd, "daemon.lock", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                       if (existing >= 0) throw std::runtime_error("floor claim: held");
                       const int fd =
                           ::openat(dirfd, ".daemon.lock.tmp", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                       if (fd < 0 || ::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
                           fail("floor claim write");
                       }
                       if (m.durable && ::fsync(fd) != 0) fail("fsync");
                       ::close(fd);
                       if (::linkat(dirfd, ".daemon.lock.tmp", dirfd, "daemon.lock", 0) != 0) fail("link");
                       ::unlinkat(dirfd, ".daemon.lock.tmp", 0);
                       sync_dir();
                       ::close(lk);
                   },
                   [&] {
                       const int lk = lock();
                       read_claim("daemon.lock");
                       if (::renameat(dirfd, "daemon.lock", dirfd, ".daemon.lock.mine") != 0) fail("rename");
                       read_claim(".daemon.lock.mine");
                       if (::unlinkat(dirfd, ".daemon.lock.mine", 0) != 0) fail("unlink");
                       sync_dir();
                       ::close(lk);
                   },
                   {}, {}});

    // SQLite: one row per claim; acquire inserts it (the primary key refuses
    // a second holder), release deletes it.
    sqlite_backend db(dir / "claims.sqlite", m.durable);
    const auto holder = make_record("daemon", static_cast<std::uint32_t>(::getpid()));
    all.push_back({"sqlite", [&] { db.insert(holder); }, [&] { db.erase("daemon"); }, {}, {}});

    // Interleaved, as run_ops does.
    for (auto& c : all) {
        c.acquire();
        c.release();
    }
    const auto start = clock_type::now();
    const double budget = 2 * how.budget_s * static_cast<double>(all.size());
    while (static_cast<int>(all[0].acquired.size()) < how.max_reps) {
        if (static_cast<int>(all[0].acquired.size()) >= how.min_reps && seconds_since(start) > budget) break;
        for (auto& c : all) {
            const auto t0 = clock_type::now();
            c.acquire();
            const auto t1 = clock_type::now();
            c.release();
            const auto t2 = clock_type::now();
            c.acquired.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
            c.released.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
        }
    }
    ::close(dirfd);
    for (const std::string op : {"acquire", "release"}) {
        measurement row;
        row.storage = "claim_file";
        row.medium = m.name;
        row.op = op;
        row.n = 1;
        const bool first = op == "acquire";
        row.procreg_us = median_of(first ? all[0].acquired : all[0].released);
        row.floor_us = median_of(first ? all[1].acquired : all[1].released);
        row.sqlite_us = median_of(first ? all[2].acquired : all[2].released);
        row.procreg_reps = static_cast<int>(all[0].acquired.size());
        out.push_back(row);
    }
    fs::remove_all(dir);
    return out;
}
#endif

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

void write_json(const fs::path& path, const std::vector<measurement>& rows) {
    fs::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::trunc);
    out << "[\n";
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& r = rows[i];
        out << "  {\"storage\": " << json_string(r.storage) << ", \"medium\": " << json_string(r.medium)
            << ", \"op\": " << json_string(r.op) << ", \"n\": " << r.n
            << ", \"procreg_us\": " << json_number(r.procreg_us) << ", \"floor_us\": " << json_number(r.floor_us)
            << ", \"sqlite_us\": " << json_number(r.sqlite_us) << ", \"seed_us\": " << json_number(r.seed_us);
        if (r.procreg_reps) out << ", \"reps\": " << r.procreg_reps;
        if (r.procs) {
            out << ", \"procs\": " << *r.procs << ", \"ops_per_s\": " << json_number(r.ops_per_s)
                << ", \"floor_ops_per_s\": " << json_number(r.floor_ops_per_s)
                << ", \"sqlite_ops_per_s\": " << json_number(r.sqlite_ops_per_s);
        }
        out << "}" << (i + 1 < rows.size() ? "," : "") << "\n";
    }
    out << "]\n";
    if (!out) throw std::runtime_error("cannot write " + path.string());
}

void write_machine(const fs::path& path, const machine_info& info, const std::vector<medium>& media) {
    std::ofstream out(path, std::ios::trunc);
    out << "{\"cpus\": " << info.cpus << ", \"cpu_model\": " << json_string(info.cpu_model)
        << ", \"kernel\": " << json_string(info.kernel) << ", \"memory\": " << json_string(info.memory)
        << ", \"sqlite\": " << json_string(sqlite3_libversion()) << ", \"media\": [";
    for (std::size_t i = 0; i < media.size(); ++i) {
        out << (i ? ", " : "") << "{\"medium\": " << json_string(media[i].name)
            << ", \"dir\": " << json_string(media[i].dir.string())
            << ", \"filesystem\": " << json_string(media[i].fs_type)
            << ", \"fsync\": " << (media[i].durable ? "true" : "false") << "}";
    }
    out << "]}\n";
}

void print_tables(const std::vector<measurement>& rows, const std::vector<medium>& media) {
    for (const auto& m : media) {
        std::cout << "\n### " << m.name << " (" << m.fs_type << ", fsync " << (m.durable ? "on" : "off")
                  << "): median µs per operation\n\n";
        std::cout << "| storage | op | N | procreg µs | floor µs | SQLite µs | seed µs | procreg/floor | procreg/SQLite | "
                     "procreg/seed |\n";
        std::cout << "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        for (const auto& r : rows) {
            if (r.medium != m.name || r.procs) continue;
            std::cout << "| " << r.storage << " | " << r.op << " | " << r.n << " | " << cell(r.procreg_us) << " | "
                      << cell(r.floor_us) << " | " << cell(r.sqlite_us) << " | " << cell(r.seed_us) << " | "
                      << ratio_cell(r.procreg_us, r.floor_us) << " | " << ratio_cell(r.procreg_us, r.sqlite_us) << " | "
                      << ratio_cell(r.procreg_us, r.seed_us) << " |\n";
        }
        bool any = false;
        for (const auto& r : rows) any = any || (r.medium == m.name && r.procs);
        if (!any) continue;
        std::cout << "\n### " << m.name << ": contention, insert+erase, total operations per second\n\n";
        std::cout << "| storage | N | procs | procreg ops/s | floor ops/s | SQLite ops/s |\n";
        std::cout << "|---|---:|---:|---:|---:|---:|\n";
        for (const auto& r : rows) {
            if (r.medium != m.name || !r.procs) continue;
            std::cout << "| " << r.storage << " | " << r.n << " | " << *r.procs << " | " << cell(r.ops_per_s) << " | "
                      << cell(r.floor_ops_per_s) << " | " << cell(r.sqlite_ops_per_s) << " |\n";
        }
    }
}

// The targets, checked against this run's figures.
void print_targets(const std::vector<measurement>& rows) {
    const auto find = [&](const std::string& storage, const std::string& medium, const std::string& op,
                          std::uint64_t n) -> const measurement* {
        for (const auto& r : rows) {
            if (!r.procs && r.storage == storage && r.medium == medium && r.op == op && r.n == n) return &r;
        }
        return nullptr;
    };
    std::vector<std::uint64_t> ns;
    for (const auto& r : rows) {
        if (!r.procs && r.storage != "claim_file" && std::find(ns.begin(), ns.end(), r.n) == ns.end()) ns.push_back(r.n);
    }
    std::sort(ns.begin(), ns.end());
    int met = 0, missed = 0;
    std::cout << "\n### Targets\n\n| target | figure | limit | result |\n|---|---:|---:|---|\n";
    const auto check = [&](const std::string& what, std::optional<double> a, std::optional<double> b, double limit) {
        if (!a || !b) return;
        const double ratio = *a / *b;
        const bool ok = ratio <= limit;
        (ok ? met : missed)++;
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.2f×", ratio);
        char lim[32];
        std::snprintf(lim, sizeof lim, "≤ %.2f×", limit);
        std::cout << "| " << what << " | " << buf << " | " << lim << " | " << (ok ? "met" : "MISSED") << " |\n";
    };
    for (const auto n : ns) {
        if (const auto* r = find("json_table", "tmpfs", "insert", n)) {
            if (n == 100) check("json_table insert N=100, tmpfs, vs floor", r->procreg_us, r->floor_us, 1.5);
            if (n >= 10000) {
                check("json_table insert N=" + std::to_string(n) + ", tmpfs, vs floor", r->procreg_us, r->floor_us, 2.0);
            }
        }
    }
    for (const std::string op : {"insert", "erase"}) {
        for (const auto n : ns) {
            if (const auto* r = find("record_files", "tmpfs", op, n)) {
                check("record_files " + op + " N=" + std::to_string(n) + ", tmpfs, vs SQLite", r->procreg_us,
                      r->sqlite_us, 1.0);
            }
        }
    }
    for (const std::string op : {"insert", "erase"}) {
        for (const auto n : ns) {
            if (const auto* r = find("record_files", "disk", op, n)) {
                check("record_files " + op + " N=" + std::to_string(n) + ", disk+fsync, vs floor", r->procreg_us,
                      r->floor_us, 1.1);
            }
        }
    }
    // Issue 17: json_table's list and reap against the seed's scan_and_gc.
    for (const std::string op : {"list", "reap"}) {
        for (const auto n : ns) {
            if (n < 1000) continue;
            if (const auto* r = find("json_table", "tmpfs", op, n)) {
                check("json_table " + op + " N=" + std::to_string(n) + ", tmpfs, vs the seed's scan_and_gc",
                      r->procreg_us, r->seed_us, 0.25);
            }
        }
    }
    for (const std::string medium : {"tmpfs", "disk"}) {
        for (const auto n : ns) {
            const auto* with = find("json_table", medium, "find", n);
            const auto* without = find("json_table_nocache", medium, "find", n);
            if (with && without && with->procreg_us && without->procreg_us) {
                char buf[160];
                std::snprintf(buf, sizeof buf,
                              "| unchanged-file shortcut, find N=%llu, %s | %.1f µs instead of %.1f µs | | %.1f× faster |\n",
                              static_cast<unsigned long long>(n), medium.c_str(), *with->procreg_us,
                              *without->procreg_us, *without->procreg_us / *with->procreg_us);
                std::cout << buf;
            }
        }
    }
    std::cout << "\n" << met << " targets met, " << missed << " missed\n";
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

fs::path executable_dir() {
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    return ec ? fs::current_path() : self.parent_path();
}

fs::path default_tmpfs_parent() {
    if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg && filesystem_type(xdg) == "tmpfs") return xdg;
    return "/dev/shm";
}

config parse_args(int argc, char** argv) {
    config cfg;
    cfg.tmpfs_parent = default_tmpfs_parent();
    cfg.disk_parent = executable_dir();
    cfg.out = executable_dir() / "results.json";
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::runtime_error(arg + " needs a value");
            return argv[++i];
        };
        if (arg == "--quick") {
            cfg.ns = {10, 100, 1000, 10000};
            cfg.budget_s = 0.1;
            cfg.contention_s = 0.3;
        } else if (arg == "--n") {
            cfg.ns.clear();
            for (const auto& item : split(value())) cfg.ns.push_back(std::stoull(item));
        } else if (arg == "--media") {
            cfg.media = split(value());
        } else if (arg == "--storages") {
            const auto list = split(value());
            cfg.storages = std::set<std::string>(list.begin(), list.end());
        } else if (arg == "--budget") {
            cfg.budget_s = std::stod(value());
        } else if (arg == "--no-contention") {
            cfg.contention = false;
        } else if (arg == "--no-claims") {
            cfg.claims = false;
        } else if (arg == "--tmpfs-dir") {
            cfg.tmpfs_parent = value();
        } else if (arg == "--disk-dir") {
            cfg.disk_parent = value();
        } else if (arg == "--out") {
            cfg.out = value();
        } else if (arg == "-h" || arg == "--help") {
            std::cout << "usage: procreg_bench [--quick] [--n 10,100,...] [--media tmpfs,disk] "
                         "[--storages json_table,json_table_nocache,record_files] [--budget SECONDS] "
                         "[--no-contention] [--no-claims] [--tmpfs-dir DIR] [--disk-dir DIR] [--out FILE]\n";
            std::exit(0);
        } else {
            throw std::runtime_error("unknown argument " + arg + " (see --help)");
        }
    }
    return cfg;
}

int run(int argc, char** argv) {
    config cfg = parse_args(argc, argv);
    const std::string seed_missing = seed_unavailable();
    if (seed_missing.empty()) cfg.seed = seed_program();
    const auto machine = describe_machine();
    std::vector<medium> media;
    for (const auto& name : cfg.media) {
        if (name != "tmpfs" && name != "disk") throw std::runtime_error("unknown medium " + name);
        const bool tmpfs = name == "tmpfs";
        medium m{name, make_private_dir(tmpfs ? cfg.tmpfs_parent : cfg.disk_parent / "data", "procreg-bench"),
                 !tmpfs, ""};
        m.fs_type = filesystem_type(m.dir);
        if (tmpfs && m.fs_type != "tmpfs") std::cerr << "warning: " << m.dir << " is not on tmpfs but " << m.fs_type << "\n";
        if (!tmpfs && m.fs_type == "tmpfs") std::cerr << "warning: the disk directory " << m.dir << " is on tmpfs\n";
        media.push_back(m);
    }
    std::cout << "## procreg_bench\n\nmachine: " << machine.cpus << " CPUs, " << machine.cpu_model << ", "
              << machine.kernel << ", " << machine.memory << "; SQLite " << sqlite3_libversion() << "\n";
    for (const auto& m : media) {
        std::cout << "- " << m.name << ": " << m.dir.string() << " (" << m.fs_type << "), fsync "
                  << (m.durable ? "on" : "off") << "\n";
    }
    std::cout << "- seed (algocline's Rust code, release): " << (cfg.seed.empty() ? "MISSING" : cfg.seed) << "\n";
    if (!seed_missing.empty()) shout_seed_unavailable(seed_missing);
#ifndef PROCREG_BENCH_HAVE_RECORD_FILES
    std::cout << "- record_files: not available in this tree (no procreg/storage/record_files.hpp), skipped\n";
#endif
#ifndef PROCREG_BENCH_HAVE_CLAIMS
    std::cout << "- claims: not available in this tree (no procreg/presets/trusty.hpp), skipped\n";
#endif
    std::cout.flush();

    std::vector<measurement> rows;
    std::uint64_t serial = 0;
    const auto total_start = clock_type::now();
    try {
        for (const auto& m : media) {
            // Contention and claims first: on the disk, the largest N is the
            // slowest part and leaves the most work for the disk afterwards.
#ifdef PROCREG_BENCH_HAVE_CLAIMS
            if (cfg.claims) {
                for (auto& row : measure_claims(cfg, m)) rows.push_back(row);
            }
#endif
            if (cfg.contention) {
                const auto start = clock_type::now();
                for (auto& row : measure_contention(cfg, m)) rows.push_back(row);
                std::cerr << "  " << m.name << " contention: " << seconds_since(start) << " s\n";
            }
            for (const auto n : cfg.ns) {
                const auto start = clock_type::now();
                const n_figures figures = measure_n(cfg, m, n, serial);
                for (const std::string storage : {"json_table", "json_table_nocache", "record_files"}) {
                    const auto mine = figures.by_backend.find(storage);
                    if (mine == figures.by_backend.end()) continue;
                    const std::string floor_name = storage == "record_files" ? "floor_files" : "floor_table";
                    const auto floor = figures.by_backend.find(floor_name);
                    const auto sqlite = figures.by_backend.find("sqlite");
                    for (const auto& op : all_ops) {
                        measurement row;
                        row.storage = storage;
                        row.medium = m.name;
                        row.op = op;
                        row.n = n;
                        row.procreg_us = mine->second.at(op).first;
                        row.procreg_reps = mine->second.at(op).second;
                        if (floor != figures.by_backend.end()) row.floor_us = floor->second.at(op).first;
                        if (sqlite != figures.by_backend.end()) row.sqlite_us = sqlite->second.at(op).first;
                        const auto seed = figures.by_backend.find("seed");
                        if (storage != "record_files" && seed != figures.by_backend.end()) {
                            row.seed_us = seed->second.at(op).first;
                        }
                        rows.push_back(row);
                    }
                }
                std::cerr << "  " << m.name << " N=" << n << ": " << seconds_since(start) << " s\n";
            }
        }
    } catch (...) {
        for (const auto& m : media) fs::remove_all(m.dir);
        throw;
    }
    for (const auto& m : media) fs::remove_all(m.dir);

    print_tables(rows, media);
    print_targets(rows);
    write_json(cfg.out, rows);
    write_machine(cfg.out.parent_path() / "machine.json", machine, media);
    std::cout << "\nwrote " << cfg.out.string() << " (" << rows.size() << " measurements) in "
              << static_cast<int>(seconds_since(total_start)) << " s\n";
    if (!seed_missing.empty()) shout_seed_unavailable(seed_missing);
    bool kept = false;
    for (const auto n : cfg.ns) kept = kept || fs::exists(kept_records_dir(cfg, n));
    if (kept) {
        std::cout << "(record directories for N >= " << keep_records_from << " are kept under "
                  << (cfg.disk_parent / "data").string() << " for the next run; remove them to reclaim the space)\n";
    }
    return 0;
}

}  // namespace
}  // namespace procreg_bench

int main(int argc, char** argv) {
    try {
        return procreg_bench::run(argc, argv);
    } catch (const std::exception& e) {
        std::cerr << "procreg_bench: " << e.what() << "\n";
        return 1;
    }
}
