// Issue 13 item 6: named_mutex_lock must give one registry one mutex however
// its directory is reached. A bind mount is not a symbolic link: no path
// canonicalisation joins `real/registry.lock` and `view/registry.lock`, so a
// segment named after the path gave the two views two mutexes and lost
// increments. The segment is named after the identity (device, inode) of
// the lock file's directory (docs/policy-lock.md).
#define BOOST_TEST_MODULE regression_named_mutex_identity
#include <boost/test/unit_test.hpp>

#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/lock/named_mutex_lock.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/json_table.hpp>

#include "support/counter_registries.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <chrono>
#include <cstdio>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>

#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

using procreg::lock::named_mutex_lock;
using procreg_test::counter_record;
using namespace std::chrono_literals;

namespace {

using counter_registry = procreg_test::counter_registry<procreg::storage::json_table, named_mutex_lock>;

// Exclusion is under test, not durability: fsync off.
counter_registry open_counters(const std::filesystem::path& dir) {
    return procreg_test::open_counter_table<named_mutex_lock>(dir);
}

constexpr int increments = 3000;

// Adds 1 to the counter `increments` times, each in its own transaction.
int increment_many(const std::filesystem::path& dir) {
    auto reg = open_counters(dir);
    for (int i = 0; i < increments; ++i) {
        reg.transact([](counter_registry::transaction_type& tx) {
            const auto found = tx.find("n");
            if (!found) throw std::runtime_error("the counter record is missing");
            counter_record next = *found;
            next.count += 1;
            tx.upsert(next);
        });
    }
    return 0;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(named_mutex_identity)

BOOST_AUTO_TEST_CASE(a_bind_mount_of_the_directory_maps_the_same_mutex) {
    BOOST_TEST_REQUIRE(::geteuid() == 0, "this test bind-mounts a directory in a mount namespace: run it as root");
    procreg_test::temp_dir dir;
    const auto real = dir / "real";
    const auto view = dir / "view";
    std::filesystem::create_directory(real);
    std::filesystem::create_directory(view);
    open_counters(real).insert(counter_record{"n", static_cast<std::uint32_t>(::getpid()), 0});

    procreg_test::signal_pipe ready;
    procreg_test::signal_pipe go_real;
    procreg_test::signal_pipe go_view;
    const pid_t through_real = procreg_test::spawn([&] {
        if (!go_real.wait(60s)) return 2;
        return increment_many(real);
    });
    const pid_t through_view = procreg_test::spawn([&] {
        // A private mount namespace, so the bind mount vanishes with this process.
        if (::unshare(CLONE_NEWNS) != 0) return 3;
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return 4;
        if (::mount(real.c_str(), view.c_str(), nullptr, MS_BIND, nullptr) != 0) return 5;
        if (!std::filesystem::exists(view / "registry.json")) return 6;
        if (named_mutex_lock::segment_name(view / "registry.lock") !=
            named_mutex_lock::segment_name(real / "registry.lock")) {
            std::fprintf(stderr, "real/ and its bind mount view/ name two segments\n");
        }
        ready.notify();
        if (!go_view.wait(60s)) return 2;
        return increment_many(view);
    });
    BOOST_TEST_REQUIRE(ready.wait(20s), "the child could not bind-mount real/ at view/");
    go_real.notify();
    go_view.notify();
    BOOST_TEST(procreg_test::wait_exit(through_real) == 0);
    BOOST_TEST(procreg_test::wait_exit(through_view) == 0);

    const auto row = open_counters(real).find("n");
    BOOST_TEST_REQUIRE(row.has_value());
    BOOST_TEST(row->count == static_cast<std::uint64_t>(2 * increments),
               "increments lost: " << row->count << " of " << 2 * increments << " survived");
}

BOOST_AUTO_TEST_CASE(the_segment_follows_the_directory_not_its_name) {
    procreg_test::temp_dir dir;
    std::filesystem::create_directory(dir / "a");
    const std::string before = named_mutex_lock::segment_name(dir / "a" / "registry.lock");
    BOOST_TEST(named_mutex_lock::segment_name(dir / "a" / "other.lock") != before);
    // Renamed, the directory keeps its registry's segment ...
    std::filesystem::rename(dir / "a", dir / "b");
    BOOST_TEST(named_mutex_lock::segment_name(dir / "b" / "registry.lock") == before);
    // ... and a new directory at the old name is another registry.
    std::filesystem::create_directory(dir / "a");
    BOOST_TEST(named_mutex_lock::segment_name(dir / "a" / "registry.lock") != before);
}

BOOST_AUTO_TEST_SUITE_END()
