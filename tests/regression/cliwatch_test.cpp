// tests/regression/cliwatch_test.cpp — watching a registry of dynamic
// records, the registry type of the `procreg watch` command (docs/cli.md).
//
// What it keeps: an owner named by a dynamic record is pinned by a pidfd
// (dynamic_liveness offers its inner policy's watch_owner), so its death is
// reported without polling and without any write; a record without a pid
// (no owner: alive by dynamic_liveness's rule) is neither pinned nor ever
// reported dead (docs/watch.md).
#define BOOST_TEST_MODULE procreg_regression_cliwatch
#include <boost/test/unit_test.hpp>

#include <procreg/dynamic_record.hpp>
#include <procreg/liveness/pidfd_liveness.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/json_table.hpp>
#include <procreg/watch/watcher.hpp>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include <signal.h>
#include <unistd.h>

namespace {

using dynamic_registry = procreg::registry<procreg::dynamic_record, procreg::lock::flock_lock,
                                           procreg::storage::json_table,
                                           procreg::dynamic_liveness<procreg::liveness::pidfd_liveness>>;

std::unique_ptr<dynamic_registry> open_table(const std::filesystem::path& file) {
    procreg::storage::json_table_options opts;
    opts.file = file;
    opts.array_key = "workers";
    opts.durable = false;
    return std::make_unique<dynamic_registry>(procreg::storage::json_table(opts));
}

procreg::dynamic_record record(const std::string& json) {
    return procreg::dynamic_record::from_json(boost::json::parse(json).as_object());
}

}  // namespace

BOOST_AUTO_TEST_SUITE(dynamic_watch)

BOOST_AUTO_TEST_CASE(a_record_without_a_pid_is_neither_pinned_nor_reported_dead) {
    procreg_test::temp_dir dir;
    procreg::dynamic_record::layout_scope scope({"id", "pid"});
    const auto reg = open_table(dir / "workers.json");
    reg->insert(record(R"({"id":"no-owner"})"));
    const auto events = std::make_unique<procreg::watcher<dynamic_registry>>(*reg);
    BOOST_TEST(!events->polls_owners());
    const auto got = events->next(std::chrono::milliseconds(300));
    BOOST_TEST(!got.has_value(), "unexpected event " << procreg::to_string(got->kind) << " for " << got->key);
}

BOOST_AUTO_TEST_CASE(the_owner_of_a_dynamic_record_is_pinned_and_its_death_reported) {
    procreg_test::temp_dir dir;
    procreg::dynamic_record::layout_scope scope({"id", "pid"});
    const auto reg = open_table(dir / "workers.json");
    const pid_t owner = procreg_test::spawn([] {
        for (;;) ::pause();
        return 0;
    });
    reg->insert(record(R"({"id":"w","pid":)" + std::to_string(owner) + "}"));
    const auto events = std::make_unique<procreg::watcher<dynamic_registry>>(*reg);
    const bool pinned = !events->polls_owners();
    ::kill(owner, SIGKILL);
    const auto got = events->next(std::chrono::seconds(30));  // the owner is not reaped yet
    BOOST_TEST(procreg_test::wait_exit(owner) == 128 + SIGKILL);
    BOOST_TEST(pinned, "the watcher polls instead of pinning the owner by a pidfd");
    BOOST_TEST_REQUIRE(got.has_value());
    BOOST_TEST(procreg::to_string(got->kind) == std::string("owner_died"));
    BOOST_TEST(got->key == "w");
    BOOST_TEST(got->pid == static_cast<std::uint64_t>(owner));
    BOOST_TEST(events->stats().reads == 1u);  // no read after the first: the pidfd alone told
}

BOOST_AUTO_TEST_SUITE_END()
