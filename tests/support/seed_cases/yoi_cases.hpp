// tests/support/seed_cases/yoi_cases.hpp — the yoi seed's own tests, on any storage.
//
// The 14 tests of the seed (pod-registry/src/mutate.rs), ported one for one,
// with one body each: tests/seed/yoi_test.cpp runs them on the preset's
// pods.json, tests/etcd/etcd_seed_test.cpp on etcd. As in the seed, every pod
// is registered with the test process's own pid, and one test rewrites a
// pod's pid to a fake dead one (with transaction::modify). Each step runs in
// its own transaction, so it reads only what the previous ones committed.
// A case takes a `Place` type: default-constructible, where one table lives,
// with `open()` giving a registry of yoi allocations on it.
#pragma once

#include <procreg/presets/yoi.hpp>

#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <cstdio>
#include <optional>
#include <ostream>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

namespace procreg::yoi {
// For Boost.Test's messages.
inline std::ostream& operator<<(std::ostream& out, const scope_rule& rule) { return out << describe(rule); }
}  // namespace procreg::yoi

namespace procreg_test::yoi_cases {

namespace yoi = procreg::yoi;
using procreg::yoi::allocation;
using procreg::yoi::delegation_scope;
using procreg::yoi::scope_error;
using procreg::yoi::scope_rule;

inline scope_rule write_rule(const std::string& path, bool recursive) { return scope_rule::write(path, recursive); }
inline scope_rule read_rule(const std::string& path, bool recursive) { return scope_rule::read(path, recursive); }
inline std::string sock(const std::string& name) { return "/tmp/" + name + ".sock"; }
inline delegation_scope delegation(std::vector<scope_rule> rules) { return delegation_scope{std::move(rules)}; }
inline std::uint32_t self_pid() { return static_cast<std::uint32_t>(::getpid()); }

/// A fresh random UUID (v4) as text, like the seed's `sid()`.
inline std::string sid() {
    static std::random_device device;
    unsigned char bytes[16];
    for (auto& b : bytes) b = static_cast<unsigned char>(device() & 0xffu);
    bytes[6] = static_cast<unsigned char>((bytes[6] & 0x0fu) | 0x40u);
    bytes[8] = static_cast<unsigned char>((bytes[8] & 0x3fu) | 0x80u);
    char out[37];
    std::snprintf(out, sizeof out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", bytes[0],
                  bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9], bytes[10],
                  bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]);
    return out;
}

/// A table on a fresh `Place`, and shorthands for one-step transactions.
template <class Place>
struct basic_table : Place {
    decltype(std::declval<const Place&>().open()) reg{this->open()};

    void register_pod(const std::string& name, std::vector<scope_rule> allow, std::string segment = sid()) {
        reg.transact([&](auto& tx) { yoi::register_pod(tx, name, self_pid(), sock(name), allow, segment); });
    }
    void register_pod_with_deny(const std::string& name, std::vector<scope_rule> allow, std::vector<scope_rule> deny) {
        reg.transact(
            [&](auto& tx) { yoi::register_pod_with_deny(tx, name, self_pid(), sock(name), allow, deny, sid()); });
    }
    void delegate_scope(const std::string& spawner, const std::string& spawned, std::vector<scope_rule> allow,
                        const delegation_scope& scope) {
        reg.transact(
            [&](auto& tx) { yoi::delegate_scope(tx, spawner, spawned, self_pid(), sock(spawned), allow, scope); });
    }
    void release_pod(const std::string& name) {
        reg.transact([&](auto& tx) { yoi::release_pod(tx, name); });
    }
    void reclaim_delegated_scope(const std::string& parent, const std::string& child, std::vector<scope_rule> rules) {
        reg.transact([&](auto& tx) { yoi::reclaim_delegated_scope(tx, parent, child, rules); });
    }
    bool is_within_effective_write(const std::string& pod, const scope_rule& rule) {
        return reg.transact([&](auto& tx) { return yoi::is_within_effective_write(tx, pod, rule); });
    }
    std::optional<allocation> find(const std::string& name) { return reg.find(name); }
    std::size_t size() {
        return reg.transact([](auto& tx) { return tx.size(); });
    }
};

/// Runs `step`, which must throw a scope_error; returns it.
template <class Step>
scope_error expect_scope_error(Step&& step) {
    try {
        step();
    } catch (const scope_error& e) {
        return e;
    }
    BOOST_FAIL("expected a procreg::yoi::scope_error");
    throw std::logic_error("unreachable");
}

template <class Place>
void register_detects_write_conflict() {
    basic_table<Place> t;
    t.register_pod("a", {write_rule("/src", true)});
    const auto err = expect_scope_error([&] { t.register_pod("b", {write_rule("/src/core", true)}); });
    BOOST_TEST(err.reason() == yoi::errc::write_conflict);
    BOOST_TEST(err.competitor() == "a");
}

template <class Place>
void duplicate_pod_name_rejected() {
    basic_table<Place> t;
    t.register_pod("a", {write_rule("/src", true)});
    const auto err = expect_scope_error([&] { t.register_pod("a", {write_rule("/docs", true)}); });
    BOOST_TEST(err.reason() == yoi::errc::duplicate_pod_name);
    BOOST_TEST(err.pod() == "a");
}

template <class Place>
void delegate_must_be_subset() {
    basic_table<Place> t;
    t.register_pod("a", {write_rule("/src", true)});
    const auto err = expect_scope_error([&] {
        t.delegate_scope("a", "b", {write_rule("/docs", true)}, delegation({write_rule("/src", true)}));
    });
    BOOST_TEST(err.reason() == yoi::errc::not_subset);
}

template <class Place>
void delegate_uses_delegation_scope_not_direct_effective_write() {
    basic_table<Place> t;
    t.register_pod("orchestrator", {read_rule("/workspace", true)});
    t.delegate_scope("orchestrator", "coder", {write_rule("/workspace/.worktree/task", true)},
                     delegation({write_rule("/workspace", true)}));
    const auto coder = t.find("coder");
    BOOST_TEST_REQUIRE(coder.has_value());
    BOOST_TEST((coder->delegated_from == std::optional<std::string>("orchestrator")));
}

template <class Place>
void delegate_succeeds_within_parent_scope() {
    basic_table<Place> t;
    t.register_pod("a", {write_rule("/src", true)});
    t.delegate_scope("a", "b", {write_rule("/src/core", true)}, delegation({write_rule("/src", true)}));
    BOOST_TEST(t.size() == 2u);
    // A's effective write no longer covers /src/core because B has it.
    BOOST_TEST(!t.is_within_effective_write("a", write_rule("/src/core", true)));
    // A still covers its own uninvolved areas.
    BOOST_TEST(t.is_within_effective_write("a", write_rule("/src/other", true)));
}

template <class Place>
void delegate_rejects_sibling_overlap() {
    basic_table<Place> t;
    t.register_pod("a", {write_rule("/src", true)});
    t.delegate_scope("a", "b", {write_rule("/src/core", true)}, delegation({write_rule("/src", true)}));
    // Sibling C from A tries to take /src/core/sub — already under B's scope.
    const auto err = expect_scope_error([&] {
        t.delegate_scope("a", "c", {write_rule("/src/core/sub", true)}, delegation({write_rule("/src", true)}));
    });
    BOOST_TEST(err.reason() == yoi::errc::write_conflict);
    BOOST_TEST(err.competitor() == "b");
}

template <class Place>
void release_reparents_children() {
    basic_table<Place> t;
    t.register_pod("a", {write_rule("/src", true)});
    t.delegate_scope("a", "b", {write_rule("/src/core", true)}, delegation({write_rule("/src", true)}));
    t.delegate_scope("b", "d", {write_rule("/src/core/x", true)}, delegation({write_rule("/src/core", true)}));
    t.release_pod("b");
    // D should now list A as its delegated_from.
    const auto d = t.find("d");
    BOOST_TEST_REQUIRE(d.has_value());
    BOOST_TEST((d->delegated_from == std::optional<std::string>("a")));
    BOOST_TEST(!t.find("b").has_value());
}

template <class Place>
void reclaim_delegated_scope_removes_child_and_one_parent_deny_layer() {
    basic_table<Place> t;
    const auto delegated_rule = write_rule("/src/core", true);
    t.register_pod_with_deny("a", {write_rule("/src", true)}, {delegated_rule, delegated_rule});
    t.register_pod("b", {delegated_rule});

    t.reclaim_delegated_scope("a", "b", {delegated_rule});
    auto a = t.find("a");
    BOOST_TEST_REQUIRE(a.has_value());
    BOOST_TEST((a->scope_deny == std::vector<scope_rule>{delegated_rule}));
    BOOST_TEST(!t.find("b").has_value());

    t.reclaim_delegated_scope("a", "b", {delegated_rule});
    a = t.find("a");
    BOOST_TEST_REQUIRE(a.has_value());
    // A missing child allocation still reclaims one matching parent deny.
    BOOST_TEST(a->scope_deny.empty());
}

template <class Place>
void reclaim_delegated_scope_removes_parent_deny_when_child_allocation_missing() {
    basic_table<Place> t;
    const auto delegated_rule = write_rule("/src/core", true);
    t.register_pod_with_deny("a", {write_rule("/src", true)}, {delegated_rule});
    t.reclaim_delegated_scope("a", "missing", {delegated_rule});
    const auto a = t.find("a");
    BOOST_TEST_REQUIRE(a.has_value());
    BOOST_TEST(a->scope_deny.empty());
}

template <class Place>
void reclaim_stale_reparents_and_removes_dead_entries() {
    basic_table<Place> t;
    t.register_pod("a", {write_rule("/src", true)});
    t.delegate_scope("a", "b", {write_rule("/src/core", true)}, delegation({write_rule("/src", true)}));
    t.delegate_scope("b", "d", {write_rule("/src/core/x", true)}, delegation({write_rule("/src/core", true)}));

    // Simulate B crashing by rewriting its pid to one the probe will treat as dead.
    const std::uint32_t fake_dead_pid = 0xffff'fff0u;
    t.reg.transact([&](auto& tx) { tx.modify("b", [&](allocation& a) { a.pid = fake_dead_pid; }); });
    const auto removed = t.reg.transact([&](auto& tx) {
        return yoi::reclaim_stale_with(tx, [&](std::uint32_t pid) { return pid != fake_dead_pid; });
    });

    BOOST_TEST_REQUIRE(removed.size() == 1u);
    BOOST_TEST(removed[0].pod_name == "b");
    BOOST_TEST(!t.find("b").has_value());
    const auto d = t.find("d");
    BOOST_TEST_REQUIRE(d.has_value());
    BOOST_TEST((d->delegated_from == std::optional<std::string>("a")));
}

template <class Place>
void read_rules_do_not_conflict_with_write() {
    basic_table<Place> t;
    t.register_pod("a", {write_rule("/src", true)});
    // B only reads under the same tree — allowed.
    t.register_pod("b", {read_rule("/src", true)});
    BOOST_TEST(t.size() == 2u);
}

template <class Place>
void releasing_pod_reopens_scope_for_fresh_registration() {
    basic_table<Place> t;
    t.register_pod("a", {write_rule("/src", true)});
    t.release_pod("a");
    BOOST_CHECK_NO_THROW(t.register_pod("b", {write_rule("/src", true)}));
}

template <class Place>
void delegated_scope_returns_to_parent_on_release() {
    basic_table<Place> t;
    t.register_pod("a", {write_rule("/src", true)});
    t.delegate_scope("a", "b", {write_rule("/src/core", true)}, delegation({write_rule("/src", true)}));
    BOOST_TEST(!t.is_within_effective_write("a", write_rule("/src/core", true)));
    t.release_pod("b");
    // /src/core is back in A's effective write scope.
    BOOST_TEST(t.is_within_effective_write("a", write_rule("/src/core", true)));
}

template <class Place>
void register_pod_rejects_session_id_collision() {
    basic_table<Place> t;
    const auto shared_session = sid();
    t.register_pod("first", {write_rule("/work/a", true)}, shared_session);
    // Same segment_id under a different pod_name: without the check both
    // would succeed and race on the same jsonl.
    const auto err =
        expect_scope_error([&] { t.register_pod("second", {write_rule("/work/b", true)}, shared_session); });
    BOOST_TEST(err.reason() == yoi::errc::segment_conflict);
    BOOST_TEST((err.segment_id() == std::optional<std::string>(shared_session)));
    BOOST_TEST(err.competitor() == "first");
}

}  // namespace procreg_test::yoi_cases
