// Multi-process load with SIGKILLs, on every storage under both lock
// policies: 10 worker processes × 500 mixed operations each, two of them
// SIGKILLed at random moments. Afterwards the registry must hold exactly
// what the acknowledged operations imply: nothing lost, nothing duplicated.
//
// How the expected state is computable despite the kills:
// - each worker owns its keys ("w3-k17"), inserts, upserts (version + 1)
//   and erases only those, and writes each operation to its own log: an
//   intent line before the call, a done line after it returns. A worker
//   killed mid-operation leaves one intent without a done line: that one
//   operation may or may not have been applied, and only it;
// - live records carry the test process's pid, so no reap removes them;
//   "garbage" records carry a dead pid, and each reap logs the keys it
//   removed: an acknowledged reap's keys must be gone, a garbage key no
//   acknowledged reap removed must still be there (unless a killed worker
//   was reaping), and no key may be reaped twice;
// - one claim (procreg::claim on the key "claim", with the worker's own
//   pid) is acquired and released by everyone; a shared O_APPEND log gets
//   "A w" after an acquire returns, "R w" before a release starts, and the
//   parent writes "K w" before it kills w. Mutual exclusion means every
//   "A" follows an "R" or "K" of the previous holder.
// The claim_file storage holds one record only, so its workers run the
// claim operations alone (stale takeover of killed holders included).
//
// Operations per second are reported (BOOST_TEST_MESSAGE); see
// docs/reliability.md. PROCREG_RELIABILITY_SCALE scales the operations.
#define BOOST_TEST_MODULE load
#include <boost/test/unit_test.hpp>

#include <procreg/claim.hpp>
#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/presets/trusty.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/json_table.hpp>
#include <procreg/storage/record_files.hpp>

#include "../support/fault_driver.hpp"
#include "../support/lock_kinds.hpp"

#include <boost/describe/class.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace procreg_test::faults;

namespace load_test {
/// A record of the load: its owner's key space, a pid deciding liveness, a version.
struct item {
    std::string key;
    std::uint32_t pid = 0;
    std::uint64_t version = 0;
    std::string owner;
};
BOOST_DESCRIBE_STRUCT(item, (), (key, pid, version, owner))
}  // namespace load_test

template <>
struct procreg::record_traits<load_test::item> {
    static std::string_view key(const load_test::item& r) noexcept { return r.key; }
    static std::uint32_t pid(const load_test::item& r) noexcept { return r.pid; }
};

BOOST_TEST_GLOBAL_FIXTURE(fast_tmpdir);

namespace {

using load_test::item;

constexpr int workers = 10;
constexpr int victims = 2;

const std::uint32_t live_pid = static_cast<std::uint32_t>(::getpid());
const std::uint32_t gone_pid = static_cast<std::uint32_t>(procreg_test::dead_pid());

int ops_per_worker() {
    const int n = static_cast<int>(500 * reliability_scale());
    return n < 20 ? 20 : n;
}

// ── logs ─────────────────────────────────────────────────────────────────────

class append_log {
public:
    explicit append_log(const fs::path& path)
        : fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) {
        if (fd_ < 0) throw std::runtime_error("cannot open " + path.string());
    }
    ~append_log() { ::close(fd_); }
    append_log(const append_log&) = delete;
    append_log& operator=(const append_log&) = delete;
    // One write(2) per line: O_APPEND makes it atomic among processes.
    void line(const std::string& text) const {
        const std::string out = text + "\n";
        if (::write(fd_, out.data(), out.size()) != static_cast<ssize_t>(out.size())) std::abort();
    }

private:
    int fd_;
};

// Worker w's own log (intent and done lines).
fs::path log_of(const fs::path& dir, int w) { return dir / ("w" + std::to_string(w) + ".log"); }

std::vector<std::string> read_lines(const fs::path& path) {
    std::vector<std::string> out;
    if (!fs::exists(path)) return out;
    std::istringstream in(procreg_test::read_text(path));
    std::string line;
    while (std::getline(in, line)) out.push_back(line);
    return out;
}

std::vector<std::string> words(const std::string& line) {
    std::istringstream in(line);
    std::vector<std::string> out;
    std::string w;
    while (in >> w) out.push_back(w);
    return out;
}

// ── the storages under test ──────────────────────────────────────────────────

struct json_table_storage {
    static constexpr const char* name = "json_table";
    template <class Lock>
    using registry = procreg::registry<item, Lock, procreg::storage::json_table, procreg::liveness::kill_liveness>;
    static procreg::storage::json_table make(const fs::path& dir) {
        procreg::storage::json_table_options opts;
        opts.file = dir / "reg" / "table.json";
        opts.array_key = "records";
        return procreg::storage::json_table(opts);
    }
    static fs::path lock_path(const fs::path& dir) { return dir / "reg" / "table.lock"; }
};

struct record_files_storage {
    static constexpr const char* name = "record_files";
    template <class Lock>
    using registry = procreg::registry<item, Lock, procreg::storage::record_files, procreg::liveness::kill_liveness>;
    static procreg::storage::record_files make(const fs::path& dir) {
        procreg::storage::record_files_options opts;
        opts.root = dir / "reg";
        return procreg::storage::record_files(opts);
    }
    static fs::path lock_path(const fs::path& dir) { return dir / "reg" / ".registry.lock"; }
};

// ── what a worker does ───────────────────────────────────────────────────────

// A victim runs like the others until the parent kills it; one is killed
// at a random operation, the other while it holds the claim (from
// `hold_from` on it stops releasing), so that a dead holder's claim is
// taken over or reaped. If the parent has not killed a victim by the end
// of its operations, it waits (still holding) for the kill.
enum class role { normal, killed_anywhere, killed_holding };

struct assignment {
    role part = role::normal;
    long hold_from = 0;
};

// The claim protocol shared by all storages: acquire when not holding,
// release when holding, with the shared log written around the calls.
// Returns false when the claim turns out not to be this holder's.
template <class Claim>
bool claim_step(Claim& claim, std::optional<typename Claim::handle>& held, const typename Claim::record_type& record,
                int w, const append_log& mine, const append_log& claims, long seq) {
    if (held) {
        // Still ours? (read under the lock; nobody may have taken it over)
        const auto holder = claim.holder();
        if (!holder || procreg::detail::pid_of(*holder) != procreg::detail::pid_of(record)) return false;
        mine.line("B " + std::to_string(seq) + " rel");
        claims.line("R " + std::to_string(w));
        const auto status = held->release();
        held.reset();
        mine.line("D " + std::to_string(seq) + " " + procreg::to_string(status));
    } else {
        mine.line("B " + std::to_string(seq) + " acq");
        std::error_code ec;
        auto handle = claim.acquire(record, ec);
        if (handle) {
            held.emplace(std::move(*handle));
            claims.line("A " + std::to_string(w));
            mine.line("D " + std::to_string(seq) + " acquired");
        } else {
            if (ec != procreg::errc::in_use) throw std::runtime_error("acquire: " + ec.message());
            mine.line("D " + std::to_string(seq) + " busy");
        }
    }
    return true;
}

// Checks, under the lock, that the claim is still this holder's (an operation of its own).
template <class Claim>
bool check_holding(Claim& claim, const typename Claim::record_type& record, const append_log& mine, long seq) {
    mine.line("B " + std::to_string(seq) + " check");
    const auto holder = claim.holder();
    if (!holder || procreg::detail::pid_of(*holder) != procreg::detail::pid_of(record)) return false;
    mine.line("D " + std::to_string(seq) + " holding");
    return true;
}

// The end of a victim's run: hold the claim (acquiring it if need be) until killed.
template <class Claim>
int wait_for_the_kill(Claim& claim, std::optional<typename Claim::handle>& held,
                      const typename Claim::record_type& record, int w, const append_log& mine,
                      const append_log& claims, long seq) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
        if (held) {
            if (!check_holding(claim, record, mine, seq++)) return 5;
        } else if (!claim_step(claim, held, record, w, mine, claims, seq++)) {
            return 5;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return 6;  // never killed
}

template <class Storage, class Kind>
int run_worker(const fs::path& dir, int w, int ops, assignment job) {
    using registry_t = typename Storage::template registry<typename Kind::type>;
    auto reg = std::make_shared<registry_t>(Storage::make(dir));
    procreg::claim<registry_t, procreg::on_destroy::keep> claim(reg, "claim");
    std::optional<typename decltype(claim)::handle> held;
    const append_log mine(log_of(dir, w));
    const append_log claims(dir / "claim.log");
    const item claim_record{"claim", static_cast<std::uint32_t>(::getpid()), 0, "w" + std::to_string(w)};
    std::mt19937 rng(static_cast<unsigned>(w * 7919 + 17));
    std::map<std::string, std::uint64_t> live;  // my live keys and their versions, as acknowledged
    long next_key = 0;
    const std::string prefix = "w" + std::to_string(w) + "-";
    for (long seq = 0; seq < ops; ++seq) {
        const int dice = static_cast<int>(rng() % 100);
        const auto pick = [&] {
            auto it = live.begin();
            std::advance(it, static_cast<long>(rng() % live.size()));
            return it;
        };
        const std::string s = std::to_string(seq);
        if (dice < 10) {
            if (held && job.part == role::killed_holding && seq >= job.hold_from) {
                if (!check_holding(claim, claim_record, mine, seq)) return 5;
            } else if (!claim_step(claim, held, claim_record, w, mine, claims, seq)) {
                return 5;
            }
        } else if (dice < 17) {
            mine.line("B " + s + " reap");
            const auto removed = reg->reap();
            std::string keys;
            for (const auto& r : removed) keys += " " + r.key;
            mine.line("D " + s + " reaped" + keys);
        } else if (dice < 25) {
            const std::string key = prefix + "d" + std::to_string(next_key++);
            mine.line("B " + s + " garbage " + key);
            reg->insert(item{key, gone_pid, 1, prefix});
            mine.line("D " + s + " ok");
        } else if (dice < 45 && !live.empty()) {
            const auto it = pick();
            mine.line("B " + s + " erase " + it->first);
            if (!reg->erase(it->first)) return 3;  // my own key must be there
            mine.line("D " + s + " ok");
            live.erase(it);
        } else if (dice < 75 && !live.empty()) {
            const auto it = pick();
            mine.line("B " + s + " upsert " + it->first + " " + std::to_string(it->second + 1));
            const auto result = reg->upsert(item{it->first, live_pid, it->second + 1, prefix});
            if (result.status != procreg::upsert_status::replaced) return 4;
            mine.line("D " + s + " ok");
            ++it->second;
        } else {
            const std::string key = prefix + "k" + std::to_string(next_key++);
            mine.line("B " + s + " insert " + key);
            reg->insert(item{key, live_pid, 1, prefix});
            mine.line("D " + s + " ok");
            live[key] = 1;
        }
    }
    if (job.part != role::normal) return wait_for_the_kill(claim, held, claim_record, w, mine, claims, ops);
    if (held && !claim_step(claim, held, claim_record, w, mine, claims, ops)) return 5;  // never leave holding
    return 0;
}

// The claim_file storage (trusty's pid-text daemon lock) holds one record:
// its workers only acquire and release, and take over killed holders.
template <class Kind>
using claim_registry = procreg::registry<procreg::trusty::daemon_lock_record, typename Kind::type,
                                         procreg::trusty::lock_file_storage, procreg::liveness::kill_liveness>;

fs::path claim_file_of(const fs::path& dir) { return dir / "reg" / "daemon.lock"; }

template <class Kind>
int run_claim_worker(const fs::path& dir, int w, int ops, assignment job) {
    auto reg = std::make_shared<claim_registry<Kind>>(
        procreg::trusty::lock_file_storage(procreg::trusty::options(claim_file_of(dir))));
    procreg::claim<claim_registry<Kind>, procreg::on_destroy::keep> claim(reg, procreg::trusty::claim_key);
    std::optional<typename decltype(claim)::handle> held;
    const append_log mine(log_of(dir, w));
    const append_log claims(dir / "claim.log");
    const procreg::trusty::daemon_lock_record record{static_cast<std::uint32_t>(::getpid())};
    std::mt19937 rng(static_cast<unsigned>(w * 7919 + 17));
    for (long seq = 0; seq < ops; ++seq) {
        const bool keep = job.part == role::killed_holding && seq >= job.hold_from;
        if (held && (keep || rng() % 4 != 0)) {
            // Hold it for a few operations, each checking that it is still ours.
            if (!check_holding(claim, record, mine, seq)) return 5;
            continue;
        }
        if (!claim_step(claim, held, record, w, mine, claims, seq)) return 5;
        // A refused contender backs off a little, as a daemon's retry loop
        // would, instead of burning its operations while one holder works.
        if (!held) std::this_thread::sleep_for(std::chrono::microseconds(100 + rng() % 200));
    }
    if (job.part != role::normal) return wait_for_the_kill(claim, held, record, w, mine, claims, ops);
    if (held && !claim_step(claim, held, record, w, mine, claims, ops)) return 5;
    return 0;
}

// ── the parent: start, kill, check ───────────────────────────────────────────

struct run_result {
    std::vector<pid_t> pids;
    std::set<int> killed;                   // worker indices SIGKILLed mid-run
    long acknowledged = 0;                  // operations with a done line
    double seconds = 0;
};

// Whether worker w's last acknowledged operation left it holding the claim.
bool holds_claim(const fs::path& dir, int w) {
    const auto lines = read_lines(log_of(dir, w));
    for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
        if ((*it)[0] != 'D') continue;
        return it->find(" acquired") != std::string::npos || it->find(" holding") != std::string::npos;
    }
    return false;
}

// Starts the workers together and SIGKILLs `victims` of them once each has
// acknowledged a random number of operations — the first at once, the
// second at the first moment after that it holds the claim, so a stale
// claim is taken over or reaped — then waits for the rest.
template <class Body>
run_result run_workers(const fs::path& dir, Body body) {
    run_result out;
    const int ops = ops_per_worker();
    std::mt19937 rng(static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count()));
    std::map<int, long> targets;  // victim -> acknowledged operations before the kill
    std::vector<assignment> jobs(workers);
    while (static_cast<int>(targets.size()) < victims) {
        const int w = static_cast<int>(rng() % workers);
        if (targets.count(w)) continue;
        jobs[w].part = targets.empty() ? role::killed_anywhere : role::killed_holding;
        // The holder dies in the first half, so the others take its claim over.
        const long span = jobs[w].part == role::killed_holding ? ops / 2 : ops - 10;
        targets[w] = 5 + static_cast<long>(rng() % static_cast<unsigned>(span));
        jobs[w].hold_from = targets[w];
    }
    int gate[2];
    BOOST_TEST_REQUIRE(::pipe(gate) == 0);
    for (int w = 0; w < workers; ++w) {
        out.pids.push_back(procreg_test::spawn([&, w] {
            ::close(gate[1]);
            char byte;
            while (::read(gate[0], &byte, 1) < 0 && errno == EINTR) {
            }
            return body(w, ops, jobs[w]);
        }));
    }
    ::close(gate[0]);
    const append_log claims(dir / "claim.log");
    const auto start = std::chrono::steady_clock::now();
    ::close(gate[1]);  // go
    std::set<int> running;
    for (int w = 0; w < workers; ++w) running.insert(w);
    while (!running.empty()) {
        for (auto it = running.begin(); it != running.end();) {
            const int w = *it;
            int status = 0;
            const pid_t done = ::waitpid(out.pids[w], &status, WNOHANG);
            if (done == out.pids[w]) {
                BOOST_TEST((WIFEXITED(status) && WEXITSTATUS(status) == 0),
                           "worker " << w << " failed: status " << status);
                it = running.erase(it);
                continue;
            }
            const auto target = targets.find(w);
            if (target != targets.end()) {
                long acked = 0;
                for (const auto& line : read_lines(log_of(dir, w))) acked += line[0] == 'D';
                if (acked >= target->second && (jobs[w].part != role::killed_holding || holds_claim(dir, w))) {
                    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 500));
                    claims.line("K " + std::to_string(w));
                    ::kill(out.pids[w], SIGKILL);
                    const int code = procreg_test::wait_exit(out.pids[w]);  // reaped: its pid reads dead from now on
                    if (code == 128 + SIGKILL) out.killed.insert(w);
                    BOOST_TEST((code == 0 || code == 128 + SIGKILL), "victim " << w << " exit " << code);
                    targets.erase(target);
                    it = running.erase(it);
                    continue;
                }
            }
            ++it;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (int w = 0; w < workers; ++w) {
        for (const auto& line : read_lines(log_of(dir, w))) out.acknowledged += line[0] == 'D';
    }
    BOOST_TEST(static_cast<int>(out.killed.size()) == victims, "not every victim was killed");
    return out;
}

// Mutual exclusion of the claim, from the shared log; returns the holder
// the log ends with (-1 for none).
int check_claim_log(const fs::path& dir, const std::set<int>& killed, long& acquisitions, long& takeovers) {
    int holder = -1;
    std::set<int> dead;
    long line_no = 0;
    for (const auto& line : read_lines(dir / "claim.log")) {
        ++line_no;
        const auto w = words(line);
        BOOST_TEST_REQUIRE(w.size() == 2u, "claim.log line " << line_no << ": \"" << line << "\"");
        const int who = std::stoi(w[1]);
        if (w[0] == "K") {
            dead.insert(who);
        } else if (w[0] == "A") {
            BOOST_TEST((holder == -1 || dead.count(holder) == 1),
                       "claim.log line " << line_no << ": " << who << " acquired while " << holder << " held it");
            if (holder != -1) ++takeovers;
            holder = who;
            ++acquisitions;
        } else if (w[0] == "R") {
            BOOST_TEST(holder == who, "claim.log line " << line_no << ": " << who << " released " << holder << "'s claim");
            holder = -1;
        }
    }
    BOOST_TEST((holder == -1 || killed.count(holder) == 1), "the log ends with live holder " << holder);
    return holder;
}

// What one worker's log implies.
struct worker_log {
    std::map<std::string, std::uint64_t> live;      // live keys as acknowledged
    std::set<std::string> garbage;                  // dead-pid keys inserted (acknowledged)
    std::vector<std::string> reaped;                // keys acknowledged reaps removed
    std::vector<std::string> in_flight;             // the words of an intent without a done line
};

worker_log replay(const fs::path& dir, int w) {
    worker_log out;
    std::vector<std::string> intent;
    for (const auto& line : read_lines(log_of(dir, w))) {
        const auto v = words(line);
        if (v.empty()) continue;
        if (v[0] == "B") {
            BOOST_TEST(intent.empty(), "worker " << w << ": two intents in a row");
            intent = v;
            continue;
        }
        BOOST_TEST_REQUIRE((v[0] == "D" && intent.size() >= 3 && v[1] == intent[1]),
                           "worker " << w << ": done line without its intent: " << line);
        const std::string& op = intent[2];
        if (op == "insert") out.live[intent[3]] = 1;
        if (op == "upsert") out.live[intent[3]] = std::stoull(intent[4]);
        if (op == "erase") out.live.erase(intent[3]);
        if (op == "garbage") out.garbage.insert(intent[3]);
        if (op == "reap") out.reaped.insert(out.reaped.end(), v.begin() + 3, v.end());
        intent.clear();
    }
    out.in_flight = intent;
    return out;
}

// The final state of a json_table / record_files run against the logs.
template <class Storage>
void check_records(const fs::path& dir, const run_result& run) {
    using registry_t = typename Storage::template registry<procreg::lock::flock_lock>;
    registry_t reg(Storage::make(dir));  // sweeps temp files of the killed workers
    std::map<std::string, item> on_disk;
    std::size_t skipped = 0;
    reg.transact([&](auto& tx) {
        tx.for_each([&](const item& r) {
            BOOST_TEST(on_disk.emplace(r.key, r).second, "duplicated key " << r.key);
        });
        using session_type = typename registry_t::session_type;
        if constexpr (procreg::detail::session_reports_skipped<session_type>::value) {
            skipped = tx.skipped_files().size();  // a one-file table never skips: it fails
        }
    });
    BOOST_TEST(skipped == 0u, "files that do not parse");
    BOOST_TEST(temp_files_in(dir / "reg").empty(), "temp files survive a reopen");

    std::vector<worker_log> logs;
    for (int w = 0; w < workers; ++w) logs.push_back(replay(dir, w));
    std::set<std::string> known = {"claim"};
    std::map<std::string, int> reap_count;
    bool reap_in_flight = false;
    for (int w = 0; w < workers; ++w) {
        const worker_log& log = logs[static_cast<std::size_t>(w)];
        BOOST_TEST((log.in_flight.empty() || run.killed.count(w) == 1), "worker " << w << " left an operation open");
        const std::string flying_op = log.in_flight.size() >= 3 ? log.in_flight[2] : "";
        const std::string flying_key = log.in_flight.size() >= 4 ? log.in_flight[3] : "";
        reap_in_flight = reap_in_flight || flying_op == "reap";
        for (const auto& key : log.reaped) ++reap_count[key];
        // Live keys: exactly as acknowledged, except the in-flight one, which may be either.
        for (const auto& [key, version] : log.live) {
            known.insert(key);
            const auto found = on_disk.find(key);
            if (key == flying_key) {
                const bool before = found != on_disk.end() && found->second.version == version;
                const bool after = (flying_op == "erase" && found == on_disk.end()) ||
                                   (flying_op == "upsert" && found != on_disk.end() &&
                                    found->second.version == std::stoull(log.in_flight[4]));
                BOOST_TEST((before || after), key << ": neither as acknowledged nor as the in-flight " << flying_op);
                continue;
            }
            BOOST_TEST_REQUIRE((found != on_disk.end()), "lost: " << key << " v" << version);
            BOOST_TEST(found->second.version == version, key << ": version " << found->second.version
                                                                << ", acknowledged " << version);
            BOOST_TEST(found->second.pid == live_pid);
        }
        if (flying_op == "insert") {
            known.insert(flying_key);
            const auto found = on_disk.find(flying_key);
            BOOST_TEST((found == on_disk.end() || found->second.version == 1u), flying_key);
        }
        for (const auto& key : log.garbage) known.insert(key);
        if (flying_op == "garbage") known.insert(flying_key);
    }
    for (const auto& [key, count] : reap_count) {
        if (key == "claim") continue;  // each killed holder's claim is a new record, reaped at most once each
        BOOST_TEST(count == 1, key << " reaped " << count << " times");
        BOOST_TEST(key.find("-d") != std::string::npos, "a live record was reaped: " << key);
    }
    // Garbage keys, once every worker's reaps are counted (any worker may
    // reap any key): reaped ones stay gone, the others are all still there.
    for (const auto& log : logs) {
        for (const auto& key : log.garbage) {
            if (reap_count.count(key) == 1) {
                BOOST_TEST(on_disk.count(key) == 0u, key << " was reaped but is back");
            } else if (!reap_in_flight) {
                BOOST_TEST(on_disk.count(key) == 1u, "lost garbage " << key);
            }
        }
    }
    for (const auto& [key, r] : on_disk) {
        BOOST_TEST(known.count(key) == 1u, "unexpected record " << key);
        if (key == "claim") {
            BOOST_TEST(!procreg::liveness::pid_alive(r.pid), "the claim is held by a live pid after the run");
        }
    }
}

template <class Storage, class Kind>
void load_run() {
    procreg_test::temp_dir dir;
    { auto reg = typename Storage::template registry<typename Kind::type>(Storage::make(dir.path())); }
    const auto run = run_workers(dir.path(), [&](int w, int ops, assignment job) { return run_worker<Storage, Kind>(dir.path(), w, ops, job); });
    long acquisitions = 0;
    long takeovers = 0;
    check_claim_log(dir.path(), run.killed, acquisitions, takeovers);
    check_records<Storage>(dir.path(), run);
    {
        // Whatever a killed holder left is stale: the claim is free for us.
        using registry_t = typename Storage::template registry<typename Kind::type>;
        procreg::claim<registry_t, procreg::on_destroy::keep> claim(std::make_shared<registry_t>(Storage::make(dir.path())),
                                                                    "claim");
        auto mine = claim.acquire(item{"claim", live_pid, 0, "parent"});
        BOOST_TEST((mine.release() == procreg::release_status::released));
    }
    BOOST_TEST_MESSAGE(Storage::name << "/" << Kind::name << ": " << workers << " processes x " << ops_per_worker()
                                     << " ops, " << run.killed.size() << " SIGKILLed; " << run.acknowledged
                                     << " acknowledged ops in " << run.seconds << " s = "
                                     << static_cast<long>(run.acknowledged / run.seconds) << " ops/s; claim acquired "
                                     << acquisitions << " times");
    Kind::cleanup(Storage::lock_path(dir.path()));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(load)

BOOST_AUTO_TEST_CASE_TEMPLATE(json_table_loses_and_duplicates_nothing, Kind, locks::both) {
    load_run<json_table_storage, Kind>();
}

BOOST_AUTO_TEST_CASE_TEMPLATE(record_files_loses_and_duplicates_nothing, Kind, locks::both) {
    load_run<record_files_storage, Kind>();
}

BOOST_AUTO_TEST_CASE_TEMPLATE(claim_file_has_one_holder_at_a_time, Kind, locks::both) {
    procreg_test::temp_dir dir;
    fs::create_directories(dir / "reg");
    const auto run = run_workers(dir.path(), [&](int w, int ops, assignment job) { return run_claim_worker<Kind>(dir.path(), w, ops, job); });
    long acquisitions = 0;
    long takeovers = 0;
    const int holder = check_claim_log(dir.path(), run.killed, acquisitions, takeovers);
    BOOST_TEST(acquisitions > 0);
    // On disk: no claim, or the claim of a killed worker (stale).
    const auto peek = procreg::trusty::lock_file_storage::peek<procreg::trusty::daemon_lock_record>(
        procreg::trusty::options(claim_file_of(dir.path())));
    BOOST_TEST((peek.state != procreg::storage::claim_state::unparseable), peek.reason);
    if (peek.record) {
        bool of_a_victim = false;
        for (const int w : run.killed) of_a_victim = of_a_victim || run.pids[w] == static_cast<pid_t>(peek.record->pid);
        BOOST_TEST(of_a_victim, "the claim names pid " << peek.record->pid << ", not a killed worker");
    }
    if (holder != -1) BOOST_TEST((peek.record && static_cast<pid_t>(peek.record->pid) == run.pids[holder]));
    {
        // Whatever a killed holder left is stale: the claim is free for us.
        procreg::claim<claim_registry<Kind>, procreg::on_destroy::keep> claim(
            std::make_shared<claim_registry<Kind>>(
                procreg::trusty::lock_file_storage(procreg::trusty::options(claim_file_of(dir.path())))),
            procreg::trusty::claim_key);
        auto mine = claim.acquire(procreg::trusty::daemon_lock_record{live_pid});
        BOOST_TEST((mine.release() == procreg::release_status::released));
    }
    { procreg::trusty::lock_file_storage reopen(procreg::trusty::options(claim_file_of(dir.path()))); }
    BOOST_TEST(temp_files_in(dir / "reg").empty(), "temp files survive a reopen");
    BOOST_TEST_MESSAGE("claim_file/" << Kind::name << ": " << workers << " processes x " << ops_per_worker()
                                     << " ops, " << run.killed.size() << " SIGKILLed; " << run.acknowledged
                                     << " acknowledged ops in " << run.seconds << " s = "
                                     << static_cast<long>(run.acknowledged / run.seconds) << " ops/s; "
                                     << acquisitions << " acquisitions, " << takeovers
                                     << " of them after a killed holder");
    Kind::cleanup(dir / "reg" / ".daemon.lock.flock");
}

BOOST_AUTO_TEST_SUITE_END()
