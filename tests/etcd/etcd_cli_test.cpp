// tests/etcd/etcd_cli_test.cpp — the `procreg` tool on `etcd://HOST:PORT[,HOST:PORT]/PREFIX` (issue 20).
//
// The tool runs as a real process against a real member this test starts
// (support/etcd_cluster.hpp); the records are written by the library, as
// their owners would: with a lease (liveness::etcd_lease), or without one
// and judged by pid (kill_liveness on etcd_store).
#define BOOST_TEST_MODULE etcd_cli
#include <boost/test/unit_test.hpp>

#include "cli/tool_runner.hpp"
#include "support/etcd_cluster.hpp"
#include "support/process.hpp"

#include <procreg/liveness/etcd_lease.hpp>
#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/lock/no_lock.hpp>
#include <procreg/presets/algocline.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/etcd_store.hpp>

#include <chrono>
#include <filesystem>
#include <csignal>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include <unistd.h>

namespace {

using procreg::algocline::pool_session;
using procreg_cli_test::json_of;
using procreg_cli_test::run_tool;
using procreg_test::etcd_cluster;

using leased_registry = procreg::registry<pool_session, procreg::lock::no_lock, procreg::storage::etcd_store,
                                          procreg::liveness::etcd_lease>;
using pid_registry = procreg::registry<pool_session, procreg::lock::no_lock, procreg::storage::etcd_store,
                                       procreg::liveness::kill_liveness>;

const std::string prefix = "/procreg/pool";

procreg::storage::etcd_store store(const etcd_cluster& cluster) {
    procreg::storage::etcd_store::options opts;
    opts.connection = cluster.connection();
    opts.prefix = prefix;
    return procreg::storage::etcd_store(std::move(opts));
}

std::shared_ptr<procreg::liveness::etcd_lease_keeper> keeper(const etcd_cluster& cluster, std::chrono::seconds ttl) {
    procreg::liveness::etcd_lease_options opts;
    opts.connection = cluster.connection();
    opts.ttl = ttl;
    return std::make_shared<procreg::liveness::etcd_lease_keeper>(opts);
}

pid_registry pid_judged(const etcd_cluster& cluster) {
    return pid_registry(store(cluster), procreg::lock::no_lock{}, procreg::liveness::kill_liveness{});
}

std::string url(const etcd_cluster& cluster) { return "etcd://" + cluster.endpoints().front() + prefix; }

pool_session session(const std::string& sid, std::uint32_t pid) {
    return pool_session{sid, pid, "/run/" + sid + ".sock", "0.30.0", "2026-01-01T00:00:00Z"};
}

// The keys under the prefix, read by the library (no liveness involved).
std::set<std::string> keys(const etcd_cluster& cluster) {
    std::set<std::string> out;
    for (const auto& row : pid_judged(cluster).list()) out.insert(row.record.sid);
    return out;
}

// sid -> alive, as `procreg ls --json` reports.
std::map<std::string, bool> ls_alive(const procreg_cli_test::run_result& r) {
    std::map<std::string, bool> out;
    const boost::json::object parsed = json_of(r);
    for (const auto& rec : parsed.at("records").as_array()) {
        out[std::string(rec.at("key").as_string())] = rec.at("alive").as_bool();
    }
    return out;
}

// Three records: one leased (its pid means nothing to the lease), one of a
// live pid without a lease, one of a dead pid without a lease.
struct three_records {
    etcd_cluster cluster;
    std::shared_ptr<procreg::liveness::etcd_lease_keeper> lease = keeper(cluster, std::chrono::seconds(30));
    const std::uint32_t dead = static_cast<std::uint32_t>(procreg_test::dead_pid());

    three_records() {
        leased_registry owner(store(cluster), procreg::lock::no_lock{}, procreg::liveness::etcd_lease(lease));
        owner.insert(session("leased", dead));
        auto plain = pid_judged(cluster);
        plain.insert(session("live", static_cast<std::uint32_t>(::getpid())));
        plain.insert(session("dead", dead));
    }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(etcd_cli)

// ls, show, rm on a prefix: the key guessed, a lease counts as alive, a
// pid without a lease is judged by the pid.
BOOST_AUTO_TEST_CASE(ls_show_and_rm) {
    three_records f;
    const auto ls = run_tool({"ls", "--json", url(f.cluster)});
    BOOST_TEST_REQUIRE(ls.code == 0, ls.err);
    BOOST_TEST(json_of(ls).at("format").as_string() == "etcd");
    BOOST_TEST(json_of(ls).at("path").as_string() == url(f.cluster));
    const auto alive = ls_alive(ls);
    BOOST_TEST(alive.size() == 3u);
    BOOST_TEST(alive.at("leased"));
    BOOST_TEST(alive.at("live"));
    BOOST_TEST(!alive.at("dead"));

    const auto by_preset = run_tool({"ls", "--json", "--preset", "algocline", url(f.cluster)});
    BOOST_TEST_REQUIRE(by_preset.code == 0, by_preset.err);
    BOOST_TEST((ls_alive(by_preset) == alive));

    const auto shown = run_tool({"show", "--json", url(f.cluster), "live"});
    BOOST_TEST_REQUIRE(shown.code == 0, shown.err);
    BOOST_TEST(json_of(shown).at("record").at("fields").at("sock").as_string() == "/run/live.sock");
    BOOST_TEST(run_tool({"show", url(f.cluster), "nope"}).code == 1);

    const auto removed = run_tool({"rm", url(f.cluster), "live"});
    BOOST_TEST(removed.code == 0, removed.err);
    BOOST_TEST((keys(f.cluster) == std::set<std::string>{"dead", "leased"}));
    BOOST_TEST(run_tool({"rm", url(f.cluster), "live"}).code == 1);
}

// reap removes only the record whose owner is dead; --dry-run removes nothing.
BOOST_AUTO_TEST_CASE(reap_removes_only_dead_owners) {
    three_records f;
    const auto dry = run_tool({"reap", "--dry-run", "--json", url(f.cluster)});
    BOOST_TEST_REQUIRE(dry.code == 0, dry.err);
    BOOST_TEST(json_of(dry).at("removed").as_array().size() == 1u);
    BOOST_TEST(keys(f.cluster).size() == 3u);

    const auto reaped = run_tool({"reap", "--json", url(f.cluster)});
    BOOST_TEST_REQUIRE(reaped.code == 0, reaped.err);
    const boost::json::object parsed = json_of(reaped);
    const auto& removed = parsed.at("removed").as_array();
    BOOST_TEST_REQUIRE(removed.size() == 1u);
    BOOST_TEST(removed.at(0).at("key").as_string() == "dead");
    BOOST_TEST((keys(f.cluster) == std::set<std::string>{"leased", "live"}));
}

// doctor reports the dead owner's record, --fix removes it, then all is clean.
BOOST_AUTO_TEST_CASE(doctor_reports_and_fixes_dead_records) {
    three_records f;
    const auto report = run_tool({"doctor", "--json", url(f.cluster)});
    BOOST_TEST(report.code == 1, report.err);
    const boost::json::object parsed = json_of(report);
    const auto& problems = parsed.at("problems").as_array();
    BOOST_TEST_REQUIRE(problems.size() == 1u, report.out);
    BOOST_TEST(problems.at(0).at("kind").as_string() == "dead_record");
    BOOST_TEST(keys(f.cluster).size() == 3u);  // nothing changed without --fix

    const auto fixed = run_tool({"doctor", "--fix", url(f.cluster)});
    BOOST_TEST(fixed.code == 0, fixed.out + fixed.err);
    BOOST_TEST((keys(f.cluster) == std::set<std::string>{"leased", "live"}));
    const auto clean = run_tool({"doctor", "--json", url(f.cluster)});
    BOOST_TEST(clean.code == 0, clean.out + clean.err);
    BOOST_TEST(json_of(clean).at("clean").as_bool());
}

// A SIGKILLed owner's records vanish with its lease: the tool lists them
// until the TTL ends, then no more, with no reap.
BOOST_AUTO_TEST_CASE(a_killed_owners_leased_records_vanish_within_the_ttl) {
    etcd_cluster cluster;
    procreg_test::signal_pipe registered;
    const pid_t owner = procreg_test::spawn([&] {
        leased_registry reg(store(cluster), procreg::lock::no_lock{},
                            procreg::liveness::etcd_lease(keeper(cluster, std::chrono::seconds(2))));
        reg.insert(session("mine", static_cast<std::uint32_t>(::getpid())));
        registered.notify();
        for (;;) ::pause();
        return 0;
    });
    BOOST_TEST_REQUIRE(registered.wait());
    const auto before = run_tool({"ls", "--json", url(cluster)});
    BOOST_TEST_REQUIRE(before.code == 0, before.err);
    BOOST_TEST(ls_alive(before).at("mine"));
    ::kill(owner, SIGKILL);
    BOOST_TEST(procreg_test::wait_exit(owner) == 128 + SIGKILL);
    // TTL (2 s) + 1 s, bounded; etcd's lease expiry is checked every 500 ms.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3) + std::chrono::milliseconds(500);
    bool gone = false;
    while (!gone && std::chrono::steady_clock::now() < deadline) {
        const auto now = run_tool({"ls", "--json", url(cluster)});
        BOOST_TEST_REQUIRE(now.code == 0, now.err);
        gone = json_of(now).at("records").as_array().empty();
    }
    BOOST_TEST(gone);
}

// Several endpoints: a member that does not answer is failed over.
BOOST_AUTO_TEST_CASE(fails_over_to_the_next_endpoint) {
    three_records f;
    const std::string nobody = "127.0.0.1:" + std::to_string(procreg_test::free_loopback_port());
    const auto ls = run_tool({"ls", "--json", "etcd://" + nobody + "," + f.cluster.endpoints().front() + prefix});
    BOOST_TEST_REQUIRE(ls.code == 0, ls.err);
    BOOST_TEST(ls_alive(ls).size() == 3u);
    const auto unreachable = run_tool({"ls", "etcd://" + nobody + prefix});
    BOOST_TEST(unreachable.code == 4);
    BOOST_TEST(unreachable.err.find(nobody) != std::string::npos, unreachable.err);
}

// watch follows the prefix through etcd's watch stream: a record another
// process adds, then removes, is printed as it happens.
BOOST_AUTO_TEST_CASE(watch_prints_added_and_removed_as_they_happen) {
    three_records f;
    procreg_cli_test::running_program tool;
    procreg_cli_test::start_tool_into(tool, {"watch", "--json", "--timeout", "60", url(f.cluster)});
    // What the tool printed so far (nothing before it opened its output).
    const auto printed_lines = [&] {
        std::error_code ec;
        if (!std::filesystem::exists(tool.out_path(), ec)) return std::vector<boost::json::object>{};
        return procreg_cli_test::json_lines(procreg_test::read_text(tool.out_path()));
    };
    // Until the tool has its starting point a new record is part of it, not
    // an event: add one record after another until one is printed.
    std::string first;
    auto writer = pid_judged(f.cluster);
    const bool printed = procreg_cli_test::eventually([&] {
        const auto lines = printed_lines();
        if (!lines.empty()) {
            first = std::string(lines.front().at("key").as_string());
            return lines.front().at("event").as_string() == "added";
        }
        writer.insert(session("probe-" + std::to_string(writer.list().size()), static_cast<std::uint32_t>(::getpid())));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        return false;
    });
    if (!printed) {
        ::kill(tool.pid, SIGINT);
        const auto result = procreg_cli_test::finish(tool);
        BOOST_FAIL("watch printed no added event: " + result.out + result.err);
    }
    const pid_t other = procreg_test::spawn([&] { return pid_judged(f.cluster).erase(first) ? 0 : 1; });
    BOOST_TEST(procreg_test::wait_exit(other) == 0);
    const bool removed = procreg_cli_test::eventually([&] {
        for (const auto& line : printed_lines()) {
            if (line.at("event").as_string() == "removed" && line.at("key").as_string() == first) return true;
        }
        return false;
    });
    ::kill(tool.pid, SIGINT);
    const auto result = procreg_cli_test::finish(tool);
    BOOST_TEST(removed, result.out + result.err);
    BOOST_TEST(result.code == 0, result.err);
}

// What an etcd prefix cannot do is a usage error (exit 2), changing nothing.
BOOST_AUTO_TEST_CASE(what_does_not_apply_to_etcd_exits_2) {
    three_records f;
    const std::string ep = f.cluster.endpoints().front();
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"ls", "etcd://" + ep},                       // no prefix
             {"ls", "etcd://" + ep + "/"},                 // an empty one
             {"ls", "etcd:///procreg/pool"},               // no member
             {"ls", "--lock", "/tmp/x.lock", url(f.cluster)},
             {"ls", "--named-mutex", url(f.cluster)},
             {"ls", "--array", "sessions", url(f.cluster)},
             {"ls", "--preset", "trusty", url(f.cluster)},
             {"ls", "--retired", url(f.cluster)},
             {"retire", url(f.cluster), "live"},
             {"unretire", url(f.cluster), "live"},
             {"claim", url(f.cluster)}}) {
        const auto r = run_tool(args);
        BOOST_TEST(r.code == 2, args.front() << " " << args.back() << ": " << r.err);
    }
    BOOST_TEST(keys(f.cluster).size() == 3u);
}

// A malformed etcd:// URL is a usage error (exit 2) saying what is wrong,
// and a password in it is never echoed.
BOOST_AUTO_TEST_CASE(a_malformed_etcd_url_exits_2_naming_the_fault) {
    three_records f;
    const std::string ep = f.cluster.endpoints().front();
    for (const auto& [where, why] : std::vector<std::pair<std::string, std::string>>{
             {"etcd://127.0.0.1/procreg/pool", "port is missing"},
             {"etcd://[::1]/procreg/pool", "port is missing"},
             {"etcd://::1/procreg/pool", "brackets"},
             {"etcd://127.0.0.1:http/procreg/pool", "not a number"},
             {"etcd://127.0.0.1:70000/procreg/pool", "out of range"},
             {"etcd://user:s3cret@" + ep + "/procreg/pool", "user info"},
             {"etcd://" + ep + "/procreg/pool?x=1", "query string"}}) {
        const auto r = run_tool({"ls", where});
        BOOST_TEST_CONTEXT(where) {
            BOOST_TEST(r.code == 2, r.err);
            BOOST_TEST(r.err.find(why) != std::string::npos, r.err);
            BOOST_TEST(r.err.find("s3cret") == std::string::npos, r.err);
        }
    }
    const auto ok = run_tool({"ls", "etcd://" + ep + "/procreg/pool"});  // host:port keeps working
    BOOST_TEST(ok.code == 0, ok.err);
}

BOOST_AUTO_TEST_SUITE_END()
