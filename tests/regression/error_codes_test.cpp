// Regression (issue 14, item 12): one error code per cause.
//
// A nested transaction was `io_failure` (as if a system call had failed), a
// claim without a registry and a json_table given a directory were
// `invalid_key` (no key was involved), and a claim file changed by a writer
// outside the lock was `in_use` without a pid (nobody holds anything). A
// caller branching on the code could not tell these from the causes the
// codes name.
#define BOOST_TEST_MODULE regression_error_codes
#include <boost/test/unit_test.hpp>

#include <procreg/claim.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/lock/named_mutex_lock.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/claim_file.hpp>
#include <procreg/storage/json_table.hpp>

#include "support/counter_record.hpp"
#include "support/temp_dir.hpp"

#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <system_error>

#include <unistd.h>

namespace fs = std::filesystem;
using procreg_test::counter_record;
using procreg_test::temp_dir;

namespace {

using table_registry = procreg::registry<counter_record, procreg::lock::flock_lock, procreg::storage::json_table>;
using mutex_registry =
    procreg::registry<counter_record, procreg::lock::named_mutex_lock, procreg::storage::json_table>;
using claim_storage = procreg::storage::claim_file<procreg::storage::json_record_format>;
using claim_registry = procreg::registry<counter_record, procreg::lock::flock_lock, claim_storage>;

std::uint32_t self_pid() { return static_cast<std::uint32_t>(::getpid()); }

procreg::storage::json_table_options table_options(const fs::path& file) {
    procreg::storage::json_table_options opts;
    opts.file = file;
    return opts;
}

// Runs `body`, which must throw a procreg::error, and returns it.
template <class Body>
procreg::error thrown_by(Body&& body) {
    try {
        body();
    } catch (const procreg::error& e) {
        return e;
    }
    BOOST_FAIL("no procreg::error was thrown");
    throw;  // not reached
}

}  // namespace

BOOST_AUTO_TEST_SUITE(error_codes)

BOOST_AUTO_TEST_CASE(a_nested_flock_transaction_has_its_own_code) {
    temp_dir dir;
    table_registry reg(procreg::storage::json_table(table_options(dir / "t.json")));
    const auto e = thrown_by([&] { reg.transact([&](auto&) { reg.list(); }); });
    BOOST_TEST(e.code() != procreg::errc::io_failure, "a nested transaction is not a failed system call");
    BOOST_TEST(e.code() == procreg::errc::nested_transaction, e.what());
    BOOST_TEST(e.path() == fs::absolute(dir / "t.lock"));
}

BOOST_AUTO_TEST_CASE(a_nested_named_mutex_transaction_has_its_own_code) {
    temp_dir dir;
    mutex_registry reg(procreg::storage::json_table(table_options(dir / "t.json")));
    const auto e = thrown_by([&] { reg.transact([&](auto&) { reg.list(); }); });
    BOOST_TEST(e.code() != procreg::errc::io_failure, "a nested transaction is not a failed system call");
    BOOST_TEST(e.code() == procreg::errc::nested_transaction, e.what());
    procreg::lock::named_mutex_lock::remove(reg.storage().lock_path());
}

BOOST_AUTO_TEST_CASE(a_claim_without_a_registry_is_an_invalid_argument) {
    const auto e = thrown_by([] { procreg::claim<claim_registry> claim(nullptr, "d"); });
    BOOST_TEST(e.code() != procreg::errc::invalid_key, "no key is wrong here");
    BOOST_TEST(e.code() == procreg::errc::invalid_argument, e.what());
}

BOOST_AUTO_TEST_CASE(a_directory_where_a_file_path_belongs_is_an_invalid_argument) {
    temp_dir dir;
    const auto table = thrown_by([&] { procreg::storage::json_table storage(table_options(dir.path() / "")); });
    BOOST_TEST(table.code() != procreg::errc::invalid_key, "no key is wrong here");
    BOOST_TEST(table.code() == procreg::errc::invalid_argument, table.what());

    procreg::storage::claim_file_options opts;
    opts.file = dir.path() / "";
    const auto claim_file = thrown_by([&] { claim_storage storage(opts); });
    BOOST_TEST(claim_file.code() != procreg::errc::invalid_key, "no key is wrong here");
    BOOST_TEST(claim_file.code() == procreg::errc::invalid_argument, claim_file.what());
}

// A writer outside the lock creates the claim file while a transaction is
// deciding: the commit refuses. Nobody is known to hold anything, so this
// is not `in_use`.
BOOST_AUTO_TEST_CASE(a_claim_file_changed_outside_the_lock_is_not_in_use) {
    temp_dir dir;
    procreg::storage::claim_file_options opts;
    opts.file = dir / "daemon.json";
    claim_registry reg{claim_storage(opts)};
    const auto e = thrown_by([&] {
        reg.transact([&](claim_registry::transaction_type& tx) {
            tx.insert(counter_record{"d", self_pid(), 0});
            procreg_test::write_text(opts.file, "{\"name\": \"d\", \"pid\": 1, \"count\": 0}");
        });
    });
    BOOST_TEST(e.code() != procreg::errc::in_use, "nobody holds anything: " << e.what());
    BOOST_TEST(e.code() == procreg::errc::changed_outside_lock, e.what());
    BOOST_TEST(!e.pid().has_value());
    BOOST_TEST(procreg_test::read_text(opts.file) == "{\"name\": \"d\", \"pid\": 1, \"count\": 0}");
}

// Every code has its own message, and the new ones are not "unknown".
BOOST_AUTO_TEST_CASE(every_code_has_a_message_of_its_own) {
    const procreg::errc codes[] = {
        procreg::errc::duplicate_key,      procreg::errc::conflict,       procreg::errc::corrupted_file,
        procreg::errc::in_use,             procreg::errc::io_failure,     procreg::errc::not_found,
        procreg::errc::invalid_key,        procreg::errc::unsafe_path,    procreg::errc::lock_timeout,
        procreg::errc::unsupported_file,   procreg::errc::invalid_record, procreg::errc::nested_transaction,
        procreg::errc::changed_outside_lock, procreg::errc::invalid_argument,
    };
    std::set<std::string> messages;
    for (const auto code : codes) {
        const std::string message = make_error_code(code).message();
        BOOST_TEST(message != "unknown procreg error");
        BOOST_TEST(messages.insert(message).second, "two codes share the message " << message);
    }
}

BOOST_AUTO_TEST_SUITE_END()
