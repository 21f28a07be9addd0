// tests/interop/interop_test.cpp — procreg and the seeds' own Rust code share one registry.
//
// For each seed, `seedio` (tests/interop/rust: the seed's Rust types and
// load/save code) writes files that the procreg preset must read field for
// field, and reads files the preset wrote, comparing every field with what
// the test expects (it exits 1 naming the difference). Locks and claims are
// checked across the language boundary too: a Rust holder is refused by
// procreg and the other way round, and each side takes over the other's
// stale claim. Real processes throughout; no timings (a child's "ready" line
// is awaited with a generous bound only so a broken child cannot hang the
// suite).
//
// The path of seedio comes from CMake (PROCREG_SEEDIO); the program must
// exist: a missing one fails every case instead of skipping.
#define BOOST_TEST_MODULE interop
#include <boost/test/unit_test.hpp>

#include <procreg/liveness/pidfd_liveness.hpp>
#include <procreg/presets/agentmux.hpp>
#include <procreg/presets/algocline.hpp>
#include <procreg/presets/insomnia.hpp>
#include <procreg/presets/trusty.hpp>
#include <procreg/presets/yoi.hpp>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PROCREG_SEEDIO
#error "PROCREG_SEEDIO (the path of the seedio program) must be defined by the build"
#endif

extern char** environ;

namespace interop {

namespace fs = std::filesystem;
namespace json = boost::json;
using procreg_test::temp_dir;

/// Exit codes of seedio (see tests/interop/rust/src/main.rs).
constexpr int ok = 0;
constexpr int refused = 3;

std::uint32_t self_pid() { return static_cast<std::uint32_t>(::getpid()); }

/// One finished seedio run.
struct outcome {
    std::string command;
    int code = -1;
    std::string out;
    std::string err;

    /// Everything needed to understand a failure.
    std::string describe() const {
        return command + "\n  exit " + std::to_string(code) + "\n  stdout: " + out + "\n  stderr: " + err;
    }
};

/// A seedio process with pipes to its stdin, stdout and stderr.
class child {
public:
    explicit child(const std::vector<std::string>& args) {
        command_ = PROCREG_SEEDIO;
        for (const auto& a : args) command_ += " '" + a + "'";
        if (::access(PROCREG_SEEDIO, X_OK) != 0) {
            throw std::runtime_error(std::string("seedio is not built or not executable: ") + PROCREG_SEEDIO);
        }
        int in[2], out[2], err[2];
        if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
            throw std::runtime_error("pipe2 failed");
        }
        posix_spawn_file_actions_t actions;
        ::posix_spawn_file_actions_init(&actions);
        ::posix_spawn_file_actions_adddup2(&actions, in[0], 0);
        ::posix_spawn_file_actions_adddup2(&actions, out[1], 1);
        ::posix_spawn_file_actions_adddup2(&actions, err[1], 2);
        std::vector<std::string> argv_storage{PROCREG_SEEDIO};
        argv_storage.insert(argv_storage.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& a : argv_storage) argv.push_back(a.data());
        argv.push_back(nullptr);
        const int rc = ::posix_spawn(&pid_, PROCREG_SEEDIO, &actions, nullptr, argv.data(), environ);
        ::posix_spawn_file_actions_destroy(&actions);
        ::close(in[0]);
        ::close(out[1]);
        ::close(err[1]);
        in_ = in[1];
        out_ = out[0];
        err_ = err[0];
        if (rc != 0) {
            close_all();
            throw std::runtime_error("posix_spawn " + command_ + " failed: " + std::to_string(rc));
        }
    }
    child(const child&) = delete;
    child& operator=(const child&) = delete;
    ~child() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            (void)procreg_test::wait_exit(pid_);
        }
        close_all();
    }

    pid_t pid() const noexcept { return pid_; }

    /// The next line of stdout (without '\n'); empty if the child closed
    /// stdout or nothing came within `limit`.
    std::string read_line(std::chrono::seconds limit = std::chrono::seconds(60)) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (true) {
            const auto nl = out_text_.find('\n');
            if (nl != std::string::npos) {
                std::string line = out_text_.substr(0, nl);
                out_text_.erase(0, nl + 1);
                return line;
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                                    std::chrono::steady_clock::now());
            if (left.count() <= 0) return {};
            pollfd p{out_, POLLIN, 0};
            const int n = ::poll(&p, 1, static_cast<int>(left.count()));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return {};
            char buffer[4096];
            const ssize_t got = ::read(out_, buffer, sizeof buffer);
            if (got <= 0) return {};
            out_text_.append(buffer, static_cast<std::size_t>(got));
        }
    }

    /// Closes stdin, collects the rest of stdout and stderr, waits for exit.
    outcome finish() {
        if (in_ >= 0) {
            ::close(in_);
            in_ = -1;
        }
        outcome result;
        result.command = command_;
        drain(result);
        result.code = procreg_test::wait_exit(pid_);
        pid_ = -1;
        result.out = out_text_ + result.out;
        return result;
    }

private:
    void drain(outcome& result) {
        std::vector<pollfd> fds{{out_, POLLIN, 0}, {err_, POLLIN, 0}};
        int open_count = 2;
        while (open_count > 0) {
            const int n = ::poll(fds.data(), fds.size(), -1);
            if (n < 0) {
                if (errno == EINTR) continue;
                throw std::runtime_error("poll failed");
            }
            for (std::size_t i = 0; i < fds.size(); ++i) {
                if (fds[i].fd < 0 || fds[i].revents == 0) continue;
                char buffer[4096];
                const ssize_t got = ::read(fds[i].fd, buffer, sizeof buffer);
                if (got > 0) {
                    (i == 0 ? result.out : result.err).append(buffer, static_cast<std::size_t>(got));
                } else if (got == 0 || errno != EINTR) {
                    fds[i].fd = -1;
                    --open_count;
                }
            }
        }
    }
    void close_all() {
        for (int* fd : {&in_, &out_, &err_}) {
            if (*fd >= 0) ::close(*fd);
            *fd = -1;
        }
    }

    std::string command_;
    pid_t pid_ = -1;
    int in_ = -1;
    int out_ = -1;
    int err_ = -1;
    std::string out_text_;
};

/// Runs `seedio args...` to completion (stdin closed at once).
outcome seedio(const std::vector<std::string>& args) { return child(args).finish(); }

/// Runs seedio and requires exit code `expected`.
outcome seedio_expect(int expected, const std::vector<std::string>& args) {
    outcome r = seedio(args);
    BOOST_TEST_REQUIRE(r.code == expected, "expected exit " << expected << " from\n" << r.describe());
    return r;
}

/// seedio must succeed.
outcome seedio_ok(const std::vector<std::string>& args) { return seedio_expect(ok, args); }

/// The JSON seedio printed on its first stdout line.
json::value printed(const outcome& r) {
    const auto nl = r.out.find('\n');
    return json::parse(r.out.substr(0, nl));
}

std::string str(const json::value& v) { return std::string(v.as_string().c_str()); }
std::string text(const json::value& v) { return json::serialize(v); }

/// A "ready <pid>" line from a holding child, as its pid.
pid_t ready_pid(child& c) {
    const std::string line = c.read_line();
    if (line.rfind("ready ", 0) != 0) {
        BOOST_FAIL("the Rust holder did not get ready: " << c.finish().describe());
    }
    return static_cast<pid_t>(std::stol(line.substr(6)));
}

bool key_in(const json::object& object, const char* key) { return object.if_contains(key) != nullptr; }

}  // namespace interop

using namespace interop;
namespace algocline = procreg::algocline;
namespace yoi = procreg::yoi;
namespace trusty = procreg::trusty;
namespace insomnia = procreg::insomnia;
namespace agentmux = procreg::agentmux;

BOOST_AUTO_TEST_CASE(seedio_is_built) {
    // Every other case needs it; this one says so by name when it is missing.
    BOOST_TEST_REQUIRE(::access(PROCREG_SEEDIO, X_OK) == 0, "seedio missing: " << PROCREG_SEEDIO);
    const outcome r = seedio({});
    BOOST_TEST(r.code == 2, r.describe());
    BOOST_TEST(r.err.find("usage") != std::string::npos, r.describe());
}

// ===========================================================================
// algocline: registry.json {"sessions": [...]}, flock on registry.lock
// ===========================================================================
BOOST_AUTO_TEST_SUITE(algocline_interop)

json::object session_json(const algocline::pool_session& s) {
    return json::object{{"sid", s.sid},         {"pid", s.pid},
                        {"sock", s.sock},       {"version", s.version},
                        {"created_at", s.created_at}};
}

std::string sessions_json(const std::vector<algocline::pool_session>& sessions) {
    json::array array;
    for (const auto& s : sessions) array.push_back(session_json(s));
    return text(json::object{{"sessions", std::move(array)}});
}

BOOST_AUTO_TEST_CASE(rust_writes_procreg_reads_every_field) {
    temp_dir dir;
    const fs::path file = dir / "pool" / "registry.json";
    const outcome r = seedio_ok({"algocline", "write", file.string(), "sid-rust", std::to_string(self_pid()),
                                 "/tmp/alc-pool/sid-rust.sock", "0.30.0"});
    const json::object written = printed(r).as_object();

    // The seed's save(): directory 0700, file 0600 — which procreg accepts.
    BOOST_TEST(procreg_test::mode_of(file.parent_path()) == 0700u);
    BOOST_TEST(procreg_test::mode_of(file) == 0600u);

    auto reg = algocline::open(file);
    const auto rows = reg.list();
    BOOST_TEST_REQUIRE(rows.size() == 1u);
    const algocline::pool_session& s = rows[0].record;
    BOOST_TEST(s.sid == "sid-rust");
    BOOST_TEST(s.pid == self_pid());
    BOOST_TEST(s.sock == "/tmp/alc-pool/sid-rust.sock");
    BOOST_TEST(s.version == "0.30.0");
    BOOST_TEST(s.created_at == str(written.at("created_at")));
    BOOST_TEST(s.created_at.size() == std::string("2026-01-01T00:00:00Z").size());
    BOOST_TEST(rows[0].alive);
}

// An existing pool directory of this user that is not 0700 (0755, or 0775
// as a umask-002 mkdir leaves it): the seed's save() sets it to 0700 and
// writes; so does the preset, on a copy of the same directory.
BOOST_AUTO_TEST_CASE(both_tighten_an_existing_directory_of_this_user_to_0700) {
    for (const unsigned mode : {0755u, 0775u}) {
        BOOST_TEST_CONTEXT("mode " << std::oct << mode) {
            temp_dir dir;
            const fs::path rust_dir = dir / "rust";
            const fs::path cpp_dir = dir / "cpp";
            for (const auto& pool : {rust_dir, cpp_dir}) {
                fs::create_directory(pool);
                BOOST_TEST_REQUIRE(::chmod(pool.c_str(), mode) == 0);
            }
            seedio_ok({"algocline", "write", (rust_dir / "registry.json").string(), "sid-r", std::to_string(self_pid()),
                       "/tmp/alc-pool/sid-r.sock", "0.30.0"});
            auto reg = algocline::open(cpp_dir / "registry.json");
            reg.insert(algocline::pool_session::make("sid-c", self_pid(), "/tmp/alc-pool/sid-c.sock", "0.30.0"));
            BOOST_TEST(procreg_test::mode_of(rust_dir) == 0700u);
            BOOST_TEST(procreg_test::mode_of(cpp_dir) == 0700u);
            // Each reads the other's registry in the tightened directory.
            BOOST_TEST(algocline::open(rust_dir / "registry.json").list().size() == 1u);
            seedio_ok({"algocline", "dump", (cpp_dir / "registry.json").string()});
        }
    }
}

BOOST_AUTO_TEST_CASE(procreg_writes_rust_reads_every_field) {
    temp_dir dir;
    const fs::path file = dir / "pool" / "registry.json";
    auto reg = algocline::open(file);
    const auto a = algocline::pool_session::make("sid-a", self_pid(), "/tmp/alc-pool/sid-a.sock", "0.30.0");
    const auto b = algocline::pool_session::make("sid-b", 4242, "/tmp/alc-pool/sid-b.sock", "0.31.0-rc.1");
    reg.insert(a);
    reg.insert(b);
    seedio_ok({"algocline", "check", file.string(), sessions_json({a, b})});

    // A mismatch is caught (the check is not vacuous).
    auto wrong = b;
    wrong.version = "0.31.0";
    const outcome bad = seedio_expect(1, {"algocline", "check", file.string(), sessions_json({a, wrong})});
    BOOST_TEST(bad.err.find("differs") != std::string::npos, bad.describe());
}

BOOST_AUTO_TEST_CASE(alternating_writers_share_one_file) {
    // One procreg registry object lives across the Rust program's writes:
    // each of its transactions must see what Rust wrote in between.
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    auto reg = algocline::open(file);
    const auto p1 = algocline::pool_session::make("p1", self_pid(), "/s/p1.sock", "0.30.0");
    reg.insert(p1);
    seedio_ok({"algocline", "write", file.string(), "r1", std::to_string(self_pid()), "/s/r1.sock", "0.30.0"});
    BOOST_TEST_REQUIRE(reg.find("r1").has_value());
    const auto p2 = algocline::pool_session::make("p2", self_pid(), "/s/p2.sock", "0.30.0");
    reg.insert(p2);
    seedio_ok({"algocline", "remove", file.string(), "p1"});
    BOOST_TEST(!reg.find("p1").has_value());
    BOOST_TEST(reg.erase("r1"));
    const json::object r2 = printed(seedio_ok({"algocline", "write", file.string(), "r2", std::to_string(self_pid()),
                                                "/s/r2.sock", "0.30.1"}))
                                .as_object();

    algocline::pool_session r2_session{"r2", self_pid(), "/s/r2.sock", "0.30.1", str(r2.at("created_at"))};
    seedio_ok({"algocline", "check", file.string(), sessions_json({p2, r2_session})});
    std::vector<std::string> keys;
    for (const auto& row : reg.list()) keys.push_back(row.record.sid);
    BOOST_TEST(keys == (std::vector<std::string>{"p2", "r2"}), boost::test_tools::per_element());
    BOOST_TEST((*reg.find("r2") == r2_session));
}

BOOST_AUTO_TEST_CASE(both_take_the_same_lock) {
    // While procreg holds registry.lock (inside a transaction), the seed's
    // flock on the same file is refused; afterwards it succeeds.
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    auto reg = algocline::open(file);
    reg.transact([&](auto& tx) {
        tx.insert(algocline::pool_session::make("held", self_pid(), "/s/held.sock", "0.30.0"));
        const outcome r = seedio_expect(refused, {"algocline", "write", file.string(), "r", std::to_string(self_pid()),
                                                   "/s/r.sock", "0.30.0", "--try-lock"});
        BOOST_TEST(r.err.find("registry.lock") != std::string::npos, r.describe());
    });
    seedio_ok({"algocline", "write", file.string(), "r", std::to_string(self_pid()), "/s/r.sock", "0.30.0",
               "--try-lock"});
    BOOST_TEST(reg.list().size() == 2u);
}

BOOST_AUTO_TEST_CASE(concurrent_rust_and_procreg_writers_lose_nothing) {
    // The seed's test T4 across languages: two Rust processes and this one
    // each add 25 sessions, each in its own lock/load/add/save cycle.
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    auto reg = algocline::open(file);
    constexpr int per_writer = 25;
    child rust_a({"algocline", "write-many", file.string(), "ra-", std::to_string(per_writer),
                  std::to_string(self_pid())});
    child rust_b({"algocline", "write-many", file.string(), "rb-", std::to_string(per_writer),
                  std::to_string(self_pid())});
    for (int i = 0; i < per_writer; ++i) {
        reg.insert(algocline::pool_session::make("c-" + std::to_string(i), self_pid(), "/s/c.sock", "0.30.0"));
    }
    const outcome a = rust_a.finish();
    const outcome b = rust_b.finish();
    BOOST_TEST_REQUIRE(a.code == 0, a.describe());
    BOOST_TEST_REQUIRE(b.code == 0, b.describe());

    std::vector<algocline::pool_session> all;
    std::set<std::string> sids;
    for (const auto& row : reg.list()) {
        all.push_back(row.record);
        sids.insert(row.record.sid);
    }
    BOOST_TEST(all.size() == std::size_t{3 * per_writer});
    BOOST_TEST(sids.size() == std::size_t{3 * per_writer});
    for (int i = 0; i < per_writer; ++i) {
        for (const char* prefix : {"ra-", "rb-", "c-"}) {
            BOOST_TEST(sids.count(prefix + std::to_string(i)) == 1u, prefix << i);
        }
    }
    // And the seed's own reader sees exactly the same table, in the same order.
    seedio_ok({"algocline", "check", file.string(), sessions_json(all)});
}

BOOST_AUTO_TEST_CASE(liveness_agrees_both_ways) {
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    const auto dead = static_cast<std::uint32_t>(procreg_test::dead_pid());
    auto reg = algocline::open(file);

    // procreg writes a live and a dead worker; the seed's scan_and_gc keeps the live one.
    reg.insert(algocline::pool_session::make("live", self_pid(), "/s/live.sock", "0.30.0"));
    reg.insert(algocline::pool_session::make("dead", dead, "/s/dead.sock", "0.30.0"));
    const outcome gc = seedio_ok({"algocline", "gc", file.string()});
    BOOST_TEST(printed(gc) == json::parse(R"(["live"])"), gc.describe());
    BOOST_TEST(reg.list().size() == 1u);

    // Rust writes a dead worker; procreg's reap removes it and only it.
    seedio_ok({"algocline", "write", file.string(), "rust-dead", std::to_string(dead), "/s/rd.sock", "0.30.0"});
    const auto reaped = reg.reap();
    BOOST_TEST_REQUIRE(reaped.size() == 1u);
    BOOST_TEST(reaped[0].sid == "rust-dead");
    BOOST_TEST(reg.find("live").has_value());
}

BOOST_AUTO_TEST_CASE(identity_fields_procreg_adds_are_ignored_by_rust) {
    // With pidfd_liveness procreg stamps procreg_start_time / procreg_boot_id
    // into each record. The seed's serde types ignore unknown keys, so its
    // reader accepts them; its save() rewrites whole structs, so they are gone
    // after a Rust write, and procreg then judges those records by pid alone.
    using pidfd_pool = procreg::registry<algocline::pool_session, procreg::lock::flock_lock,
                                         procreg::storage::json_table, procreg::liveness::pidfd_liveness>;
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    pidfd_pool reg{procreg::storage::json_table(algocline::options(file))};
    const auto mine = algocline::pool_session::make("mine", self_pid(), "/s/mine.sock", "0.30.0");
    reg.insert(mine);
    {
        const json::object top = json::parse(procreg_test::read_text(file)).as_object();
        const json::object& row = top.at("sessions").as_array().at(0).as_object();
        BOOST_TEST_REQUIRE(key_in(row, "procreg_start_time"));
        BOOST_TEST_REQUIRE(key_in(row, "procreg_boot_id"));
    }
    seedio_ok({"algocline", "check", file.string(), sessions_json({mine})});

    const json::object r = printed(seedio_ok({"algocline", "write", file.string(), "rust", std::to_string(self_pid()),
                                               "/s/rust.sock", "0.30.0"}))
                               .as_object();
    {
        const json::object top = json::parse(procreg_test::read_text(file)).as_object();
        const json::object& row = top.at("sessions").as_array().at(0).as_object();
        BOOST_TEST(!key_in(row, "procreg_start_time"));  // the caveat, as it is
    }
    const auto rows = reg.list();
    BOOST_TEST_REQUIRE(rows.size() == 2u);
    BOOST_TEST((rows[0].record == mine));
    BOOST_TEST(rows[0].alive);
    BOOST_TEST(rows[1].record.sid == "rust");
    BOOST_TEST(rows[1].record.created_at == str(r.at("created_at")));
    BOOST_TEST(rows[1].alive);
}

BOOST_AUTO_TEST_SUITE_END()

// ===========================================================================
// yoi: pods.json {"allocations": [...]}
// ===========================================================================
BOOST_AUTO_TEST_SUITE(yoi_interop)

const char* const segment_a = "0b6f6c0e-7f8a-4c55-9a0e-3c1d2b4a5f60";
const char* const segment_c = "5d1c3e2a-9b8f-47a6-8e0d-1f2a3b4c5d6e";

std::string rule(const char* target, const char* permission, bool recursive) {
    return std::string("{\"target\":\"") + target + "\",\"permission\":\"" + permission +
           "\",\"recursive\":" + (recursive ? "true" : "false") + "}";
}

BOOST_AUTO_TEST_CASE(rust_writes_procreg_reads_every_field) {
    temp_dir dir;
    const fs::path file = dir / "pods.json";
    const std::string pid = std::to_string(self_pid());
    seedio_ok({"yoi", "write", file.string(),
               "{\"pod_name\":\"a\",\"pid\":" + pid + ",\"socket\":\"/run/yoi/a.sock\",\"scope_allow\":[" +
                   rule("/src", "write", true) + "," + rule("/docs", "read", false) + "],\"scope_deny\":[" +
                   rule("/src/core", "write", true) + "],\"delegated_from\":null,\"segment_id\":\"" + segment_a +
                   "\"}"});
    seedio_ok({"yoi", "delegate", file.string(),
               "{\"pod_name\":\"b\",\"pid\":" + pid + ",\"socket\":\"/run/yoi/b.sock\",\"scope_allow\":[" +
                   rule("/src/lib", "write", true) + "],\"delegated_from\":\"a\",\"segment_id\":null}"});

    auto reg = yoi::open(file);
    const auto a = reg.find("a");
    const auto b = reg.find("b");
    BOOST_TEST_REQUIRE(a.has_value());
    BOOST_TEST_REQUIRE(b.has_value());
    const yoi::allocation want_a{"a",
                                 self_pid(),
                                 "/run/yoi/a.sock",
                                 {yoi::scope_rule::write("/src", true), yoi::scope_rule::read("/docs", false)},
                                 {yoi::scope_rule::write("/src/core", true)},
                                 std::nullopt,
                                 std::string(segment_a)};
    const yoi::allocation want_b{"b", self_pid(), "/run/yoi/b.sock", {yoi::scope_rule::write("/src/lib", true)},
                                 {},  std::string("a"), std::nullopt};
    BOOST_TEST((*a == want_a));
    BOOST_TEST((*b == want_b));

    // procreg's scope logic works on the Rust-written table: the child's rule
    // is out of the parent's effective write scope, the deny rule too.
    reg.transact([&](auto& tx) {
        BOOST_TEST(yoi::is_within_effective_write(tx, "a", yoi::scope_rule::write("/src/x", true)));
        BOOST_TEST(!yoi::is_within_effective_write(tx, "a", yoi::scope_rule::write("/src/lib", true)));
        BOOST_TEST(!yoi::is_within_effective_write(tx, "a", yoi::scope_rule::write("/src/core", true)));
        BOOST_TEST(yoi::find_by_segment(tx, segment_a)->pod_name == "a");
    });
}

BOOST_AUTO_TEST_CASE(procreg_writes_rust_reads_every_field) {
    temp_dir dir;
    const fs::path file = dir / "pods.json";
    auto reg = yoi::open(file);
    reg.transact([&](auto& tx) {
        yoi::register_pod_with_deny(tx, "a", self_pid(), "/run/yoi/a.sock",
                                    {yoi::scope_rule::write("/src/", true), yoi::scope_rule::read("/docs", false)},
                                    {yoi::scope_rule::write("/src/core", true)}, segment_a);
        yoi::delegate_scope(tx, "a", "b", self_pid(), "/run/yoi/b.sock", {yoi::scope_rule::write("/src/lib", true)},
                            yoi::delegation_scope{{yoi::scope_rule::write("/src", true)}});
    });
    const std::string pid = std::to_string(self_pid());
    const std::string expected =
        "{\"allocations\":["
        "{\"pod_name\":\"a\",\"pid\":" + pid + ",\"socket\":\"/run/yoi/a.sock\",\"scope_allow\":[" +
        rule("/src", "write", true) + "," + rule("/docs", "read", false) + "],\"scope_deny\":[" +
        rule("/src/core", "write", true) + "],\"delegated_from\":null,\"segment_id\":\"" + segment_a +
        "\"},"
        "{\"pod_name\":\"b\",\"pid\":" + pid + ",\"socket\":\"/run/yoi/b.sock\",\"scope_allow\":[" +
        rule("/src/lib", "write", true) + "],\"scope_deny\":[],\"delegated_from\":\"a\",\"segment_id\":null}]}";
    seedio_ok({"yoi", "check", file.string(), expected});
}

BOOST_AUTO_TEST_CASE(rust_release_and_reclaim_on_a_procreg_table) {
    // procreg builds a delegation chain a -> b -> d plus a dead pod c; the
    // seed's reclaim_stale and release_pod rewrite it; procreg reads the result.
    temp_dir dir;
    const fs::path file = dir / "pods.json";
    const auto dead = static_cast<std::uint32_t>(procreg_test::dead_pid());
    auto reg = yoi::open(file);
    reg.transact([&](auto& tx) {
        yoi::register_pod(tx, "a", self_pid(), "/s/a", {yoi::scope_rule::write("/src", true)}, segment_a);
        yoi::delegate_scope(tx, "a", "b", self_pid(), "/s/b", {yoi::scope_rule::write("/src/core", true)},
                            yoi::delegation_scope{{yoi::scope_rule::write("/src", true)}});
        yoi::delegate_scope(tx, "b", "d", self_pid(), "/s/d", {yoi::scope_rule::write("/src/core/x", true)},
                            yoi::delegation_scope{{yoi::scope_rule::write("/src/core", true)}});
        yoi::register_pod(tx, "c", dead, "/s/c", {yoi::scope_rule::write("/docs", true)}, segment_c);
    });
    BOOST_TEST(reg.list().size() == 4u);

    seedio_ok({"yoi", "reclaim-stale", file.string()});
    BOOST_TEST(!reg.find("c").has_value());
    BOOST_TEST(reg.list().size() == 3u);

    seedio_ok({"yoi", "release", file.string(), "b"});
    BOOST_TEST(!reg.find("b").has_value());
    const auto d = reg.find("d");
    BOOST_TEST_REQUIRE(d.has_value());
    BOOST_TEST((d->delegated_from == std::optional<std::string>("a")));
    // The table is still one procreg can extend: a's segment is still held.
    BOOST_CHECK_THROW(reg.transact([&](auto& tx) {
        yoi::register_pod(tx, "e", self_pid(), "/s/e", {yoi::scope_rule::write("/other", true)}, segment_a);
    }),
                      yoi::scope_error);
    reg.transact([&](auto& tx) {
        yoi::register_pod(tx, "e", self_pid(), "/s/e", {yoi::scope_rule::write("/other", true)}, segment_c);
    });
    BOOST_TEST(reg.list().size() == 3u);
}

/// One registration decided twice on copies of the same `pods.json`: by the
/// seed's `register_pod_with_deny` (seedio yoi write) and by the preset's
/// registry form. Both must refuse (naming the same competitor) or both
/// admit, and leave tables the seed's own reader finds equal.
struct same_decision {
    temp_dir dir;
    fs::path rust_file = dir / "rust" / "pods.json";
    fs::path cpp_file = dir / "cpp" / "pods.json";

    /// Builds the starting table with procreg, then copies it for the Rust side.
    template <class Steps>
    explicit same_decision(Steps&& steps) {
        auto reg = yoi::open(cpp_file);
        reg.transact(steps);
        fs::create_directories(rust_file.parent_path());
        fs::copy_file(cpp_file, rust_file);
    }

    /// Registers `pod` (write `allow`, write `deny`, recursive) on both
    /// copies; returns the competitor both named, or "" when both admitted.
    std::string register_both(const std::string& pod, const std::vector<std::string>& allow,
                              const std::vector<std::string>& deny, const char* segment) {
        std::string allow_json, deny_json;
        std::vector<yoi::scope_rule> allow_rules, deny_rules;
        for (const auto& target : allow) {
            allow_json += (allow_json.empty() ? "" : ",") + rule(target.c_str(), "write", true);
            allow_rules.push_back(yoi::scope_rule::write(target, true));
        }
        for (const auto& target : deny) {
            deny_json += (deny_json.empty() ? "" : ",") + rule(target.c_str(), "write", true);
            deny_rules.push_back(yoi::scope_rule::write(target, true));
        }
        const outcome rust = seedio({"yoi", "write", rust_file.string(),
                                     "{\"pod_name\":\"" + pod + "\",\"pid\":" + std::to_string(self_pid()) +
                                         ",\"socket\":\"/s/" + pod + "\",\"scope_allow\":[" + allow_json +
                                         "],\"scope_deny\":[" + deny_json +
                                         "],\"delegated_from\":null,\"segment_id\":\"" + segment + "\"}"});
        BOOST_TEST_REQUIRE((rust.code == ok || rust.code == refused), rust.describe());
        std::string cpp_competitor;
        auto reg = yoi::open(cpp_file);
        try {
            yoi::register_pod_with_deny(reg, pod, self_pid(), "/s/" + pod, allow_rules, deny_rules, segment);
        } catch (const yoi::scope_error& e) {
            BOOST_TEST((e.reason() == yoi::errc::write_conflict), e.what());
            cpp_competitor = e.competitor();
        }
        BOOST_TEST((rust.code == refused) == !cpp_competitor.empty(),
                   "the seed " << (rust.code == refused ? "refused" : "admitted") << ", procreg "
                               << (cpp_competitor.empty() ? "admitted" : "refused") << "\n" << rust.describe());
        if (!cpp_competitor.empty()) {
            BOOST_TEST(rust.err.find("conflicts with pod \"" + cpp_competitor + "\"") != std::string::npos,
                       "procreg named " << cpp_competitor << "; the seed said: " << rust.err);
        }
        BOOST_TEST(printed(seedio_ok({"yoi", "dump", rust_file.string()})) ==
                   printed(seedio_ok({"yoi", "dump", cpp_file.string()})));
        return cpp_competitor;
    }
};

const char* const segment_p = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

// The seed excuses a conflict only when every competitor's rule is fully
// covered by one deny rule, and otherwise names the first competitor, even
// a covered one: the preset decides the same on the same file.
BOOST_AUTO_TEST_CASE(deny_rules_decide_conflicts_as_the_seed) {
    {  // A request its own deny rule cancels does not excuse a wider holder.
        same_decision both([&](auto& tx) {
            yoi::register_pod(tx, "q", self_pid(), "/s/q", {yoi::scope_rule::write("/src", true)}, segment_a);
        });
        BOOST_TEST(both.register_both("p", {"/src/core"}, {"/src/core"}, segment_p) == "q");
    }
    {  // One uncovered competitor refuses, naming the first (covered) one.
        same_decision both([&](auto& tx) {
            yoi::register_pod(tx, "child", self_pid(), "/s/child", {yoi::scope_rule::write("/src/core", true)},
                              segment_a);
            yoi::register_pod(tx, "stranger", self_pid(), "/s/stranger", {yoi::scope_rule::write("/src/docs", true)},
                              segment_c);
        });
        BOOST_TEST(both.register_both("restored", {"/src"}, {"/src/core"}, segment_p) == "child");
        // Every competitor covered: both admit, and the tables stay equal.
        BOOST_TEST(both.register_both("restored", {"/src"}, {"/src/core", "/src/docs"}, segment_p) == "");
    }
}

// A refused registration still saves the stale reclaim that preceded its
// checks (the seed's reclaim_stale saves at once): on both sides the dead
// pod is gone and the refused pod was not added.
BOOST_AUTO_TEST_CASE(a_refused_registration_keeps_the_stale_reclaim) {
    const auto dead = static_cast<std::uint32_t>(procreg_test::dead_pid());
    same_decision both([&](auto& tx) {
        yoi::register_pod(tx, "q", self_pid(), "/s/q", {yoi::scope_rule::write("/src", true)}, segment_a);
        tx.insert(yoi::allocation{"gone", dead, "/s/gone", {yoi::scope_rule::write("/docs", true)}, {}, std::nullopt,
                                  std::string(segment_c)});
    });
    BOOST_TEST(both.register_both("p", {"/src/core"}, {}, segment_p) == "q");
    for (const auto& file : {both.rust_file, both.cpp_file}) {
        const auto table = printed(seedio_ok({"yoi", "dump", file.string()}));
        BOOST_TEST(table.at("allocations").as_array().size() == 1u, file << ": " << table);
        BOOST_TEST(table.at("allocations").at(0).at("pod_name") == "q");
    }
}

BOOST_AUTO_TEST_SUITE_END()

// ===========================================================================
// trusty-memory: daemon.lock, "<pid>\n"
// ===========================================================================
BOOST_AUTO_TEST_SUITE(trusty_interop)

BOOST_AUTO_TEST_CASE(rust_daemon_holds_procreg_refuses_then_takes_over) {
    temp_dir dir;
    const fs::path file = trusty::lock_file_path_for_dir(dir.path());
    child daemon({"trusty", "hold", file.string()});
    const pid_t holder = ready_pid(daemon);
    BOOST_TEST(holder == daemon.pid());

    BOOST_TEST(procreg_test::read_text(file) == std::to_string(holder) + "\n");
    BOOST_TEST((trusty::read_lock_pid(file) == std::optional<std::uint32_t>(static_cast<std::uint32_t>(holder))));
    try {
        auto guard = trusty::acquire_lock(file);
        BOOST_FAIL("procreg took a lock the Rust daemon holds");
    } catch (const procreg::claim_in_use& e) {
        BOOST_TEST((e.pid() == std::optional<std::uint64_t>(static_cast<std::uint64_t>(holder))));
        BOOST_TEST(std::string(e.what()).find("already running") != std::string::npos);
    }

    // The Rust daemon shuts down: its DaemonLock drop removes the file.
    const outcome done = daemon.finish();
    BOOST_TEST_REQUIRE(done.code == 0, done.describe());
    BOOST_TEST(!fs::exists(file));
    auto guard = trusty::acquire_lock(file);
    BOOST_TEST((trusty::read_lock_pid(file) == std::optional<std::uint32_t>(self_pid())));
}

BOOST_AUTO_TEST_CASE(procreg_holds_rust_refuses_then_takes_over) {
    temp_dir dir;
    const fs::path file = trusty::lock_file_path_for_dir(dir.path());
    {
        auto guard = trusty::acquire_lock(file);
        seedio_ok({"trusty", "check", file.string(), std::to_string(self_pid())});
        const outcome r = seedio_expect(refused, {"trusty", "acquire", file.string()});
        BOOST_TEST(r.err.find("already running as PID " + std::to_string(self_pid())) != std::string::npos,
                   r.describe());
        BOOST_TEST((trusty::read_lock_pid(file) == std::optional<std::uint32_t>(self_pid())));
    }
    // procreg's guard removed the file on destruction.
    seedio_ok({"trusty", "check", file.string(), "none"});
    seedio_ok({"trusty", "acquire", file.string()});
}

BOOST_AUTO_TEST_CASE(each_side_reclaims_the_others_stale_lock) {
    temp_dir dir;
    const fs::path file = trusty::lock_file_path_for_dir(dir.path());
    const auto dead = procreg_test::dead_pid();

    // A Rust daemon that crashed left its pid (the seed's write_lock_file).
    seedio_ok({"trusty", "write", file.string(), std::to_string(dead)});
    {
        auto guard = trusty::acquire_lock(file);
        seedio_ok({"trusty", "check", file.string(), std::to_string(self_pid())});
    }

    // A procreg daemon that crashed (killed while holding: no destructor ran).
    const pid_t crashed = procreg_test::spawn([&] {
        auto guard = trusty::acquire_lock(file);
        guard.dismiss();  // as if killed: the file stays
        return 0;
    });
    BOOST_TEST_REQUIRE(procreg_test::wait_exit(crashed) == 0);
    seedio_ok({"trusty", "check", file.string(), std::to_string(crashed)});
    child rust({"trusty", "hold", file.string()});
    const pid_t holder = ready_pid(rust);
    BOOST_TEST((trusty::read_lock_pid(file) == std::optional<std::uint32_t>(static_cast<std::uint32_t>(holder))));
    const outcome done = rust.finish();
    BOOST_TEST(done.code == 0, done.describe());
}

BOOST_AUTO_TEST_CASE(a_group_writable_directory_the_seed_made_is_refused_unless_shared) {
    // The seed creates the data directory with create_dir_all, i.e. 0777 less
    // the umask. Under umask 002 that is 0775, which procreg refuses (another
    // user of the group could plant files) unless told the sharing is meant.
    temp_dir dir;
    const fs::path data = dir / "trusty-memory";
    const fs::path file = trusty::lock_file_path_for_dir(data);
    const mode_t old_mask = ::umask(002);
    const outcome r = seedio({"trusty", "write", file.string(), std::to_string(self_pid())});
    ::umask(old_mask);
    BOOST_TEST_REQUIRE(r.code == 0, r.describe());
    BOOST_TEST(procreg_test::mode_of(data) == 0775u);
    try {
        (void)trusty::read_lock_pid(file);
        BOOST_FAIL("procreg read a lock in a group-writable directory");
    } catch (const procreg::error& e) {
        BOOST_TEST(e.code() == procreg::errc::unsafe_path);
        BOOST_TEST(std::string(e.what()).find(data.string()) != std::string::npos, e.what());
    }
    auto opts = trusty::options(file);
    opts.directory.allow_shared = true;
    const auto holder = trusty::open(opts).holder();
    BOOST_TEST_REQUIRE(holder.has_value());
    BOOST_TEST(holder->pid == self_pid());
}

BOOST_AUTO_TEST_SUITE_END()

// ===========================================================================
// INSOMNIA: _staging/.consolidation.lock (pretty JSON LockRecord)
// ===========================================================================
BOOST_AUTO_TEST_SUITE(insomnia_interop)

const char* const id1 = "0196a5e1-7c2b-7d3e-8f40-123456789abc";
const char* const id2 = "0196a5e1-7c2b-7d3e-8f40-abcdef012345";
const char* const id3 = "0196a5e1-7c2b-7d3e-8f40-000000000003";

std::string record_json(const insomnia::lock_record& r) {
    json::array ids;
    for (const auto& id : r.consumed_ids) ids.push_back(json::string(id));
    return text(json::object{
        {"pid", r.pid}, {"pod_name", r.pod_name}, {"started_at", r.started_at}, {"consumed_ids", std::move(ids)}});
}

BOOST_AUTO_TEST_CASE(rust_writes_procreg_reads_every_field_and_refuses) {
    temp_dir dir;
    const fs::path staging = insomnia::staging_dir(dir.path());
    // The seed's acquire for a live pod (this process), left held.
    const json::object w =
        printed(seedio_ok({"insomnia", "write", dir.path().string(), std::to_string(self_pid()), "pod-rust", id1, id2}))
            .as_object();

    const auto holder = insomnia::open(staging).holder();
    BOOST_TEST_REQUIRE(holder.has_value());
    BOOST_TEST(holder->pid == self_pid());
    BOOST_TEST(holder->pod_name == "pod-rust");
    BOOST_TEST(holder->started_at == str(w.at("started_at")));
    BOOST_TEST(holder->consumed_ids == (std::vector<std::string>{id1, id2}), boost::test_tools::per_element());

    // INSOMNIA refuses even its own pid.
    try {
        auto lock = insomnia::staging_lock::acquire(staging, self_pid(), "pod-cpp", {});
        BOOST_FAIL("procreg took a lock a live pod holds");
    } catch (const procreg::claim_in_use& e) {
        BOOST_TEST((e.pid() == std::optional<std::uint64_t>(self_pid())));
        BOOST_TEST((e.owner_name() == std::optional<std::string>("pod-rust")));
    }
}

BOOST_AUTO_TEST_CASE(procreg_writes_rust_reads_every_field_and_refuses) {
    temp_dir dir;
    const fs::path staging = insomnia::staging_dir(dir.path());
    auto lock = insomnia::staging_lock::acquire(staging, self_pid(), "pod-cpp", {id1, id3});
    seedio_ok({"insomnia", "check", dir.path().string(), record_json(lock.record())});

    // The seed's acquire parses procreg's file and finds a live holder
    // (had it failed to parse, it would have overwritten it as stale).
    const outcome r = seedio_expect(refused, {"insomnia", "write", dir.path().string(), "1", "pod-rust"});
    BOOST_TEST(r.err.find("held by live pid " + std::to_string(self_pid())) != std::string::npos, r.describe());
    BOOST_TEST(r.err.find("pod-cpp") != std::string::npos, r.describe());
    seedio_ok({"insomnia", "check", dir.path().string(), record_json(lock.record())});

    BOOST_TEST((lock.release_only() == procreg::release_status::released));
    seedio_ok({"insomnia", "check", dir.path().string(), "none"});
}

BOOST_AUTO_TEST_CASE(each_side_takes_over_the_others_stale_lock) {
    temp_dir dir;
    const fs::path staging = insomnia::staging_dir(dir.path());
    const auto dead = static_cast<std::uint32_t>(procreg_test::dead_pid());

    // Rust's lock of a dead pod: procreg takes it over.
    seedio_ok({"insomnia", "write", dir.path().string(), std::to_string(dead), "pod-dead", id1});
    auto lock = insomnia::staging_lock::acquire(staging, self_pid(), "pod-cpp", {id2});
    seedio_ok({"insomnia", "check", dir.path().string(), record_json(lock.record())});

    // procreg's lock of a dead pod: Rust takes it over.
    BOOST_TEST((lock.release_only() == procreg::release_status::released));
    const pid_t pod = procreg_test::spawn([&] {
        auto mine = insomnia::staging_lock::acquire(staging, static_cast<std::uint32_t>(::getpid()), "pod-gone", {});
        return 0;  // destroying the handle does nothing, as in the seed: the lock stays
    });
    BOOST_TEST_REQUIRE(procreg_test::wait_exit(pod) == 0);
    const auto left = insomnia::open(staging).holder();
    BOOST_TEST_REQUIRE(left.has_value());
    BOOST_TEST(left->pid == static_cast<std::uint32_t>(pod));
    const json::object w =
        printed(seedio_ok({"insomnia", "write", dir.path().string(), std::to_string(self_pid()), "pod-rust", id3}))
            .as_object();
    const auto now = insomnia::open(staging).holder();
    BOOST_TEST_REQUIRE(now.has_value());
    BOOST_TEST(now->pod_name == "pod-rust");
    BOOST_TEST(now->started_at == str(w.at("started_at")));
}

BOOST_AUTO_TEST_CASE(rust_pod_releases_with_cleanup_then_procreg_acquires) {
    temp_dir dir;
    const fs::path staging = insomnia::staging_dir(dir.path());
    fs::create_directories(staging);
    for (const char* id : {id1, id2, id3}) procreg_test::write_text(staging / (std::string(id) + ".json"), "{}");

    child pod({"insomnia", "hold", dir.path().string(), "pod-rust", "cleanup", id1, id2});
    const pid_t holder = ready_pid(pod);
    BOOST_CHECK_THROW(insomnia::staging_lock::acquire(staging, self_pid(), "pod-cpp", {}), procreg::claim_in_use);
    BOOST_TEST(insomnia::open(staging).holder()->pid == static_cast<std::uint32_t>(holder));

    const outcome done = pod.finish();
    BOOST_TEST_REQUIRE(done.code == 0, done.describe());
    BOOST_TEST(!fs::exists(staging / (std::string(id1) + ".json")));
    BOOST_TEST(!fs::exists(staging / (std::string(id2) + ".json")));
    BOOST_TEST(fs::exists(staging / (std::string(id3) + ".json")));
    BOOST_TEST(!insomnia::open(staging).holder().has_value());
    auto lock = insomnia::staging_lock::acquire(staging, self_pid(), "pod-cpp", {id3});
    BOOST_TEST(lock.held());
}

BOOST_AUTO_TEST_SUITE_END()

// ===========================================================================
// AgentMux: <root>/<instance_id>.json and retired/
// ===========================================================================
BOOST_AUTO_TEST_SUITE(agentmux_interop)

std::string record_json(const agentmux::agent_record& r) {
    const auto opt = [](const auto& v) -> json::value { return v ? json::value_from(*v) : json::value(nullptr); };
    return text(json::object{{"schema_version", r.schema_version},
                             {"data", json::object{{"instance_id", r.data.instance_id},
                                                   {"name", opt(r.data.name)},
                                                   {"display_name", opt(r.data.display_name)},
                                                   {"working_dir", opt(r.data.working_dir)},
                                                   {"last_launched_at_ms", opt(r.data.last_launched_at_ms)}}}});
}

std::string records_json(const std::vector<agentmux::agent_record>& records) {
    json::array array;
    for (const auto& r : records) array.push_back(json::parse(record_json(r)));
    return text(array);
}

agentmux::agent_record full_record(std::string id) {
    auto r = agentmux::agent_record::make(std::move(id));
    r.data.name = "reviewer";
    r.data.display_name = "Reviewer (ja: レビュアー)";
    r.data.working_dir = "/home/u/.agentmux/agents/reviewer";
    r.data.last_launched_at_ms = 1776851234567;
    return r;
}

BOOST_AUTO_TEST_CASE(rust_writes_procreg_reads_every_field) {
    temp_dir dir;
    const fs::path root = dir / "agents" / "registry";
    const auto full = full_record("3f0c2a9e-1111-4a2b-8c3d-000000000001");
    auto sparse = agentmux::agent_record::make("3f0c2a9e-1111-4a2b-8c3d-000000000002");
    sparse.data.name = "coder";
    seedio_ok({"agentmux", "write", root.string(), record_json(full)});
    seedio_ok({"agentmux", "write", root.string(), record_json(sparse)});

    auto reg = agentmux::open(root);
    BOOST_TEST((reg.find(full.data.instance_id) == std::optional<agentmux::agent_record>(full)));
    BOOST_TEST((reg.find(sparse.data.instance_id) == std::optional<agentmux::agent_record>(sparse)));
    const auto listing = reg.list_active();
    BOOST_TEST(listing.records.size() == 2u);
    BOOST_TEST(listing.skipped.empty());
}

BOOST_AUTO_TEST_CASE(procreg_writes_rust_reads_every_field) {
    temp_dir dir;
    const fs::path root = dir / "registry";
    auto reg = agentmux::open(root);
    const auto full = full_record("a1");
    const auto bare = agentmux::agent_record::make("a2");
    reg.upsert(full);
    reg.upsert(bare);
    // procreg's own lock file sits in the root; the seed's list_active skips it (not .json).
    seedio_ok({"agentmux", "check", root.string(), records_json({full, bare})});
}

// Instance ids the seed accepts but procreg's strict key pattern refused
// (a space, a leading dot or dash, 129 characters, non-ASCII): each side
// lists what the other wrote, and retires it.
BOOST_AUTO_TEST_CASE(names_the_seed_accepts_are_shared_both_ways) {
    temp_dir dir;
    const fs::path root = dir / "registry";
    const std::vector<std::string> rust_ids = {"bad name", ".hidden-rust", std::string(129, 'r')};
    const std::vector<std::string> cpp_ids = {"other name", ".hidden-cpp", "-dash", "\xc3\xa9t\xc3\xa9"};
    std::vector<agentmux::agent_record> all;
    for (const auto& id : rust_ids) {
        all.push_back(full_record(id));
        seedio_ok({"agentmux", "write", root.string(), record_json(all.back())});
    }
    auto reg = agentmux::open(root);
    for (const auto& id : cpp_ids) {
        all.push_back(full_record(id));
        BOOST_TEST((reg.upsert(all.back()).status == procreg::upsert_status::inserted));
    }
    const auto listing = reg.list_active();
    BOOST_TEST(listing.skipped.empty());
    BOOST_TEST(listing.records.size() == all.size());
    for (const auto& rec : all) BOOST_TEST((reg.find(rec.data.instance_id) == std::optional<agentmux::agent_record>(rec)));
    seedio_ok({"agentmux", "check", root.string(), records_json(all)});

    // Each retires one the other wrote.
    BOOST_TEST((reg.retire("bad name").status == procreg::tombstone_status::moved));
    seedio_ok({"agentmux", "retire", root.string(), ".hidden-cpp"});
    seedio_ok({"agentmux", "exists", root.string(), "bad name", "retired"});
    BOOST_TEST(!reg.exists(".hidden-cpp"));
    BOOST_TEST(reg.exists_anywhere(".hidden-cpp"));
}

// A file neither program can read as a record (unparseable, newer schema):
// the seed's retire renames it into retired/, and so does procreg, bytes
// intact; each side then unretires what the other retired.
BOOST_AUTO_TEST_CASE(both_retire_files_they_cannot_read) {
    temp_dir dir;
    const fs::path root = dir / "registry";
    auto reg = agentmux::open(root);
    const std::string corrupt = "{ nope";
    const std::string newer = R"({"schema_version": 9, "data": {"instance_id": "n"}})";
    procreg_test::write_text(root / "c.json", corrupt);
    procreg_test::write_text(root / "n.json", newer);
    seedio_ok({"agentmux", "retire", root.string(), "c"});
    BOOST_TEST((reg.retire("n").status == procreg::tombstone_status::moved));
    BOOST_TEST(procreg_test::read_text(root / "retired" / "c.json") == corrupt);
    BOOST_TEST(procreg_test::read_text(root / "retired" / "n.json") == newer);
    BOOST_TEST((reg.unretire("c").status == procreg::tombstone_status::moved));
    seedio_ok({"agentmux", "unretire", root.string(), "n"});
    BOOST_TEST(procreg_test::read_text(root / "c.json") == corrupt);
    BOOST_TEST(procreg_test::read_text(root / "n.json") == newer);
}

BOOST_AUTO_TEST_CASE(unknown_fields_survive_both_writers) {
    // A newer AgentMux added fields; both writers merge instead of dropping them.
    temp_dir dir;
    const fs::path root = dir / "registry";
    auto rec = full_record("a1");
    seedio_ok({"agentmux", "write", root.string(), record_json(rec)});
    {
        json::object top = json::parse(procreg_test::read_text(root / "a1.json")).as_object();
        top["future_top"] = 7;
        top["data"].as_object()["future_col"] = "kept";
        procreg_test::write_text(root / "a1.json", json::serialize(top));
    }
    auto reg = agentmux::open(root);
    rec.data.display_name = "by procreg";
    BOOST_TEST((reg.upsert(rec).status == procreg::upsert_status::replaced));
    rec.data.last_launched_at_ms = 1776851299999;
    seedio_ok({"agentmux", "write", root.string(), record_json(rec)});
    rec.data.working_dir.reset();
    BOOST_TEST((reg.upsert(rec).status == procreg::upsert_status::replaced));

    const json::object top = json::parse(procreg_test::read_text(root / "a1.json")).as_object();
    BOOST_TEST(top.at("future_top") == json::value(7));
    BOOST_TEST(top.at("data").as_object().at("future_col") == json::value("kept"));
    seedio_ok({"agentmux", "check", root.string(), records_json({rec})});
    BOOST_TEST((reg.find("a1") == std::optional<agentmux::agent_record>(rec)));
}

BOOST_AUTO_TEST_CASE(retire_and_unretire_across_languages) {
    temp_dir dir;
    const fs::path root = dir / "registry";
    auto reg = agentmux::open(root);
    reg.upsert(full_record("a1"));
    seedio_ok({"agentmux", "write", root.string(), record_json(full_record("a2"))});

    BOOST_TEST((reg.retire("a2").status == procreg::tombstone_status::moved));
    seedio_ok({"agentmux", "exists", root.string(), "a2", "retired"});
    seedio_ok({"agentmux", "check", root.string(), records_json({full_record("a1")})});

    seedio_ok({"agentmux", "retire", root.string(), "a1"});
    BOOST_TEST(!reg.exists("a1"));
    BOOST_TEST(reg.exists_anywhere("a1"));
    seedio_ok({"agentmux", "unretire", root.string(), "a2"});
    BOOST_TEST(reg.exists("a2"));
    BOOST_TEST((reg.unretire("a1").status == procreg::tombstone_status::moved));
    seedio_ok({"agentmux", "check", root.string(), records_json({full_record("a1"), full_record("a2")})});

    seedio_ok({"agentmux", "hard-delete", root.string(), "a1"});
    BOOST_TEST(!reg.exists_anywhere("a1"));
    BOOST_TEST(reg.hard_delete("a2"));
    seedio_ok({"agentmux", "exists", root.string(), "a2", "none"});
}

BOOST_AUTO_TEST_CASE(neither_writer_overwrites_a_newer_schema) {
    temp_dir dir;
    const fs::path root = dir / "registry";
    auto reg = agentmux::open(root);
    const std::string newer = R"({"schema_version": 2, "data": {"instance_id": "a1", "shape": "v2"}})";
    procreg_test::write_text(root / "a1.json", newer);

    const outcome r = seedio_ok({"agentmux", "write", root.string(), record_json(full_record("a1"))});
    BOOST_TEST(r.err.find("skipped") != std::string::npos, r.describe());
    BOOST_TEST(procreg_test::read_text(root / "a1.json") == newer);
    BOOST_TEST((reg.upsert(full_record("a1")).status == procreg::upsert_status::skipped));
    BOOST_TEST(procreg_test::read_text(root / "a1.json") == newer);
    // Both listings pass over it.
    seedio_ok({"agentmux", "check", root.string(), "[]"});
    BOOST_TEST(reg.list_active().records.empty());
}

BOOST_AUTO_TEST_SUITE_END()
