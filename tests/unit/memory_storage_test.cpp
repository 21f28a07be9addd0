// The algocline conformance cases that do not look at files, run on a
// storage without files (tests/support/memory_storage.hpp): the storage
// contract asks only for find, for_each, put, erase, size and commit, and
// the registry — transactions, liveness, reap, conflicts, unknown keys,
// owner identities — works on exactly that. The cases shared with the seed
// suite run its own bodies (support/seed_cases/algocline_cases.hpp), except
// those with several processes (the store lives in one process's memory).
// The file-format cases of the algocline suite (permissions, the seed's
// bytes, a corrupted file) have no counterpart here: there is no file.
#define BOOST_TEST_MODULE memory storage runs the algocline cases
#include <boost/test/unit_test.hpp>

#include <procreg/liveness/pidfd_liveness.hpp>
#include <procreg/presets/algocline.hpp>
#include <procreg/registry.hpp>

#include "support/memory_storage.hpp"
#include "support/process.hpp"
#include "support/seed_cases/algocline_cases.hpp"

#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

using procreg::algocline::pool_session;
using procreg_test::memory_lock;
using procreg_test::memory_storage;
using procreg_test::memory_store;

namespace {

template <class Liveness = procreg::liveness::kill_liveness>
using memory_registry = procreg::registry<pool_session, memory_lock, memory_storage, Liveness>;

template <class Liveness = procreg::liveness::kill_liveness>
memory_registry<Liveness> open(const std::shared_ptr<memory_store>& store) {
    return memory_registry<Liveness>(memory_storage(store), memory_lock(store), Liveness{});
}

pool_session entry(const std::string& sid, std::uint32_t pid) {
    return pool_session::make(sid, pid, "/tmp/alc-pool/" + sid + ".sock", "0.30.0");
}

std::uint32_t self_pid() { return static_cast<std::uint32_t>(::getpid()); }

namespace algocline_cases = procreg_test::algocline_cases;

// The place the shared cases ask for: one store in this process's memory.
struct memory_place {
    std::shared_ptr<memory_store> store = std::make_shared<memory_store>();
    memory_registry<> open() const {
        return memory_registry<>(memory_storage(store), memory_lock(store), procreg::liveness::kill_liveness{});
    }
    bool nothing_stored() const { return store->records.empty(); }
    std::size_t stored_count() const { return store->records.size(); }
    std::string stored_bytes() const {
        std::string out;
        for (const auto& [key, json] : store->records) out += key + "=" + boost::json::serialize(json) + "\n";
        return out;
    }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(memory_storage_algocline)

BOOST_AUTO_TEST_CASE(load_default_when_absent) {
    memory_place place;
    algocline_cases::load_default_when_absent(place);
}

BOOST_AUTO_TEST_CASE(scan_and_gc_removes_dead_pid) {
    memory_place place;
    algocline_cases::scan_and_gc_removes_dead_pid(place);
}

BOOST_AUTO_TEST_CASE(concurrent_writers_no_entry_loss) {
    memory_place place;
    algocline_cases::concurrent_writers_no_entry_loss(place);
}

BOOST_AUTO_TEST_CASE(a_duplicate_key_is_refused_and_nothing_changes) {
    auto store = std::make_shared<memory_store>();
    auto reg = open(store);
    reg.insert(entry("s", self_pid()));
    try {
        reg.insert(entry("s", 1));
        BOOST_ERROR("a duplicate key was inserted");
    } catch (const procreg::error& e) {
        BOOST_TEST((e.code() == procreg::errc::duplicate_key));
    }
    BOOST_TEST(reg.find("s")->pid == self_pid());
}

// A step that throws writes nothing.
BOOST_AUTO_TEST_CASE(a_throwing_step_writes_nothing) {
    auto store = std::make_shared<memory_store>();
    auto reg = open(store);
    BOOST_CHECK_THROW(reg.transact([&](auto& tx) {
        tx.insert(entry("s", self_pid()));
        throw std::runtime_error("give up");
    }),
                      std::runtime_error);
    BOOST_TEST(reg.list().empty());
}

// Keys this program does not know survive an upsert (the seed's future fields).
BOOST_AUTO_TEST_CASE(unknown_keys_survive_an_upsert) {
    auto store = std::make_shared<memory_store>();
    auto reg = open(store);
    reg.insert(entry("s", self_pid()));
    store->records.at("s")["future_field"] = 42;
    reg.upsert(entry("s", self_pid()));
    BOOST_TEST(store->records.at("s").at("future_field").as_int64() == 42);
}

BOOST_AUTO_TEST_CASE(pids_out_of_range_are_dead) {
    memory_place place;
    algocline_cases::pids_out_of_range_are_dead(place);
}

// A conflict check sees live records only.
BOOST_AUTO_TEST_CASE(a_conflict_check_sees_live_records_only) {
    auto store = std::make_shared<memory_store>();
    auto reg = open(store);
    const auto dead = static_cast<std::uint32_t>(procreg_test::dead_pid());
    reg.insert(entry("dead", dead));
    const auto same_sock = [](const pool_session& a, const pool_session& b) { return a.version == b.version; };
    reg.insert(entry("new", self_pid()), same_sock);  // the only competitor is dead
    try {
        reg.insert(entry("third", self_pid()), same_sock);
        BOOST_ERROR("a live competitor did not conflict");
    } catch (const procreg::error& e) {
        BOOST_TEST((e.code() == procreg::errc::conflict));
        BOOST_TEST(e.key() == "new");
    }
}

// Owner identities are JSON like any other key: pidfd_liveness stamps them
// into the store, and a pid reuse (a wrong start time) reads dead.
BOOST_AUTO_TEST_CASE(owner_identities_live_in_the_records_json) {
    auto store = std::make_shared<memory_store>();
    auto reg = open<procreg::liveness::pidfd_liveness>(store);
    reg.insert(entry("s", self_pid()));
    BOOST_TEST_REQUIRE(store->records.at("s").contains("procreg_start_time"));
    BOOST_TEST(reg.list().at(0).alive);
    {
        auto& json = store->records.at("s");
        json["procreg_start_time"] = json.at("procreg_start_time").to_number<std::uint64_t>() + 7;
        json.erase("procreg_pidfs_inode");
    }
    BOOST_TEST(!reg.list().at(0).alive);
}

BOOST_AUTO_TEST_SUITE_END()
