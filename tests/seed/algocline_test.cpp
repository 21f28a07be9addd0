// Conformance suite of the algocline pool registry (seed 000, pool/registry.rs).
//
// T1–T6 are the seed's own tests, ported; the rest prove what the seed
// promises but its tests only exercise with threads: real processes writing
// concurrently, a writer killed while it holds the lock, and the on-disk
// format the Rust program reads and writes.
//
// The cases that hold on any storage have their bodies in
// support/seed_cases/algocline_cases.hpp, which tests/etcd/etcd_seed_test.cpp
// runs on etcd too; here they run on the preset's registry.json. The others
// look at files by nature and have no etcd counterpart: T3 (a corrupt
// file), T5 and T6 (permissions, the lock file), the seed's bytes read and
// written, a wrong field type (a corrupt file), and the directory checks.
#define BOOST_TEST_MODULE algocline
#include <boost/test/unit_test.hpp>

#include <procreg/presets/algocline.hpp>

#include "../support/policy_matrix.hpp"
#include "../support/process.hpp"
#include "../support/seed_cases/algocline_cases.hpp"
#include "../support/temp_dir.hpp"

#include <boost/json.hpp>

#include <climits>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

using procreg::algocline::pool_session;
using procreg::algocline::pool_registry;
using test_registry = procreg_test::under_test<pool_registry>;
using procreg_test::temp_dir;
using procreg_test::algocline_cases::make_entry;
using procreg_test::algocline_cases::self_pid;
namespace algocline_cases = procreg_test::algocline_cases;

namespace {

// The preset's place: one registry.json (and its lock) in a private directory.
struct file_place {
    temp_dir dir;
    std::filesystem::path file = dir / "registry.json";

    test_registry open() const { return procreg::algocline::open<test_registry>(file); }
    bool nothing_stored() const { return !std::filesystem::exists(file); }
    std::size_t stored_count() const {
        return boost::json::parse(procreg_test::read_text(file)).at("sessions").as_array().size();
    }
    std::string stored_bytes() const { return procreg_test::read_text(file); }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(algocline)

BOOST_AUTO_TEST_CASE(load_default_when_absent) {
    file_place place;
    algocline_cases::load_default_when_absent(place);
}

BOOST_AUTO_TEST_CASE(scan_and_gc_removes_dead_pid) {
    file_place place;
    algocline_cases::scan_and_gc_removes_dead_pid(place);
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

BOOST_AUTO_TEST_CASE(concurrent_writers_no_entry_loss) {
    file_place place;
    algocline_cases::concurrent_writers_no_entry_loss(place);
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

BOOST_AUTO_TEST_CASE(concurrent_processes_lose_nothing) {
    file_place place;
    algocline_cases::concurrent_processes_lose_nothing(place);
}

BOOST_AUTO_TEST_CASE(killed_lock_holder_does_not_wedge_or_corrupt) {
    file_place place;
    algocline_cases::killed_lock_holder_does_not_wedge_or_corrupt(place);
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

BOOST_AUTO_TEST_CASE(pids_out_of_range_are_dead) {
    file_place place;
    algocline_cases::pids_out_of_range_are_dead(place);
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
