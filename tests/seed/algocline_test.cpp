// Conformance suite of the algocline pool registry (seed 000, pool/registry.rs).
//
// T1–T6 are the seed's own tests, ported; the rest prove what the seed
// promises but its tests only exercise with threads: real processes writing
// concurrently, a writer killed while it holds the lock, and the on-disk
// format the Rust program reads and writes.
#define BOOST_TEST_MODULE algocline
#include <boost/test/unit_test.hpp>

#include <procreg/presets/algocline.hpp>

#include "../support/policy_matrix.hpp"
#include "../support/process.hpp"
#include "../support/temp_dir.hpp"

#include <boost/json.hpp>

#include <atomic>
#include <chrono>
#include <climits>
#include <csignal>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

using procreg::algocline::pool_session;
using procreg::algocline::pool_registry;
using test_registry = procreg_test::under_test<pool_registry>;
using procreg_test::temp_dir;

namespace {

pool_session make_entry(const std::string& sid, std::uint32_t pid) {
    return pool_session::make(sid, pid, "/tmp/alc-pool/" + sid + ".sock", "0.30.0");
}

std::uint32_t self_pid() { return static_cast<std::uint32_t>(::getpid()); }

}  // namespace

BOOST_AUTO_TEST_SUITE(algocline)

// T1 — a missing registry.json is an empty registry, and reading creates no file.
BOOST_AUTO_TEST_CASE(load_default_when_absent) {
    temp_dir dir;
    auto reg = procreg::algocline::open<test_registry>(dir / "registry.json");
    BOOST_TEST(reg.list().empty());
    BOOST_TEST(!std::filesystem::exists(dir / "registry.json"));
}

// T2 — reap (the seed's scan_and_gc) removes the dead pid and keeps the live one.
BOOST_AUTO_TEST_CASE(scan_and_gc_removes_dead_pid) {
    temp_dir dir;
    auto reg = procreg::algocline::open<test_registry>(dir / "registry.json");
    const auto dead = static_cast<std::uint32_t>(procreg_test::dead_pid());
    reg.insert(make_entry("live-session", self_pid()));
    reg.insert(make_entry("dead-session", dead));

    const auto removed = reg.reap();
    BOOST_TEST_REQUIRE(removed.size() == 1u);
    BOOST_TEST(removed[0].sid == "dead-session");
    const auto survivors = reg.list();
    BOOST_TEST_REQUIRE(survivors.size() == 1u);
    BOOST_TEST(survivors[0].record.sid == "live-session");
    BOOST_TEST(survivors[0].alive);
    BOOST_TEST(!reg.find("dead-session"));
    BOOST_TEST(reg.find("live-session").has_value());
}

// T3 — bad JSON is RegistryCorrupted naming the path, never an empty registry,
// and the file is left exactly as it was, even by a write attempt.
BOOST_AUTO_TEST_CASE(load_corrupted_returns_pool_error) {
    temp_dir dir;
    const auto path = dir / "registry.json";
    procreg_test::write_text(path, "{ not valid json !!!");
    auto reg = procreg::algocline::open<test_registry>(path);
    try {
        reg.list();
        BOOST_FAIL("a corrupt registry must not read as empty");
    } catch (const procreg::error& e) {
        BOOST_TEST(e.code() == procreg::errc::corrupted_file);
        BOOST_TEST(e.path() == path);
        BOOST_TEST(std::string(e.what()).find(path.string()) != std::string::npos);
    }
    BOOST_CHECK_THROW(reg.insert(make_entry("s", self_pid())), procreg::error);
    BOOST_TEST(procreg_test::read_text(path) == "{ not valid json !!!");

    std::error_code ec;
    const auto rows = reg.list(ec);
    BOOST_TEST(ec == procreg::errc::corrupted_file);
    BOOST_TEST(!rows.has_value());
}

// T4 — concurrent writers (threads) under the lock lose no entry: two threads
// share one registry object, two more each open their own.
BOOST_AUTO_TEST_CASE(concurrent_writers_no_entry_loss) {
    temp_dir dir;
    const auto path = dir / "registry.json";
    auto shared = procreg::algocline::open<test_registry>(path);
    constexpr int per_thread = 50;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            if (t < 2) {
                for (int i = 0; i < per_thread; ++i)
                    shared.insert(make_entry("t" + std::to_string(t) + "-s" + std::to_string(i), self_pid()));
            } else {
                auto own = procreg::algocline::open<test_registry>(path);
                for (int i = 0; i < per_thread; ++i)
                    own.insert(make_entry("t" + std::to_string(t) + "-s" + std::to_string(i), self_pid()));
            }
        });
    }
    for (auto& thread : threads) thread.join();
    BOOST_TEST(shared.list().size() == 4u * per_thread);
}

// T5 — the pool directory is created 0700 and registry.json is 0600.
BOOST_AUTO_TEST_CASE(save_sets_secure_permissions) {
    temp_dir dir;
    const auto path = dir / "pool" / "registry.json";
    auto reg = procreg::algocline::open<test_registry>(path);
    reg.insert(make_entry("s", self_pid()));
    reg.erase("s");
    BOOST_TEST(procreg_test::mode_of(dir / "pool") == 0700u);
    BOOST_TEST(procreg_test::mode_of(path) == 0600u);
}

template <class Lock>
void check_lock_is_private(const std::filesystem::path& dir, Lock& lock) {
    if constexpr (std::is_same_v<Lock, procreg::lock::flock_lock>) {
        BOOST_TEST(std::filesystem::exists(dir / "registry.lock"));
        BOOST_TEST(procreg_test::mode_of(dir / "registry.lock") == 0600u);
    } else {
        BOOST_TEST(!std::filesystem::exists(dir / "registry.lock"));
        BOOST_TEST(procreg_test::mode_of(lock.segment_path()) == 0600u);
    }
}

// T6 — the lock sentinel registry.lock is 0600. Under the named-mutex lock
// the lock lives in a shared-memory segment instead, which must be 0600 too.
BOOST_AUTO_TEST_CASE(lock_file_sets_secure_permissions) {
    temp_dir dir;
    auto reg = procreg::algocline::open<test_registry>(dir / "registry.json");
    reg.insert(make_entry("s", self_pid()));
    check_lock_is_private(dir.path(), reg.lock_policy());
}

// 4 real processes × 100 inserts each: every entry present, file parses.
BOOST_AUTO_TEST_CASE(concurrent_processes_lose_nothing) {
    temp_dir dir;
    const auto path = dir / "registry.json";
    constexpr int processes = 4;
    constexpr int per_process = 100;
    std::vector<pid_t> children;
    for (int p = 0; p < processes; ++p) {
        children.push_back(procreg_test::spawn([&, p] {
            auto reg = procreg::algocline::open<test_registry>(path);
            for (int i = 0; i < per_process; ++i)
                reg.insert(make_entry("p" + std::to_string(p) + "-" + std::to_string(i), self_pid()));
            return 0;
        }));
    }
    for (const pid_t child : children) BOOST_TEST(procreg_test::wait_exit(child) == 0);

    const auto parsed = boost::json::parse(procreg_test::read_text(path));
    BOOST_TEST(parsed.at("sessions").as_array().size() == std::size_t{processes * per_process});
    auto reg = procreg::algocline::open<test_registry>(path);
    std::set<std::string> keys;
    for (const auto& row : reg.list()) keys.insert(row.record.sid);
    BOOST_TEST(keys.size() == std::size_t{processes * per_process});
}

// A writer SIGKILLed while it holds the lock (mid-transaction) leaves the
// previous table intact and does not block the next locker.
BOOST_AUTO_TEST_CASE(killed_lock_holder_does_not_wedge_or_corrupt) {
    temp_dir dir;
    const auto path = dir / "registry.json";
    {
        auto reg = procreg::algocline::open<test_registry>(path);
        reg.insert(make_entry("before", self_pid()));
    }
    const std::string before = procreg_test::read_text(path);
    procreg_test::signal_pipe holding;
    const pid_t child = procreg_test::spawn([&] {
        auto reg = procreg::algocline::open<test_registry>(path);
        reg.transact([&](auto& tx) {
            tx.insert(make_entry("never-committed", self_pid()));
            holding.notify();
            for (;;) ::pause();
        });
        return 0;
    });
    BOOST_TEST_REQUIRE(holding.wait());
    ::kill(child, SIGKILL);
    BOOST_TEST(procreg_test::wait_exit(child) == 128 + SIGKILL);

    auto reg = procreg::algocline::open<test_registry>(path);
    const bool acquired = reg.transact_for(std::chrono::seconds(5), [](auto&) { return true; });
    BOOST_TEST(acquired);
    BOOST_TEST(procreg_test::read_text(path) == before);
    BOOST_TEST(reg.find("before").has_value());
    BOOST_TEST(!reg.find("never-committed").has_value());
    reg.insert(make_entry("after", self_pid()));
    BOOST_TEST(reg.list().size() == 2u);
}

// A file exactly as serde_json::to_string_pretty writes it (the Rust seed)
// reads back field for field; keys procreg does not know survive a rewrite.
BOOST_AUTO_TEST_CASE(reads_the_seed_format_and_keeps_unknown_keys) {
    temp_dir dir;
    const auto path = dir / "registry.json";
    procreg_test::write_text(path, R"({
  "sessions": [
    {
      "sid": "4f1c0e5e-9b7a-4d7e-a0f1-1d2c3b4a5f60",
      "pid": 4242,
      "sock": "/home/u/.algocline/state/pool/4f1c.sock",
      "version": "0.30.0",
      "created_at": "2026-04-22T10:00:00Z",
      "future_field": {"nested": [1, 2]}
    }
  ],
  "format": 2
})");
    auto reg = procreg::algocline::open<test_registry>(path);
    const auto found = reg.find("4f1c0e5e-9b7a-4d7e-a0f1-1d2c3b4a5f60");
    BOOST_TEST_REQUIRE(found.has_value());
    BOOST_TEST(found->pid == 4242u);
    BOOST_TEST(found->sock == "/home/u/.algocline/state/pool/4f1c.sock");
    BOOST_TEST(found->version == "0.30.0");
    BOOST_TEST(found->created_at == "2026-04-22T10:00:00Z");

    reg.insert(make_entry("new", self_pid()));
    const auto written = boost::json::parse(procreg_test::read_text(path));
    BOOST_TEST(written.at("format").as_int64() == 2);
    const auto& first = written.at("sessions").as_array().at(0).as_object();
    BOOST_TEST(first.at("future_field").at("nested").as_array().size() == 2u);
}

// What procreg writes is exactly the seed's shape: {"sessions":[{sid, pid,
// sock, version, created_at}]} with nothing else, so serde reads it.
BOOST_AUTO_TEST_CASE(writes_exactly_the_seed_format) {
    temp_dir dir;
    const auto path = dir / "registry.json";
    auto reg = procreg::algocline::open<test_registry>(path);
    reg.insert(make_entry("s1", self_pid()));
    const auto written = boost::json::parse(procreg_test::read_text(path));
    BOOST_TEST(written.as_object().size() == 1u);
    const auto& sessions = written.at("sessions").as_array();
    BOOST_TEST_REQUIRE(sessions.size() == 1u);
    const auto& entry = sessions[0].as_object();
    std::vector<std::string> keys;
    std::vector<std::string> identity;
    for (const auto& item : entry) {
        const std::string key(item.key());
        if (procreg_test::liveness_stamps_identity<pool_registry> && procreg_test::is_identity_field(key)) {
            identity.push_back(key);  // pidfd_liveness's owner identity, which serde ignores
        } else {
            keys.push_back(key);
        }
    }
    BOOST_TEST((keys == std::vector<std::string>{"sid", "pid", "sock", "version", "created_at"}));
    BOOST_TEST(identity.size() == procreg_test::identity_fields_stamped<pool_registry>());
    BOOST_TEST(entry.at("pid").as_int64() == static_cast<std::int64_t>(self_pid()));
    BOOST_TEST(entry.at("created_at").as_string().size() == 20u);  // 2026-11-21T09:30:05Z
}

// The seed's K-52 guard: a pid above i32::MAX is dead and pruned, never
// sent to kill() where it would mean a process group or broadcast. Pid 0 is
// NOT the seed's guard: the seed sends kill(0, 0), which succeeds (it
// addresses the caller's own process group), so the seed keeps a pid-0
// entry alive forever. procreg counts it dead, deliberately
// (docs/policy-liveness.md; listed in docs/seeds.md with the other
// differences).
BOOST_AUTO_TEST_CASE(pids_out_of_range_are_dead) {
    temp_dir dir;
    auto reg = procreg::algocline::open<test_registry>(dir / "registry.json");
    reg.insert(make_entry("overflow", static_cast<std::uint32_t>(INT_MAX) + 1u));
    reg.insert(make_entry("max", UINT32_MAX));
    reg.insert(make_entry("zero", 0));
    reg.insert(make_entry("me", self_pid()));
    const auto removed = reg.reap();
    BOOST_TEST(removed.size() == 3u);
    BOOST_TEST(reg.list().size() == 1u);
}

// A pid that does not fit u32 is a corrupt file (serde would refuse it too),
// reported with the field that is wrong.
BOOST_AUTO_TEST_CASE(wrong_field_type_is_corruption_naming_the_field) {
    temp_dir dir;
    const auto path = dir / "registry.json";
    procreg_test::write_text(path, R"({"sessions":[{"sid":"a","pid":-1,"sock":"s","version":"v","created_at":"c"}]})");
    auto reg = procreg::algocline::open<test_registry>(path);
    try {
        reg.list();
        BOOST_FAIL("expected corrupted_file");
    } catch (const procreg::error& e) {
        BOOST_TEST(e.code() == procreg::errc::corrupted_file);
        BOOST_TEST(std::string(e.what()).find("sessions[0].pid") != std::string::npos);
    }
}

// The seed's save() sets the pool directory to 0700 every time: an existing
// directory of this user that is more open (0755, or group-writable 0775,
// as a umask-002 mkdir -p leaves it) is tightened and used, not refused.
BOOST_AUTO_TEST_CASE(an_existing_directory_of_this_user_is_tightened_to_0700) {
    for (const unsigned mode : {0755u, 0775u, 0777u, 02770u, 0700u}) {
        BOOST_TEST_CONTEXT("mode " << std::oct << mode) {
            temp_dir dir;
            const auto pool = dir / "pool";
            std::filesystem::create_directory(pool);
            BOOST_TEST_REQUIRE(::chmod(pool.c_str(), mode) == 0);
            auto reg = procreg::algocline::open<test_registry>(pool / "registry.json");
            reg.insert(make_entry("s", self_pid()));
            BOOST_TEST(procreg_test::mode_of(pool) == 0700u);
            BOOST_TEST(reg.list().size() == 1u);
        }
    }
}

// A directory owned by another user is still refused (unsafe_path), and
// left as it is: another user could plant files and symlinks there.
BOOST_AUTO_TEST_CASE(a_directory_of_another_user_is_refused_and_left_alone) {
    BOOST_TEST_REQUIRE(::geteuid() == 0u, "this test chowns a directory to another user: run it as root");
    for (const unsigned mode : {0700u, 0775u}) {
        BOOST_TEST_CONTEXT("mode " << std::oct << mode) {
            temp_dir dir;
            const auto pool = dir / "pool";
            std::filesystem::create_directory(pool);
            BOOST_TEST_REQUIRE(::chmod(pool.c_str(), mode) == 0);
            BOOST_TEST_REQUIRE(::chown(pool.c_str(), 65534, 65534) == 0);
            try {
                auto reg = procreg::algocline::open<test_registry>(pool / "registry.json");
                reg.list();
                BOOST_FAIL("a directory of another user must be refused");
            } catch (const procreg::error& e) {
                BOOST_TEST(e.code() == procreg::errc::unsafe_path);
                BOOST_TEST(std::string(e.what()).find(pool.string()) != std::string::npos);
            }
            BOOST_TEST(procreg_test::mode_of(pool) == mode);
            BOOST_TEST(!std::filesystem::exists(pool / "registry.json"));
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
