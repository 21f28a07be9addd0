// tests/support/seed_cases/algocline_cases.hpp — the algocline conformance cases that hold on any storage.
//
// One body per case, run by the seed suite on the preset's JSON table
// (tests/seed/algocline_test.cpp) and by tests/etcd/etcd_seed_test.cpp on
// etcd: the same assertions, so a storage cannot pass with weaker ones.
// A case takes a `Place`, where one registry lives, with:
//   open()            a new registry object on the place (also called in a
//                     forked child, which must not share the parent's)
//   nothing_stored()  true when the place holds no trace of a record
//   stored_count()    the records stored, counted without the registry
//   stored_bytes()    everything stored, to prove it unchanged
// The suite's cases that look at files by nature (permissions, the seed's
// bytes, a corrupt file, directories) stay in the suite: see its comment.
#pragma once

#include <procreg/presets/algocline.hpp>

#include "support/process.hpp"

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <climits>
#include <csignal>
#include <cstdint>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace procreg_test::algocline_cases {

inline procreg::algocline::pool_session make_entry(const std::string& sid, std::uint32_t pid) {
    return procreg::algocline::pool_session::make(sid, pid, "/tmp/alc-pool/" + sid + ".sock", "0.30.0");
}

inline std::uint32_t self_pid() { return static_cast<std::uint32_t>(::getpid()); }

// T1 — nothing stored is an empty registry, and reading stores nothing.
template <class Place>
void load_default_when_absent(Place& place) {
    auto reg = place.open();
    BOOST_TEST(reg.list().empty());
    BOOST_TEST(place.nothing_stored());
}

// T2 — reap (the seed's scan_and_gc) removes the dead pid and keeps the live one.
template <class Place>
void scan_and_gc_removes_dead_pid(Place& place) {
    auto reg = place.open();
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
    BOOST_TEST(place.stored_count() == 1u);
}

// T4 — concurrent writers (threads) lose no entry: two threads share one
// registry object, two more each open their own.
template <class Place>
void concurrent_writers_no_entry_loss(Place& place) {
    auto shared = place.open();
    constexpr int per_thread = 50;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            const auto name = [t](int i) { return "t" + std::to_string(t) + "-s" + std::to_string(i); };
            if (t < 2) {
                for (int i = 0; i < per_thread; ++i) shared.insert(make_entry(name(i), self_pid()));
            } else {
                auto own = place.open();
                for (int i = 0; i < per_thread; ++i) own.insert(make_entry(name(i), self_pid()));
            }
        });
    }
    for (auto& thread : threads) thread.join();
    BOOST_TEST(shared.list().size() == 4u * per_thread);
}

// 4 real processes × 100 inserts each: every entry present, as stored and as listed.
template <class Place>
void concurrent_processes_lose_nothing(Place& place) {
    constexpr int processes = 4;
    constexpr int per_process = 100;
    std::vector<pid_t> children;
    for (int p = 0; p < processes; ++p) {
        children.push_back(procreg_test::spawn([&, p] {
            auto reg = place.open();
            for (int i = 0; i < per_process; ++i)
                reg.insert(make_entry("p" + std::to_string(p) + "-" + std::to_string(i), self_pid()));
            return 0;
        }));
    }
    for (const pid_t child : children) BOOST_TEST(procreg_test::wait_exit(child) == 0);

    BOOST_TEST(place.stored_count() == std::size_t{processes * per_process});
    auto reg = place.open();
    std::set<std::string> keys;
    for (const auto& row : reg.list()) keys.insert(row.record.sid);
    BOOST_TEST(keys.size() == std::size_t{processes * per_process});
}

// A writer SIGKILLed mid-transaction (holding the lock, where there is one)
// leaves what was stored intact and does not block the next transaction.
template <class Place>
void killed_lock_holder_does_not_wedge_or_corrupt(Place& place) {
    {
        auto reg = place.open();
        reg.insert(make_entry("before", self_pid()));
    }
    const std::string before = place.stored_bytes();
    procreg_test::signal_pipe holding;
    const pid_t child = procreg_test::spawn([&] {
        auto reg = place.open();
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

    auto reg = place.open();
    const bool acquired = reg.transact_for(std::chrono::seconds(5), [](auto&) { return true; });
    BOOST_TEST(acquired);
    BOOST_TEST(place.stored_bytes() == before);
    BOOST_TEST(reg.find("before").has_value());
    BOOST_TEST(!reg.find("never-committed").has_value());
    reg.insert(make_entry("after", self_pid()));
    BOOST_TEST(reg.list().size() == 2u);
}

// The seed's K-52 guard: a pid above i32::MAX is dead and pruned, never sent
// to kill() where it would mean a process group or broadcast; pid 0 is dead
// too (procreg's deliberate difference from the seed, docs/seeds.md).
template <class Place>
void pids_out_of_range_are_dead(Place& place) {
    auto reg = place.open();
    reg.insert(make_entry("overflow", static_cast<std::uint32_t>(INT_MAX) + 1u));
    reg.insert(make_entry("max", UINT32_MAX));
    reg.insert(make_entry("zero", 0));
    reg.insert(make_entry("me", self_pid()));
    const auto removed = reg.reap();
    BOOST_TEST(removed.size() == 3u);
    BOOST_TEST(reg.list().size() == 1u);
    BOOST_TEST(place.stored_count() == 1u);
}

}  // namespace procreg_test::algocline_cases
