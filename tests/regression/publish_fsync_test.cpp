// Issue 13 item 9: one rule for a directory fsync that fails after the
// change is published (docs/errors.md): every storage undoes the change and
// reports the error, so an operation that throws has changed nothing and
// may be retried. json_table and record_files used to leave the change in
// place and report it as failed: a caller that retried an insert got
// duplicate_key. The fault layer fails exactly that fsync.
#define BOOST_TEST_MODULE regression_publish_fsync
#include <boost/test/unit_test.hpp>

#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/claim_file.hpp>
#include <procreg/storage/json_table.hpp>
#include <procreg/storage/record_files.hpp>

#include "support/counter_registries.hpp"
#include "support/fault_driver.hpp"
#include "support/temp_dir.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

using procreg_test::counter_record;
using namespace procreg_test::faults;

namespace {

using procreg_test::counter_registry;
// Durable: the fsyncs under test are made.
using json_table_kind = procreg_test::basic_json_table_kind<true>;
using record_files_kind = procreg_test::basic_record_files_kind<true>;
using claim_file_kind = procreg_test::basic_claim_file_kind<true>;

counter_record row(const std::string& name, std::uint64_t count) {
    return counter_record{name, static_cast<std::uint32_t>(::getpid()), count};
}

// Runs `op` with the `nth` fsync failing once (EIO); returns the error text
// ("" when it did not throw).
std::string with_failing_fsync(unsigned long nth, const std::function<void()>& op) {
    plan p;
    p.fail_at = nth;
    p.error = EIO;
    p.mask = bit(call::fsync);
    std::string what;
    {
        armed guard(p);
        try {
            op();
        } catch (const procreg::error& e) {
            BOOST_TEST((e.code() == procreg::errc::io_failure), e.what());
            what = e.what();
        }
    }
    BOOST_TEST(p.injected == 1u);
    return what;
}

// Every file in `dir` (recursively) with its contents: the visible state.
std::vector<std::string> state_of(const std::filesystem::path& dir) {
    std::vector<std::string> out;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
        const std::string name = entry.path().filename().string();
        if (!entry.is_regular_file() || name.find("lock") != std::string::npos) continue;  // lock files
        out.push_back(entry.path().string() + "=" + procreg_test::read_text(entry.path()));
    }
    std::sort(out.begin(), out.end());
    return out;
}

// `op` on `reg` with the directory fsync after its publish (the `nth`
// fsync) failing: it throws, the state is as before, and retried it works.
template <class Registry>
void undone_and_retried(const std::filesystem::path& dir, Registry& reg, unsigned long nth,
                        const std::function<void(Registry&)>& op) {
    const auto before = state_of(dir);
    const std::string what = with_failing_fsync(nth, [&] { op(reg); });
    BOOST_TEST(what.find("fsync of the directory failed; the change was undone") != std::string::npos, what);
    BOOST_TEST((state_of(dir) == before), "the failed operation left its change visible");
    BOOST_TEST(temp_files_in(dir).empty());
    BOOST_CHECK_NO_THROW(op(reg));  // a retry is not refused by the change it failed to make
    BOOST_TEST((state_of(dir) != before));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(publish_fsync)

// Saves fsync the temp file (1st), then the directory (2nd).
BOOST_AUTO_TEST_CASE(json_table_undoes_a_first_save) {
    procreg_test::temp_dir dir;
    counter_registry<json_table_kind::storage> reg(json_table_kind::open(dir.path()));
    undone_and_retried<decltype(reg)>(dir.path(), reg, 2, [](auto& r) { r.insert(row("a", 1)); });
}

BOOST_AUTO_TEST_CASE(json_table_undoes_a_replacing_save) {
    procreg_test::temp_dir dir;
    counter_registry<json_table_kind::storage> reg(json_table_kind::open(dir.path()));
    reg.insert(row("a", 1));
    undone_and_retried<decltype(reg)>(dir.path(), reg, 2, [](auto& r) { r.insert(row("b", 2)); });
    BOOST_TEST(reg.list().size() == 2u);
}

BOOST_AUTO_TEST_CASE(record_files_undoes_an_insert) {
    procreg_test::temp_dir dir;
    counter_registry<record_files_kind::storage> reg(record_files_kind::open(dir.path()));
    undone_and_retried<decltype(reg)>(dir.path(), reg, 2, [](auto& r) { r.insert(row("a", 1)); });
}

BOOST_AUTO_TEST_CASE(record_files_undoes_a_rewrite) {
    procreg_test::temp_dir dir;
    counter_registry<record_files_kind::storage> reg(record_files_kind::open(dir.path()));
    reg.insert(row("a", 1));
    undone_and_retried<decltype(reg)>(dir.path(), reg, 2, [](auto& r) { r.upsert(row("a", 2)); });
    BOOST_TEST(reg.find("a")->count == 2u);
}

// A removal fsyncs only the directory.
BOOST_AUTO_TEST_CASE(record_files_undoes_a_removal) {
    procreg_test::temp_dir dir;
    counter_registry<record_files_kind::storage> reg(record_files_kind::open(dir.path()));
    reg.insert(row("a", 1));
    undone_and_retried<decltype(reg)>(dir.path(), reg, 1, [](auto& r) {
        if (!r.erase("a")) throw std::runtime_error("nothing to erase");
    });
    BOOST_TEST(!reg.find("a").has_value());
}

// A retire that replaces an earlier retired copy, and an unretire that
// replaces an active file: the undo brings back the file the move replaced
// too (a move fsyncs the destination directory first, then the source).
// Both start from an active "a" and a retired "a" of different contents,
// and `move` fails at either fsync; `replaced` names what must come back.
void move_over_a_file_is_undone(const std::function<void(counter_registry<record_files_kind::storage>&)>& move,
                                const char* replaced) {
    procreg_test::temp_dir dir;
    counter_registry<record_files_kind::storage> reg(record_files_kind::open(dir.path()));
    reg.insert(row("a", 1));
    (void)reg.retire("a");
    reg.insert(row("a", 2));
    for (const unsigned long nth : {1ul, 2ul}) {
        const auto before = state_of(dir.path());
        const std::string what = with_failing_fsync(nth, [&] { move(reg); });
        BOOST_TEST(what.find("the change was undone") != std::string::npos, what);
        BOOST_TEST((state_of(dir.path()) == before), "fsync " << nth << ": the undo lost the replaced " << replaced);
        BOOST_TEST(temp_files_in(dir.path()).empty());
    }
}

BOOST_AUTO_TEST_CASE(record_files_undoes_a_retire_over_a_retired_copy) {
    move_over_a_file_is_undone([](auto& r) { (void)r.retire("a"); }, "retired copy");
}

BOOST_AUTO_TEST_CASE(record_files_undoes_an_unretire_over_an_active_file) {
    move_over_a_file_is_undone([](auto& r) { (void)r.unretire("a"); }, "active file");
}

BOOST_AUTO_TEST_CASE(claim_file_undoes_a_claim) {
    procreg_test::temp_dir dir;
    counter_registry<claim_file_kind::storage> reg(claim_file_kind::open(dir.path()));
    undone_and_retried<decltype(reg)>(dir.path(), reg, 2, [](auto& r) { r.insert(row("a", 1)); });
}

BOOST_AUTO_TEST_SUITE_END()
