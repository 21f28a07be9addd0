// Conformance suite of the yoi pod registry (seed 001, pod-registry/src/mutate.rs).
//
// Suite `seed`: the seed's 14 tests, ported one for one; their bodies are in
// support/seed_cases/yoi_cases.hpp, which tests/etcd/etcd_seed_test.cpp runs
// on etcd too. Here every step reloads the table from disk.
//
// Suite `processes`: real processes registering disjoint and overlapping
// write scopes at the same moment.
//
// Suites `scope_paths`, `semantics`, `errors`, `format`, `policies`: the
// scope-rule path logic, the readings of the seed this preset commits to
// (docs/example-yoi.md), the error contract, the on-disk format, and the
// operations under a caller-supplied liveness policy. Where the preset
// differs from the seed, docs/seeds.md lists it with the test that pins it.
#define BOOST_TEST_MODULE yoi
#include <boost/test/unit_test.hpp>

#include <procreg/liveness/callable_liveness.hpp>
#include <procreg/presets/yoi.hpp>

#include "../support/policy_matrix.hpp"
#include "../support/process.hpp"
#include "../support/seed_cases/yoi_cases.hpp"
#include "../support/temp_dir.hpp"

#include <boost/json.hpp>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <poll.h>
#include <unistd.h>

using procreg::yoi::allocation;
using procreg::yoi::delegation_scope;
using procreg::yoi::scope_error;
using procreg::yoi::scope_rule;
using procreg_test::temp_dir;
namespace yoi = procreg::yoi;
using test_registry = procreg_test::under_test<yoi::pod_registry>;

namespace {

using namespace procreg_test::yoi_cases;  // the helpers the cases share (write_rule, sid, ...)
namespace yoi_cases = procreg_test::yoi_cases;

// The preset's place: pods.json (and its lock) in a private directory.
struct file_place {
    temp_dir dir;
    test_registry open() const { return yoi::open<test_registry>(dir / "pods.json"); }
    std::filesystem::path path() const { return dir / "pods.json"; }
};
using table = yoi_cases::basic_table<file_place>;

}  // namespace

// ===========================================================================
// The seed's tests, ported.
// ===========================================================================
BOOST_AUTO_TEST_SUITE(seed)

BOOST_AUTO_TEST_CASE(register_detects_write_conflict) { yoi_cases::register_detects_write_conflict<file_place>(); }
BOOST_AUTO_TEST_CASE(duplicate_pod_name_rejected) { yoi_cases::duplicate_pod_name_rejected<file_place>(); }
BOOST_AUTO_TEST_CASE(delegate_must_be_subset) { yoi_cases::delegate_must_be_subset<file_place>(); }
BOOST_AUTO_TEST_CASE(delegate_uses_delegation_scope_not_direct_effective_write) {
    yoi_cases::delegate_uses_delegation_scope_not_direct_effective_write<file_place>();
}
BOOST_AUTO_TEST_CASE(delegate_succeeds_within_parent_scope) {
    yoi_cases::delegate_succeeds_within_parent_scope<file_place>();
}
BOOST_AUTO_TEST_CASE(delegate_rejects_sibling_overlap) { yoi_cases::delegate_rejects_sibling_overlap<file_place>(); }
BOOST_AUTO_TEST_CASE(release_reparents_children) { yoi_cases::release_reparents_children<file_place>(); }
BOOST_AUTO_TEST_CASE(reclaim_delegated_scope_removes_child_and_one_parent_deny_layer) {
    yoi_cases::reclaim_delegated_scope_removes_child_and_one_parent_deny_layer<file_place>();
}
BOOST_AUTO_TEST_CASE(reclaim_delegated_scope_removes_parent_deny_when_child_allocation_missing) {
    yoi_cases::reclaim_delegated_scope_removes_parent_deny_when_child_allocation_missing<file_place>();
}
BOOST_AUTO_TEST_CASE(reclaim_stale_reparents_and_removes_dead_entries) {
    yoi_cases::reclaim_stale_reparents_and_removes_dead_entries<file_place>();
}
BOOST_AUTO_TEST_CASE(read_rules_do_not_conflict_with_write) {
    yoi_cases::read_rules_do_not_conflict_with_write<file_place>();
}
BOOST_AUTO_TEST_CASE(releasing_pod_reopens_scope_for_fresh_registration) {
    yoi_cases::releasing_pod_reopens_scope_for_fresh_registration<file_place>();
}
BOOST_AUTO_TEST_CASE(delegated_scope_returns_to_parent_on_release) {
    yoi_cases::delegated_scope_returns_to_parent_on_release<file_place>();
}
BOOST_AUTO_TEST_CASE(register_pod_rejects_session_id_collision) {
    yoi_cases::register_pod_rejects_session_id_collision<file_place>();
}

BOOST_AUTO_TEST_SUITE_END()

// ===========================================================================
// Real processes racing for write scopes.
// ===========================================================================
BOOST_AUTO_TEST_SUITE(processes)

namespace {

struct report {
    std::int32_t index;
    std::int32_t outcome;     // 0 registered, 1 write conflict, 2 other scope error, 3 other failure
    std::int32_t competitor;  // index of the named competitor for a write conflict, else -1
};

void close_fd(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
}

/// Blocks until every writer of `fd` has closed it.
void wait_for_eof(int fd) {
    char byte;
    for (;;) {
        const ssize_t n = ::read(fd, &byte, 1);
        if (n == 0) return;
        if (n < 0 && errno != EINTR) return;
    }
}

}  // namespace

// Several processes, released at the same instant, each register one
// recursive write rule; the rules overlap in places (same path twice,
// ancestors and descendants) and are disjoint elsewhere (`/w/c` vs
// `/w/cc`: components, not prefixes). Every process that registered stays
// alive until the parent has checked the table. At the end: no two live
// allocations hold overlapping write scopes, every refused process got a
// write_conflict naming a registered pod whose rule really overlaps its
// own, and every registered process is in the table, alive.
BOOST_AUTO_TEST_CASE(concurrent_registrations_never_overlap) {
    const std::vector<std::string> targets = {"/w/a",   "/w",  "/w/a/x", "/w/b",   "/w/b",     "/w/c",
                                              "/w/cc",  "/v/1", "/w/c/d/e", "/v",     "/u",       "/w/cc/z",
                                              "/u/./k", "/t/",  "/t/s",   "/w/bb"};
    for (int round = 0; round < 3; ++round) {
        temp_dir dir;
        const auto path = dir / "pods.json";
        { auto reg = yoi::open(path); }  // creates the directory before the race

        int start[2], results[2], release[2];
        BOOST_TEST_REQUIRE(::pipe(start) == 0);
        BOOST_TEST_REQUIRE(::pipe(results) == 0);
        BOOST_TEST_REQUIRE(::pipe(release) == 0);

        std::vector<pid_t> children;
        for (std::size_t i = 0; i < targets.size(); ++i) {
            children.push_back(procreg_test::spawn([&, i]() -> int {
                close_fd(start[1]);
                close_fd(results[0]);
                close_fd(release[1]);
                wait_for_eof(start[0]);  // every child starts at once
                report out{static_cast<std::int32_t>(i), 3, -1};
                try {
                    auto reg = yoi::open(path);
                    reg.transact([&](auto& tx) {
                        yoi::register_pod(tx, "pod-" + std::to_string(i), static_cast<std::uint32_t>(::getpid()),
                                          sock("pod-" + std::to_string(i)), {write_rule(targets[i], true)},
                                          "segment-" + std::to_string(i));
                    });
                    out.outcome = 0;
                } catch (const scope_error& e) {
                    if (e.reason() == yoi::errc::write_conflict && e.competitor().rfind("pod-", 0) == 0) {
                        out.outcome = 1;
                        out.competitor = std::stoi(e.competitor().substr(4));
                    } else {
                        out.outcome = 2;
                    }
                } catch (...) {
                    out.outcome = 3;
                }
                (void)!::write(results[1], &out, sizeof out);
                close_fd(results[1]);
                if (out.outcome == 0) wait_for_eof(release[0]);  // hold the scope until checked
                return out.outcome;
            }));
        }
        close_fd(start[0]);
        close_fd(results[1]);
        close_fd(release[0]);
        close_fd(start[1]);  // go

        std::vector<report> reports;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (reports.size() < targets.size() && std::chrono::steady_clock::now() < deadline) {
            pollfd p{results[0], POLLIN, 0};
            if (::poll(&p, 1, 1000) <= 0) continue;
            report r{};
            const ssize_t n = ::read(results[0], &r, sizeof r);
            if (n == 0) break;  // every child has reported or died
            if (n == static_cast<ssize_t>(sizeof r)) reports.push_back(r);
        }
        close_fd(results[0]);
        BOOST_TEST_REQUIRE(reports.size() == targets.size());

        std::set<std::string> registered;
        for (const auto& r : reports) {
            BOOST_TEST_INFO("round " << round << ", " << targets[r.index]);
            BOOST_TEST((r.outcome == 0 || r.outcome == 1));
            if (r.outcome == 0) registered.insert("pod-" + std::to_string(r.index));
        }

        auto reg = yoi::open(path);
        const auto rows = reg.list();
        BOOST_TEST(rows.size() == registered.size());
        for (const auto& row : rows) {
            BOOST_TEST(row.alive);
            BOOST_TEST(registered.count(row.record.pod_name) == 1u);
        }
        for (std::size_t i = 0; i < rows.size(); ++i) {
            for (std::size_t j = i + 1; j < rows.size(); ++j) {
                BOOST_TEST_INFO(rows[i].record.pod_name << " vs " << rows[j].record.pod_name);
                BOOST_TEST(!yoi::rules_overlap(rows[i].record.scope_allow.at(0), rows[j].record.scope_allow.at(0)));
            }
        }
        for (const auto& r : reports) {
            if (r.outcome != 1) continue;
            BOOST_TEST_INFO(targets[r.index] << " refused, competitor " << r.competitor);
            BOOST_TEST_REQUIRE(r.competitor >= 0);
            BOOST_TEST(registered.count("pod-" + std::to_string(r.competitor)) == 1u);
            BOOST_TEST(yoi::rules_overlap(write_rule(targets[r.index], true), write_rule(targets[r.competitor], true)));
        }
        // "/w" overlaps most others and "/t/" overlaps "/t/s": not everyone can win.
        BOOST_TEST(registered.size() < targets.size());

        close_fd(release[1]);  // let the holders exit
        for (std::size_t i = 0; i < children.size(); ++i) {
            const int code = procreg_test::wait_exit(children[i]);
            for (const auto& r : reports) {
                if (static_cast<std::size_t>(r.index) == i) BOOST_TEST(code == r.outcome);
            }
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()

// ===========================================================================
// Scope-rule path logic.
// ===========================================================================
BOOST_AUTO_TEST_SUITE(scope_paths)

BOOST_AUTO_TEST_CASE(paths_compare_by_components_not_prefixes) {
    BOOST_TEST(!yoi::rules_overlap(write_rule("/src", true), write_rule("/srcx", true)));
    BOOST_TEST(!yoi::rules_overlap(write_rule("/srcx", true), write_rule("/src", true)));
    BOOST_TEST(!yoi::covers_fully(write_rule("/src", true), write_rule("/srcx/a", true)));
    BOOST_TEST(yoi::rules_overlap(write_rule("/src", true), write_rule("/src/core", true)));
    BOOST_TEST(yoi::rules_overlap(write_rule("/src/core", true), write_rule("/src", true)));
    BOOST_TEST(!yoi::rules_overlap(write_rule("/src", true), write_rule("/docs", true)));
    BOOST_TEST(yoi::covers_fully(write_rule("/src", true), write_rule("/src/core", true)));
    BOOST_TEST(!yoi::covers_fully(write_rule("/src/core", true), write_rule("/src", true)));
    BOOST_TEST(yoi::covers_fully(write_rule("/", true), write_rule("/anything/at/all", false)));
    // The same holds through a whole registration.
    table t;
    t.register_pod("a", {write_rule("/src", true)});
    BOOST_CHECK_NO_THROW(t.register_pod("b", {write_rule("/srcx", true)}));
}

BOOST_AUTO_TEST_CASE(shallow_rules_cover_the_target_and_its_direct_children) {
    // Not recursive: the target and its direct children.
    BOOST_TEST(yoi::rules_overlap(write_rule("/src", false), write_rule("/src/child", false)));
    BOOST_TEST(yoi::rules_overlap(write_rule("/src", false), write_rule("/src/child", true)));
    BOOST_TEST(!yoi::rules_overlap(write_rule("/src", false), write_rule("/src/a/b", true)));
    BOOST_TEST(!yoi::rules_overlap(write_rule("/src/a", false), write_rule("/src/b", false)));
    BOOST_TEST(yoi::rules_overlap(write_rule("/src/a", true), write_rule("/src", false)));
    BOOST_TEST(yoi::covers_fully(write_rule("/src", false), write_rule("/src", false)));
    BOOST_TEST(!yoi::covers_fully(write_rule("/src", false), write_rule("/src", true)));
    BOOST_TEST(!yoi::covers_fully(write_rule("/src", false), write_rule("/src/a", false)));
    BOOST_TEST(yoi::covers_fully(write_rule("/src", true), write_rule("/src/a", false)));
}

BOOST_AUTO_TEST_CASE(write_covers_read_but_not_the_reverse) {
    BOOST_TEST(yoi::covers_fully(write_rule("/src", true), read_rule("/src/a", true)));
    BOOST_TEST(!yoi::covers_fully(read_rule("/src", true), write_rule("/src/a", true)));
    BOOST_TEST(delegation({write_rule("/src", true)}).allows(read_rule("/src/a", true)));
    BOOST_TEST(!delegation({read_rule("/src", true)}).allows(write_rule("/src/a", true)));
}

BOOST_AUTO_TEST_CASE(normalisation_of_scope_paths) {
    const auto norm = [](const std::string& in) {
        std::string out, why;
        BOOST_TEST_INFO(in);
        BOOST_TEST_REQUIRE(yoi::normalize_scope_path(in, out, why));
        return out;
    };
    BOOST_TEST(norm("/src/") == "/src");
    BOOST_TEST(norm("/src//core///") == "/src/core");
    BOOST_TEST(norm("//src") == "/src");
    BOOST_TEST(norm("/src/./core/.") == "/src/core");
    BOOST_TEST(norm("/") == "/");
    BOOST_TEST(norm("///") == "/");
    BOOST_TEST(norm("/./") == "/");
    BOOST_TEST(norm("/workspace/.worktree/task") == "/workspace/.worktree/task");  // dot files are names
    BOOST_TEST(norm("/a/...") == "/a/...");
}

BOOST_AUTO_TEST_CASE(invalid_scope_paths_are_refused) {
    for (const std::string& bad : std::vector<std::string>{"", "src", "./src", "../src", "/src/../etc", "/..",
                                                           "/src/..", std::string("/src\0x", 6)}) {
        std::string out, why;
        BOOST_TEST_INFO("path of " << bad.size() << " bytes: " << bad);
        BOOST_TEST(!yoi::normalize_scope_path(bad, out, why));
        BOOST_TEST(!why.empty());
    }
}

BOOST_AUTO_TEST_CASE(operations_normalise_rules_and_refuse_invalid_ones) {
    table t;
    t.register_pod("a", {write_rule("/src//core/", true)});
    const auto a = t.find("a");
    BOOST_TEST_REQUIRE(a.has_value());
    BOOST_TEST(a->scope_allow.at(0).target == "/src/core");
    // A trailing slash or a dot is the same scope: still a conflict.
    const auto err = expect_scope_error([&] { t.register_pod("b", {write_rule("/src/./core/x", true)}); });
    BOOST_TEST(err.reason() == yoi::errc::write_conflict);

    for (const std::string bad : {"src/core", "/src/../src/core", ""}) {
        const auto invalid = expect_scope_error([&] { t.register_pod("c", {write_rule(bad, true)}); });
        BOOST_TEST(invalid.reason() == yoi::errc::invalid_scope);
        BOOST_TEST(invalid.code() == procreg::errc::invalid_key);
        BOOST_TEST_REQUIRE(invalid.rule().has_value());
        BOOST_TEST(invalid.rule()->target == bad);
    }
    // Invalid deny rules and delegation scopes are refused too.
    BOOST_TEST(expect_scope_error([&] { t.register_pod_with_deny("d", {write_rule("/d", true)}, {write_rule("d", true)}); })
                   .reason() == yoi::errc::invalid_scope);
    BOOST_TEST(expect_scope_error([&] {
                   t.delegate_scope("a", "e", {write_rule("/src/core/e", true)}, delegation({write_rule("..", true)}));
               }).reason() == yoi::errc::invalid_scope);
    BOOST_TEST(t.size() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()

// ===========================================================================
// Readings of the seed this preset commits to.
// ===========================================================================
BOOST_AUTO_TEST_SUITE(semantics)

// The conflict is blamed on the pod that really holds the region: the
// delegated child, not its parent.
BOOST_AUTO_TEST_CASE(conflict_names_the_deepest_real_owner) {
    table t;
    t.register_pod("a", {write_rule("/src", true)});
    t.delegate_scope("a", "b", {write_rule("/src/core", true)}, delegation({write_rule("/src", true)}));
    const auto err = expect_scope_error([&] { t.register_pod("x", {write_rule("/src/core/x", true)}); });
    BOOST_TEST(err.reason() == yoi::errc::write_conflict);
    BOOST_TEST(err.competitor() == "b");
    BOOST_TEST_REQUIRE(err.rule().has_value());
    BOOST_TEST(*err.rule() == write_rule("/src/core/x", true));
    BOOST_TEST_REQUIRE(err.competitor_rule().has_value());
    BOOST_TEST(*err.competitor_rule() == write_rule("/src/core", true));
    // A request that meets both A's remaining scope and B's names B first.
    const auto owners = t.reg.transact(
        [&](auto& tx) { return yoi::find_conflict_owners(tx, write_rule("/src", true)); });
    BOOST_TEST_REQUIRE(owners.size() == 2u);
    BOOST_TEST(owners[0].pod_name == "b");
    BOOST_TEST(owners[1].pod_name == "a");
}

// Deny rules carve the denied region out of a pod's scope, and only that.
BOOST_AUTO_TEST_CASE(deny_rules_carve_out_exactly_the_denied_region) {
    table t;
    t.register_pod_with_deny("parent", {write_rule("/src", true)}, {write_rule("/src/core", true)});
    BOOST_CHECK_NO_THROW(t.register_pod("child", {write_rule("/src/core", true)}));
    BOOST_TEST(!t.is_within_effective_write("parent", write_rule("/src/core/x", true)));
    BOOST_TEST(t.is_within_effective_write("parent", write_rule("/src/docs", true)));
    // A partial deny does not hide the parent's remaining scope.
    const auto err = expect_scope_error([&] { t.register_pod("other", {write_rule("/src", true)}); });
    BOOST_TEST(err.reason() == yoi::errc::write_conflict);
    BOOST_TEST(err.competitor() == "parent");
    BOOST_TEST_REQUIRE(err.competitor_rule().has_value());
    BOOST_TEST(err.competitor_rule()->target == "/src");
}

// A restored pod may re-register around what a live child still holds,
// but its deny rules must cover every competitor, not just one; the
// refusal names the first competitor, even a covered one (the seed's loop).
BOOST_AUTO_TEST_CASE(register_with_deny_skips_only_covered_competitors) {
    table t;
    t.register_pod("child", {write_rule("/src/core", true)});
    t.register_pod("stranger", {write_rule("/src/docs", true)});
    const auto err = expect_scope_error(
        [&] { t.register_pod_with_deny("restored", {write_rule("/src", true)}, {write_rule("/src/core", true)}); });
    BOOST_TEST(err.reason() == yoi::errc::write_conflict);
    BOOST_TEST(err.competitor() == "child");
    BOOST_CHECK_NO_THROW(t.register_pod_with_deny("restored", {write_rule("/src", true)},
                                                  {write_rule("/src/core", true), write_rule("/src/docs", true)}));
}

// The seed's deny rule (the default): a deny rule excuses a competitor only
// when it covers the competitor's whole rule, so a request that its own
// deny rule cancels is still refused by a wider holder. procreg's other
// reading, subtracting the deny rules from the request, admits it.
BOOST_AUTO_TEST_CASE(deny_rules_excuse_only_competitors_they_cover_fully) {
    table t;
    t.register_pod("q", {write_rule("/src", true)});
    const auto err = expect_scope_error(
        [&] { t.register_pod_with_deny("p", {write_rule("/src/core", true)}, {write_rule("/src/core", true)}); });
    BOOST_TEST(err.reason() == yoi::errc::write_conflict);
    BOOST_TEST(err.competitor() == "q");
    BOOST_TEST(*err.competitor_rule() == write_rule("/src", true));
    BOOST_TEST(!t.find("p").has_value());
    // A competitor with two overlapping rules is excused only if both are covered.
    t.register_pod("r", {write_rule("/lib/a", true), write_rule("/lib/b", true)});
    BOOST_TEST(expect_scope_error([&] {
                   t.register_pod_with_deny("s", {write_rule("/lib", true)}, {write_rule("/lib/a", true)});
               }).competitor() == "r");
    BOOST_CHECK_NO_THROW(t.register_pod_with_deny("s", {write_rule("/lib", true)},
                                                  {write_rule("/lib/a", true), write_rule("/lib/b", true)}));

    t.reg.transact([&](auto& tx) {
        yoi::register_pod_with_deny(tx, "p", self_pid(), sock("p"), {write_rule("/src/core", true)},
                                    {write_rule("/src/core", true)}, sid(),
                                    yoi::deny_reading::subtracted_from_request);
    });
    BOOST_TEST(t.find("p").has_value());
}

// A pod whose parent denies a region, or whose parent only reads it, still
// holds what was delegated to it: nobody else may register over it.
BOOST_AUTO_TEST_CASE(delegated_write_scope_is_held_even_when_the_parent_lacks_it) {
    table t;
    t.register_pod("orchestrator", {read_rule("/workspace", true)});
    t.delegate_scope("orchestrator", "coder", {write_rule("/workspace/task", true)},
                     delegation({write_rule("/workspace", true)}));
    auto err = expect_scope_error([&] { t.register_pod("intruder", {write_rule("/workspace/task/x", true)}); });
    BOOST_TEST(err.competitor() == "coder");

    t.register_pod_with_deny("p", {write_rule("/src", true)}, {write_rule("/src/core", true)});
    t.delegate_scope("p", "c", {write_rule("/src/core", true)}, delegation({write_rule("/src", true)}));
    err = expect_scope_error([&] { t.register_pod("intruder", {write_rule("/src/core", true)}); });
    BOOST_TEST(err.competitor() == "c");
}

// Releasing a middle pod hands its region back to its parent and keeps the
// grandchild's region held.
BOOST_AUTO_TEST_CASE(release_returns_scope_to_parent_but_not_the_grandchild_region) {
    table t;
    t.register_pod("a", {write_rule("/src", true)});
    t.delegate_scope("a", "b", {write_rule("/src/core", true)}, delegation({write_rule("/src", true)}));
    t.delegate_scope("b", "d", {write_rule("/src/core/x", true)}, delegation({write_rule("/src/core", true)}));
    BOOST_TEST(!t.is_within_effective_write("a", write_rule("/src/core/y", true)));
    t.release_pod("b");
    BOOST_TEST(t.is_within_effective_write("a", write_rule("/src/core/y", true)));
    BOOST_TEST(!t.is_within_effective_write("a", write_rule("/src/core/x", true)));
    BOOST_TEST(!t.is_within_effective_write("a", write_rule("/src/core", true)));
    BOOST_TEST(t.is_within_effective_write("a", read_rule("/src/core/x", true)));
    BOOST_TEST(!t.is_within_effective_write("nobody", write_rule("/src", true)));
}

BOOST_AUTO_TEST_SUITE_END()

// ===========================================================================
// Errors: distinguishable by code, carrying their details.
// ===========================================================================
BOOST_AUTO_TEST_SUITE(errors)

BOOST_AUTO_TEST_CASE(each_refusal_has_its_own_code_and_a_procreg_code) {
    table t;
    t.register_pod("a", {write_rule("/src", true)}, "segment-1");

    auto e = expect_scope_error([&] { t.register_pod("a", {write_rule("/docs", true)}); });
    BOOST_TEST(e.reason() == yoi::errc::duplicate_pod_name);
    BOOST_TEST(e.code() == procreg::errc::duplicate_key);
    BOOST_TEST(e.key() == "a");

    e = expect_scope_error([&] { t.release_pod("ghost"); });
    BOOST_TEST(e.reason() == yoi::errc::unknown_pod);
    BOOST_TEST(e.code() == procreg::errc::not_found);
    BOOST_TEST(e.pod() == "ghost");

    e = expect_scope_error(
        [&] { t.delegate_scope("ghost", "b", {write_rule("/x", true)}, delegation({write_rule("/", true)})); });
    BOOST_TEST(e.reason() == yoi::errc::unknown_pod);
    BOOST_TEST(e.pod() == "ghost");

    e = expect_scope_error([&] { t.register_pod("b", {write_rule("/docs", true)}, "segment-1"); });
    BOOST_TEST(e.reason() == yoi::errc::segment_conflict);
    BOOST_TEST(e.code() == procreg::errc::conflict);
    BOOST_TEST(e.competitor() == "a");
    BOOST_TEST(e.competitor_socket() == sock("a"));
    BOOST_TEST(e.key() == "a");

    e = expect_scope_error([&] { t.register_pod("b", {write_rule("/src/x", false)}); });
    BOOST_TEST(e.reason() == yoi::errc::write_conflict);
    BOOST_TEST(e.code() == procreg::errc::conflict);
    BOOST_TEST(e.pod() == "b");
    BOOST_TEST(e.competitor() == "a");
    BOOST_TEST(*e.rule() == write_rule("/src/x", false));
    BOOST_TEST(*e.competitor_rule() == write_rule("/src", true));

    e = expect_scope_error(
        [&] { t.delegate_scope("a", "b", {read_rule("/etc", true)}, delegation({write_rule("/src", true)})); });
    BOOST_TEST(e.reason() == yoi::errc::not_subset);
    BOOST_TEST(e.code() == procreg::errc::conflict);
    BOOST_TEST(e.spawner() == "a");
    BOOST_TEST(e.pod() == "b");
    BOOST_TEST(*e.rule() == read_rule("/etc", true));

    e = expect_scope_error([&] { t.register_pod("b", {read_rule("relative", true)}); });
    BOOST_TEST(e.reason() == yoi::errc::invalid_scope);
    BOOST_TEST(e.code() == procreg::errc::invalid_key);

    // Every refusal left the table as it was.
    BOOST_TEST(t.size() == 1u);
}

BOOST_AUTO_TEST_CASE(error_codes_live_in_their_own_category_and_messages_name_the_file) {
    table t;
    t.register_pod("a", {write_rule("/src", true)});
    const auto e = expect_scope_error([&] { t.register_pod("b", {write_rule("/src/core", true)}); });
    BOOST_TEST(std::string(e.yoi_code().category().name()) == "procreg.yoi");
    BOOST_TEST(e.yoi_code() == yoi::errc::write_conflict);
    BOOST_TEST(e.yoi_code() != std::error_code(yoi::errc::segment_conflict));
    BOOST_TEST(e.path() == t.path());
    const std::string what = e.what();
    BOOST_TEST(what.find(t.path().string()) != std::string::npos);
    BOOST_TEST(what.find("\"a\"") != std::string::npos);
    BOOST_TEST(what.find("/src/core") != std::string::npos);
    // Generic procreg code sees a procreg::error.
    try {
        t.register_pod("b", {write_rule("/src/core", true)});
        BOOST_FAIL("expected a conflict");
    } catch (const procreg::error& generic) {
        BOOST_TEST(generic.code() == procreg::errc::conflict);
        BOOST_TEST(generic.key() == "a");
    }
    // The error_code overload of transact reports the procreg code.
    std::error_code ec;
    t.reg.transact([&](auto& tx) { yoi::register_pod(tx, "b", self_pid(), sock("b"), {write_rule("/src", true)}, sid()); },
                   ec);
    BOOST_TEST(ec == procreg::errc::conflict);
}

BOOST_AUTO_TEST_SUITE_END()

// ===========================================================================
// The on-disk format.
// ===========================================================================
BOOST_AUTO_TEST_SUITE(format)

BOOST_AUTO_TEST_CASE(writes_the_seed_fields_under_allocations) {
    table t;
    const auto segment = sid();
    t.register_pod_with_deny("a", {write_rule("/src", true), read_rule("/docs", false)}, {write_rule("/src/core", true)});
    t.reg.transact([&](auto& tx) { tx.modify("a", [&](allocation& a) { a.segment_id = segment; }); });
    t.delegate_scope("a", "b", {write_rule("/src/lib", true)}, delegation({write_rule("/src", true)}));

    const auto doc = boost::json::parse(procreg_test::read_text(t.path()));
    BOOST_TEST_REQUIRE(doc.is_object());
    BOOST_TEST(doc.as_object().size() == 1u);
    const auto& rows = doc.at("allocations").as_array();
    BOOST_TEST_REQUIRE(rows.size() == 2u);
    const auto& a = rows[0].as_object();
    std::vector<std::string> keys;
    std::size_t identity_fields = 0;
    for (const auto& item : a) {
        const std::string key(item.key());
        if (procreg_test::liveness_stamps_identity<yoi::pod_registry> && procreg_test::is_identity_field(key)) {
            ++identity_fields;  // pidfd_liveness's owner identity, after the seed's fields
        } else {
            keys.push_back(key);
        }
    }
    BOOST_TEST((keys == std::vector<std::string>{"pod_name", "pid", "socket", "scope_allow", "scope_deny",
                                                 "delegated_from", "segment_id"}));
    BOOST_TEST(identity_fields == procreg_test::identity_fields_stamped<yoi::pod_registry>());
    BOOST_TEST(a.at("pod_name") == "a");
    BOOST_TEST(a.at("pid").to_number<std::uint32_t>() == self_pid());
    BOOST_TEST(a.at("socket") == boost::json::value(sock("a")));
    BOOST_TEST(a.at("scope_allow") == boost::json::parse(R"([
        {"target": "/src", "permission": "write", "recursive": true},
        {"target": "/docs", "permission": "read", "recursive": false}])"));
    BOOST_TEST(a.at("scope_deny") == boost::json::parse(R"([{"target": "/src/core", "permission": "write", "recursive": true}])"));
    BOOST_TEST(a.at("delegated_from").is_null());
    BOOST_TEST(a.at("segment_id") == boost::json::value(segment));
    const auto& b = rows[1].as_object();
    BOOST_TEST(b.at("delegated_from") == "a");
    BOOST_TEST(b.at("segment_id").is_null());
    BOOST_TEST(b.at("scope_deny").as_array().empty());
    BOOST_TEST(procreg_test::mode_of(t.path()) == 0600u);
    BOOST_TEST(std::filesystem::exists(t.dir / "pods.lock") == procreg_test::lock_uses_file<yoi::pod_registry>);
}

// A file written by another program: extra fields, no scope_deny (older
// writers), "path" instead of "target", capitalised permissions, trailing
// slashes. It is read, honoured, and its unknown fields survive a rewrite.
BOOST_AUTO_TEST_CASE(reads_foreign_files_and_keeps_unknown_fields) {
    table t;
    procreg_test::write_text(t.path(), R"({
  "allocations": [
    {"pod_name": "old", "pid": )" + std::to_string(self_pid()) + R"(, "socket": "/tmp/old.sock",
     "scope_allow": [{"path": "/src/", "permission": "Write", "recursive": true, "note": "x"}],
     "delegated_from": null, "segment_id": "s-1", "future_field": {"k": 1}}
  ],
  "version": 3
})");
    const auto old = t.find("old");
    BOOST_TEST_REQUIRE(old.has_value());
    BOOST_TEST(old->scope_deny.empty());
    BOOST_TEST(old->scope_allow.at(0) == write_rule("/src", true));
    BOOST_TEST(expect_scope_error([&] { t.register_pod("new", {write_rule("/src/x", true)}); }).competitor() == "old");

    t.register_pod("new", {write_rule("/docs", true)});
    const auto doc = boost::json::parse(procreg_test::read_text(t.path()));
    BOOST_TEST(doc.at("version") == 3);
    BOOST_TEST(doc.at("allocations").at(0).at("future_field").at("k") == 1);
    BOOST_TEST(doc.at("allocations").at(0).at("scope_allow").at(0).at("target") == "/src");
    BOOST_TEST(doc.at("allocations").at(1).at("pod_name") == "new");
}

// A rule the registry cannot interpret safely makes the file corrupt: it
// is reported with the field, never treated as empty, never rewritten.
BOOST_AUTO_TEST_CASE(an_invalid_stored_rule_is_a_corrupt_file) {
    for (const std::string rule : {R"({"target": "src", "permission": "write", "recursive": true})",
                                   R"({"target": "/a/../b", "permission": "write", "recursive": true})",
                                   R"({"target": "/a", "permission": "own", "recursive": true})",
                                   R"({"target": "/a", "permission": "write"})"}) {
        table t;
        const std::string text = R"({"allocations": [{"pod_name": "x", "pid": 1, "socket": "/s", "scope_allow": [)" +
                                 rule + R"(], "delegated_from": null, "segment_id": null}]})";
        procreg_test::write_text(t.path(), text);
        try {
            t.register_pod("y", {write_rule("/elsewhere", true)});
            BOOST_FAIL("an invalid rule on disk must not be ignored");
        } catch (const scope_error&) {
            BOOST_FAIL("expected a corrupted_file procreg::error");
        } catch (const procreg::error& e) {
            BOOST_TEST_INFO(e.what());
            BOOST_TEST(e.code() == procreg::errc::corrupted_file);
            BOOST_TEST(std::string(e.what()).find("scope_allow[0]") != std::string::npos);
        }
        BOOST_TEST(procreg_test::read_text(t.path()) == text);
    }
}

BOOST_AUTO_TEST_SUITE_END()

// ===========================================================================
// Other policies: the operations are templates over the transaction.
// ===========================================================================
BOOST_AUTO_TEST_SUITE(policies)

// Under a caller-supplied liveness policy, the stale reclaim inside
// register_pod asks that policy, and reparents the dead pod's children.
BOOST_AUTO_TEST_CASE(register_reclaims_through_the_registry_liveness_policy) {
    using probe_registry = procreg::registry<allocation, procreg::lock::flock_lock, procreg::storage::json_table,
                                             procreg::liveness::callable_liveness>;
    temp_dir dir;
    std::set<std::uint64_t> dead;
    probe_registry reg(procreg::storage::json_table(yoi::options(dir / "pods.json")),
                       procreg::liveness::callable_liveness([&](std::uint64_t pid) { return dead.count(pid) == 0; }));
    const auto add = [&](const std::string& name, std::uint32_t pid, const std::string& target) {
        reg.transact([&](auto& tx) { yoi::register_pod(tx, name, pid, sock(name), {write_rule(target, true)}, sid()); });
    };
    add("a", 1001, "/src");
    reg.transact([&](auto& tx) {
        yoi::delegate_scope(tx, "a", "b", 1002, sock("b"), {write_rule("/src/core", true)},
                            delegation({write_rule("/src", true)}));
        yoi::delegate_scope(tx, "b", "c", 1003, sock("c"), {write_rule("/src/core/x", true)},
                            delegation({write_rule("/src/core", true)}));
    });
    BOOST_CHECK_THROW(add("z", 1009, "/src/core"), scope_error);

    dead.insert(1002);  // b dies: its region goes back to a, c is reparented to a
    // In the caller's transaction, a refused registration rolls back the
    // whole transaction, the reclaim included (the registry form keeps it:
    // registry_form_keeps_the_reclaim_of_a_refused_registration); a reclaim
    // of its own is committed.
    BOOST_CHECK_THROW(add("z", 1009, "/src/core"), scope_error);  // a holds it again
    BOOST_TEST(reg.find("b").has_value());
    const auto removed = reg.transact([](auto& tx) { return yoi::reclaim_stale(tx); });
    BOOST_TEST_REQUIRE(removed.size() == 1u);
    BOOST_TEST(removed[0].pod_name == "b");
    BOOST_TEST(!reg.find("b").has_value());
    BOOST_TEST((reg.find("c")->delegated_from == std::optional<std::string>("a")));

    dead.insert(1001);  // a dies: c becomes top-level, /src/core minus /src/core/x is free
    add("z", 1009, "/src/core/y");
    BOOST_TEST(!reg.find("a").has_value());
    BOOST_TEST(!reg.find("c")->delegated_from.has_value());
    BOOST_TEST(reg.transact([](auto& tx) { return yoi::reclaim_stale(tx).size(); }) == 0u);
    BOOST_TEST(reg.transact([](auto& tx) { return yoi::find_by_segment(tx, "none") == nullptr; }));
}

// The registry form of each registration is the seed's: the stale reclaim
// that precedes its checks is saved even when the registration is refused
// (the refused pod is not added), and a registration that passes is saved
// together with the reclaim.
BOOST_AUTO_TEST_CASE(registry_form_keeps_the_reclaim_of_a_refused_registration) {
    using probe_registry = procreg::registry<allocation, procreg::lock::flock_lock, procreg::storage::json_table,
                                             procreg::liveness::callable_liveness>;
    temp_dir dir;
    std::set<std::uint64_t> dead;
    probe_registry reg(procreg::storage::json_table(yoi::options(dir / "pods.json")),
                       procreg::liveness::callable_liveness([&](std::uint64_t pid) { return dead.count(pid) == 0; }));
    yoi::register_pod(reg, "a", 1001, sock("a"), {write_rule("/src", true)}, sid());
    yoi::register_pod(reg, "gone", 1002, sock("gone"), {write_rule("/docs", true)}, sid());
    yoi::delegate_scope(reg, "gone", "child", 1003, sock("child"), {write_rule("/docs/x", true)},
                        delegation({write_rule("/docs", true)}));

    dead.insert(1002);
    // register_pod_with_deny: refused by a (live), yet gone is reaped and its child reparented.
    const auto refused = expect_scope_error([&] {
        yoi::register_pod_with_deny(reg, "b", 1004, sock("b"), {write_rule("/src/core", true)}, {}, sid());
    });
    BOOST_TEST(refused.reason() == yoi::errc::write_conflict);
    BOOST_TEST(refused.competitor() == "a");
    BOOST_TEST(!reg.find("gone").has_value());
    BOOST_TEST(!reg.find("b").has_value());
    BOOST_TEST(!reg.find("child")->delegated_from.has_value());

    // register_pod and delegate_scope: the same, for each kind of refusal.
    dead.insert(1003);
    BOOST_TEST(expect_scope_error([&] {
                   yoi::register_pod(reg, "a", 1005, sock("a2"), {write_rule("/x", true)}, sid());
               }).reason() == yoi::errc::duplicate_pod_name);
    BOOST_TEST(!reg.find("child").has_value());
    yoi::register_pod(reg, "c", 1006, sock("c"), {write_rule("/c", true)}, sid());
    dead.insert(1006);
    BOOST_TEST(expect_scope_error([&] {
                   yoi::delegate_scope(reg, "a", "d", 1007, sock("d"), {write_rule("/etc", true)},
                                       delegation({write_rule("/src", true)}));
               }).reason() == yoi::errc::not_subset);
    BOOST_TEST(!reg.find("c").has_value());
    BOOST_TEST(!reg.find("d").has_value());

    // A registration that passes: the pod and the reclaim, in one save.
    yoi::register_pod(reg, "e", 1008, sock("e"), {write_rule("/e", true)}, sid());
    dead.insert(1008);
    yoi::register_pod(reg, "f", 1009, sock("f"), {write_rule("/e", true)}, sid());
    BOOST_TEST(!reg.find("e").has_value());
    BOOST_TEST(reg.find("f").has_value());
    BOOST_TEST(reg.transact([](auto& tx) { return tx.size(); }) == 2u);
}

BOOST_AUTO_TEST_SUITE_END()
