// tests/etcd/etcd_test.cpp — the etcd storage and lease liveness against one real member (issue 20).
//
// Each case starts its own member (support/etcd_cluster.hpp). Owners are
// real processes: SIGKILLed, SIGSTOPped, in other pid namespaces.
#define BOOST_TEST_MODULE etcd
#include <boost/test/unit_test.hpp>

#include "support/counter_record.hpp"
#include "support/etcd_cluster.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <procreg/liveness/callable_liveness.hpp>
#include <procreg/liveness/etcd_lease.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/lock/no_lock.hpp>
#include <procreg/presets/agentmux.hpp>
#include <procreg/presets/algocline.hpp>
#include <procreg/presets/yoi.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/etcd_store.hpp>
#include <procreg/storage/record_files.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <vector>
#include <csignal>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include <sched.h>
#include <sys/prctl.h>
#include <unistd.h>

namespace {

using procreg::algocline::pool_session;
using procreg_test::counter_record;
using procreg_test::etcd_cluster;
using lease_registry =
    procreg::registry<pool_session, procreg::lock::no_lock, procreg::storage::etcd_store, procreg::liveness::etcd_lease>;
using counter_registry = procreg::registry<counter_record, procreg::lock::no_lock, procreg::storage::etcd_store,
                                           procreg::liveness::always_alive>;

procreg::storage::etcd_store::options store_options(const etcd_cluster& cluster, std::string prefix = "/procreg/pool",
                                                    std::chrono::milliseconds timeout = std::chrono::seconds(3)) {
    procreg::storage::etcd_store::options opts;
    opts.connection = cluster.connection(timeout);
    opts.prefix = std::move(prefix);
    return opts;
}

std::shared_ptr<procreg::liveness::etcd_lease_keeper> keeper(const etcd_cluster& cluster, std::chrono::seconds ttl,
                                                             std::function<void(std::int64_t)> on_lost = {}) {
    procreg::liveness::etcd_lease_options opts;
    opts.connection = cluster.connection();
    opts.ttl = ttl;
    opts.on_lost = std::move(on_lost);
    return std::make_shared<procreg::liveness::etcd_lease_keeper>(opts);
}

lease_registry owner_registry(const etcd_cluster& cluster, std::shared_ptr<procreg::liveness::etcd_lease_keeper> k) {
    return lease_registry(procreg::storage::etcd_store(store_options(cluster)), procreg::lock::no_lock{},
                          procreg::liveness::etcd_lease(std::move(k)));
}

lease_registry observer_registry(const etcd_cluster& cluster) {
    return lease_registry(procreg::storage::etcd_store(store_options(cluster)), procreg::lock::no_lock{},
                          procreg::liveness::etcd_lease{});
}

// The stored key as etcd holds it: value bytes and lease (empty when absent).
struct raw_kv {
    std::string value;
    std::int64_t lease = 0;
};
std::optional<raw_kv> raw_get(const etcd_cluster& cluster, const std::string& key) {
    procreg::detail::etcd_client client(cluster.connection());
    auto answer = client.call_ok("/v3/kv/range", {{"key", procreg::detail::base64_encode(key)}});
    const auto* kvs = answer.as_object().if_contains("kvs");
    if (!kvs || kvs->as_array().empty()) return std::nullopt;
    const auto& kv = kvs->as_array().front().as_object();
    raw_kv out;
    if (const auto* v = kv.if_contains("value")) out.value = *procreg::detail::base64_decode(v->as_string());
    out.lease = procreg::detail::etcd_client::int_field(kv, "lease");
    return out;
}

void raw_put(const etcd_cluster& cluster, const std::string& key, const std::string& value) {
    procreg::detail::etcd_client client(cluster.connection());
    client.call_ok("/v3/kv/put",
                   {{"key", procreg::detail::base64_encode(key)}, {"value", procreg::detail::base64_encode(value)}});
}

// Waits up to `limit` for `condition()`.
template <class Condition>
bool eventually(std::chrono::milliseconds limit, Condition&& condition) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
        if (condition()) return true;
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

pool_session session(std::string sid, std::uint32_t pid) {
    return pool_session{std::move(sid), pid, "/run/w.sock", "0.30.0", "2026-01-01T00:00:00Z"};
}


// Holds every racer between its reads and its commit until all have read,
// so that the commits really race (each racer waits only on its first run
// of the steps; a re-run after a lost race goes straight through).
class start_line {
public:
    start_line() {
        if (::pipe(ready_) != 0 || ::pipe(go_) != 0) throw std::runtime_error("pipe failed");
    }
    // In a racer, inside the steps.
    void arrive_and_wait(bool& first_run) {
        if (!first_run) return;
        first_run = false;
        const char byte = 1;
        (void)!::write(ready_[1], &byte, 1);
        char got = 0;
        (void)!::read(go_[0], &got, 1);
    }
    // In the parent: waits for `racers` arrivals, then lets them all go.
    bool release(int racers) {
        for (int i = 0; i < racers; ++i) {
            char got = 0;
            if (::read(ready_[0], &got, 1) != 1) return false;
        }
        const std::string bytes(static_cast<std::size_t>(racers), 'g');
        return ::write(go_[1], bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
    }

private:
    int ready_[2] = {-1, -1};
    int go_[2] = {-1, -1};
};

}  // namespace

BOOST_AUTO_TEST_SUITE(single)

// The algocline operations, on etcd: insert, duplicate, find, list, erase, upsert.
BOOST_AUTO_TEST_CASE(algocline_operations) {
    etcd_cluster cluster;
    auto reg = owner_registry(cluster, keeper(cluster, std::chrono::seconds(10)));
    reg.insert(session("s1", 11));
    reg.insert(session("s2", 12));
    try {
        reg.insert(session("s1", 99));
        BOOST_FAIL("a duplicate insert must fail");
    } catch (const procreg::error& e) {
        BOOST_TEST((e.code() == procreg::errc::duplicate_key));
        BOOST_TEST(std::string(e.what()).find("etcd://127.0.0.1:") != std::string::npos);
    }
    BOOST_TEST(reg.find("s1")->pid == 11u);  // never overwritten
    BOOST_TEST(!reg.find("nope"));
    auto rows = reg.list();
    BOOST_TEST_REQUIRE(rows.size() == 2u);
    BOOST_TEST(rows[0].record.sid == "s1");
    BOOST_TEST(rows[0].alive);
    BOOST_TEST(reg.reap().empty());
    BOOST_TEST(reg.erase("s1"));
    BOOST_TEST(!reg.erase("s1"));
    BOOST_TEST((reg.upsert(session("s2", 13)).status == procreg::upsert_status::replaced));
    BOOST_TEST(reg.find("s2")->pid == 13u);
    BOOST_TEST(reg.list().size() == 1u);
    // A record put without a lease has no live owner: reap removes it.
    raw_put(cluster, "/procreg/pool/orphan",
            R"({"sid":"orphan","pid":1,"sock":"/s","version":"1","created_at":"x"})");
    auto reaped = observer_registry(cluster).reap();
    BOOST_TEST_REQUIRE(reaped.size() == 1u);
    BOOST_TEST(reaped[0].sid == "orphan");
    BOOST_TEST(reg.list().size() == 1u);
    std::error_code ec;
    reg.insert(session("s2", 1), ec);
    BOOST_TEST((ec == procreg::errc::duplicate_key));
    try {
        reg.insert(session("../escape", 1));
        BOOST_FAIL("an unsafe key must be refused");
    } catch (const procreg::error& e) {
        BOOST_TEST((e.code() == procreg::errc::invalid_key));
    }
}

// The value is the record's JSON exactly as record_files writes its file,
// and fields the record type does not know survive a rewrite.
BOOST_AUTO_TEST_CASE(value_is_the_record_files_json_and_unknown_fields_survive) {
    etcd_cluster cluster;
    procreg_test::temp_dir dir;
    procreg::storage::record_files_options file_opts;
    file_opts.root = dir.path() / "records";
    file_opts.durable = false;
    procreg::registry<pool_session, procreg::lock::flock_lock, procreg::storage::record_files,
                      procreg::liveness::always_alive>
        files{procreg::storage::record_files(file_opts)};
    procreg::registry<pool_session, procreg::lock::no_lock, procreg::storage::etcd_store, procreg::liveness::always_alive>
        reg{procreg::storage::etcd_store(store_options(cluster))};
    files.insert(session("s1", 7));
    reg.insert(session("s1", 7));
    const auto stored = raw_get(cluster, "/procreg/pool/s1");
    BOOST_TEST_REQUIRE(stored.has_value());
    BOOST_TEST(stored->value == procreg_test::read_text(file_opts.root / "s1.json"));
    BOOST_TEST(stored->lease == 0);  // a registry without owners puts without a lease

    raw_put(cluster, "/procreg/pool/s2",
            R"({"sid":"s2","pid":5,"sock":"/s","version":"1","created_at":"x","future":{"a":[1,2]}})");
    reg.transact([](auto& tx) { BOOST_TEST(tx.modify("s2", [](pool_session& s) { s.version = "2"; })); });
    const auto rewritten = raw_get(cluster, "/procreg/pool/s2");
    BOOST_TEST_REQUIRE(rewritten.has_value());
    BOOST_TEST(rewritten->value.find("\"future\"") != std::string::npos);
    BOOST_TEST(rewritten->value.find("\"version\": \"2\"") != std::string::npos);
}

// AgentMux-like records (no owner, always_alive) are put without a lease and never reaped.
BOOST_AUTO_TEST_CASE(agentmux_records_without_owner) {
    etcd_cluster cluster;
    using agent_registry = procreg::registry<procreg::agentmux::agent_record, procreg::lock::no_lock,
                                             procreg::storage::etcd_store, procreg::liveness::always_alive>;
    agent_registry reg{procreg::storage::etcd_store(store_options(cluster, "/agentmux/agents"))};
    auto record = procreg::agentmux::agent_record::make("agent-1");
    record.data.name = "claude";
    reg.insert(record);
    BOOST_TEST((reg.find("agent-1") == record));
    BOOST_TEST(raw_get(cluster, "/agentmux/agents/agent-1")->lease == 0);
    BOOST_TEST(reg.reap().empty());
    raw_put(cluster, "/agentmux/agents/broken", "{not json");
    std::vector<procreg::skipped_file> skipped;
    reg.transact([&](auto& tx) { skipped = tx.skipped_files(); });
    BOOST_TEST_REQUIRE(skipped.size() == 1u);
    BOOST_TEST(skipped[0].path.string().find("/agentmux/agents/broken") != std::string::npos);
    BOOST_TEST(reg.list().size() == 1u);
    // A value that is not a record is never overwritten.
    auto over = procreg::agentmux::agent_record::make("broken");
    BOOST_TEST((reg.upsert(over).status == procreg::upsert_status::skipped));
    BOOST_TEST(raw_get(cluster, "/agentmux/agents/broken")->value == "{not json");
}

// Processes racing to insert one key: exactly one wins, the others get
// duplicate_key (a create-only txn, never an overwrite).
BOOST_AUTO_TEST_CASE(concurrent_inserts_of_one_key_make_one_record) {
    etcd_cluster cluster;
    constexpr int racers = 6;
    start_line line;
    std::vector<pid_t> children;
    for (int i = 0; i < racers; ++i) {
        children.push_back(procreg_test::spawn([&, i] {
            counter_registry reg{procreg::storage::etcd_store(store_options(cluster, "/race"))};
            bool first_run = true;
            std::error_code ec;
            reg.transact(
                [&](auto& tx) {
                    tx.insert(counter_record{"shared", static_cast<std::uint32_t>(::getpid()),
                                             static_cast<std::uint64_t>(i)});
                    line.arrive_and_wait(first_run);  // every racer has found the key free
                },
                ec);
            if (!ec) return 0;
            return ec == procreg::errc::duplicate_key ? 1 : 2;
        }));
    }
    BOOST_TEST(line.release(racers));
    int winners = 0;
    for (pid_t child : children) {
        const int code = procreg_test::wait_exit(child);
        BOOST_TEST((code == 0 || code == 1));
        winners += code == 0 ? 1 : 0;
    }
    BOOST_TEST(winners == 1);
}

// Read-modify-write from several processes at once loses no update: the
// commit compares what was read, and a lost race runs the steps again.
BOOST_AUTO_TEST_CASE(concurrent_read_modify_write_is_serializable) {
    etcd_cluster cluster;
    counter_registry setup{procreg::storage::etcd_store(store_options(cluster, "/counter"))};
    setup.insert(counter_record{"c", 0, 0});
    constexpr int writers = 4;
    constexpr int rounds = 25;
    std::vector<pid_t> children;
    for (int i = 0; i < writers; ++i) {
        children.push_back(procreg_test::spawn([&] {
            counter_registry reg{procreg::storage::etcd_store(store_options(cluster, "/counter"))};
            for (int r = 0; r < rounds; ++r) {
                reg.transact([](auto& tx) { tx.modify("c", [](counter_record& c) { ++c.count; }); });
            }
            return 0;
        }));
    }
    for (pid_t child : children) BOOST_TEST(procreg_test::wait_exit(child) == 0);
    BOOST_TEST(setup.find("c")->count == static_cast<std::uint64_t>(writers * rounds));
}

// A conflict check reads the whole prefix: a record added under it after
// the listing fails the commit, so two racing inserts of conflicting
// records (different keys, same socket) never both succeed.
BOOST_AUTO_TEST_CASE(conflict_check_sees_records_added_after_the_listing) {
    etcd_cluster cluster;
    constexpr int racers = 6;
    start_line line;
    std::vector<pid_t> children;
    for (int i = 0; i < racers; ++i) {
        children.push_back(procreg_test::spawn([&, i] {
            auto reg = owner_registry(cluster, keeper(cluster, std::chrono::seconds(10)));
            auto mine = session("s" + std::to_string(i), static_cast<std::uint32_t>(::getpid()));
            mine.sock = "/run/one.sock";
            bool first_run = true;
            try {
                reg.transact([&](auto& tx) {
                    tx.insert(mine, [](const pool_session& a, const pool_session& b) { return a.sock == b.sock; });
                    line.arrive_and_wait(first_run);  // every racer has listed no conflict
                });
            } catch (const procreg::error& e) {
                if (e.code() == procreg::errc::conflict) {
                    ::pause();  // keep the winner's lease alive until killed
                }
                return 2;
            }
            ::pause();
            return 0;
        }));
    }
    BOOST_TEST_REQUIRE(line.release(racers));
    auto reader = observer_registry(cluster);
    BOOST_TEST(eventually(std::chrono::seconds(20), [&] { return reader.list().size() >= 1u; }));
    // The losers re-run, see the winner, and give up; none may slip in late.
    std::this_thread::sleep_for(std::chrono::seconds(2));
    BOOST_TEST(reader.list().size() == 1u);
    for (pid_t child : children) {
        ::kill(child, SIGKILL);
        procreg_test::wait_exit(child);
    }
}

// An owner SIGKILLed: its lease expires and every other process stops
// seeing its records within TTL + 1 s.
BOOST_AUTO_TEST_CASE(sigkilled_owner_records_vanish_within_ttl) {
    etcd_cluster cluster;
    procreg_test::signal_pipe ready;
    const pid_t owner = procreg_test::spawn([&] {
        auto reg = owner_registry(cluster, keeper(cluster, std::chrono::seconds(2)));
        reg.insert(session("w1", static_cast<std::uint32_t>(::getpid())));
        reg.insert(session("w2", static_cast<std::uint32_t>(::getpid())));
        ready.notify();
        for (;;) ::pause();
        return 0;
    });
    BOOST_TEST_REQUIRE(ready.wait(std::chrono::seconds(20)));
    auto reader = observer_registry(cluster);
    auto rows = reader.list();
    BOOST_TEST_REQUIRE(rows.size() == 2u);
    BOOST_TEST(rows[0].alive);
    // Kept alive past its TTL while the owner lives.
    std::this_thread::sleep_for(std::chrono::seconds(3));
    BOOST_TEST(reader.list().size() == 2u);
    ::kill(owner, SIGKILL);
    procreg_test::wait_exit(owner);
    const auto killed = std::chrono::steady_clock::now();
    BOOST_TEST(eventually(std::chrono::seconds(3), [&] { return reader.list().empty(); }));
    BOOST_TEST_MESSAGE("records gone "
                       << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed)
                              .count()
                       << " ms after the SIGKILL (TTL 2 s)");
    BOOST_TEST(!raw_get(cluster, "/procreg/pool/w1"));
}

// A clean shutdown revokes the lease: the records vanish at once.
BOOST_AUTO_TEST_CASE(clean_shutdown_revokes_the_lease) {
    etcd_cluster cluster;
    const pid_t owner = procreg_test::spawn([&] {
        auto reg = owner_registry(cluster, keeper(cluster, std::chrono::seconds(30)));
        reg.insert(session("w1", static_cast<std::uint32_t>(::getpid())));
        return 0;  // the keeper's destructor revokes
    });
    BOOST_TEST_REQUIRE(procreg_test::wait_exit(owner) == 0);
    BOOST_TEST(!raw_get(cluster, "/procreg/pool/w1"));
    BOOST_TEST(observer_registry(cluster).list().empty());
}

// An owner paused (SIGSTOP) past its TTL loses its lease: after SIGCONT it
// notices (state and callback), its next write fails, and renew() takes a
// new lease (never the expired id) under which it registers again.
BOOST_AUTO_TEST_CASE(lease_lost_under_a_paused_owner_is_noticed_and_renewed) {
    etcd_cluster cluster;
    procreg_test::signal_pipe registered;
    procreg_test::signal_pipe reregistered;
    const pid_t owner = procreg_test::spawn([&] {
        std::atomic<std::int64_t> reported{0};
        auto k = keeper(cluster, std::chrono::seconds(2), [&](std::int64_t lost) { reported = lost; });
        auto reg = owner_registry(cluster, k);
        const std::int64_t first = k->id();
        reg.insert(session("w1", static_cast<std::uint32_t>(::getpid())));
        registered.notify();
        // Stopped here by the parent, past the TTL.
        while (k->state() == procreg::liveness::lease_state::held) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        if (k->state() != procreg::liveness::lease_state::lost) return 10;
        std::error_code ec;
        reg.upsert(session("w1", static_cast<std::uint32_t>(::getpid())), ec);
        if (ec != procreg::errc::io_failure) return 11;
        const std::int64_t second = k->renew();
        if (second == 0 || second == first) return 12;
        reg.insert(session("w1", static_cast<std::uint32_t>(::getpid())));
        for (int i = 0; i < 100 && reported.load() != first; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        if (reported.load() != first) return 13;
        reregistered.notify();
        for (;;) ::pause();
        return 0;
    });
    BOOST_TEST_REQUIRE(registered.wait(std::chrono::seconds(20)));
    const auto before = raw_get(cluster, "/procreg/pool/w1");
    BOOST_TEST_REQUIRE(before.has_value());
    ::kill(owner, SIGSTOP);
    BOOST_TEST(eventually(std::chrono::seconds(10), [&] { return !raw_get(cluster, "/procreg/pool/w1"); }));
    ::kill(owner, SIGCONT);
    const bool again = reregistered.wait(std::chrono::seconds(20));
    const auto after = raw_get(cluster, "/procreg/pool/w1");
    ::kill(owner, SIGKILL);
    const int code = procreg_test::wait_exit(owner);
    BOOST_TEST_REQUIRE(again, "owner exited with " << code);
    BOOST_TEST_REQUIRE(after.has_value());
    BOOST_TEST(after->lease != 0);
    BOOST_TEST(after->lease != before->lease);  // a new lease, never the expired id
}

// Every member down: each call fails within its timeout with an io_failure
// naming the endpoint, and works again once the member is back.
BOOST_AUTO_TEST_CASE(member_down_fails_within_the_timeout_then_recovers) {
    etcd_cluster cluster;
    counter_registry reg{procreg::storage::etcd_store(store_options(cluster, "/down", std::chrono::milliseconds(800)))};
    reg.insert(counter_record{"a", 0, 1});
    cluster.signal(0, SIGSTOP);  // a member that accepts but never answers
    for (int i = 0; i < 2; ++i) {
        const auto started = std::chrono::steady_clock::now();
        try {
            reg.find("a");
            BOOST_FAIL("a call to a stopped member must fail");
        } catch (const procreg::error& e) {
            BOOST_TEST((e.code() == procreg::errc::io_failure));
            BOOST_TEST(std::string(e.what()).find(cluster.endpoints()[0]) != std::string::npos, e.what());
            BOOST_TEST_MESSAGE("stopped member: failed after "
                               << std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::steady_clock::now() - started)
                                      .count()
                               << " ms (timeout 800 ms): " << e.what());
        }
        BOOST_TEST((std::chrono::steady_clock::now() - started < std::chrono::seconds(3)));
    }
    cluster.signal(0, SIGCONT);
    cluster.kill(0);
    const auto started = std::chrono::steady_clock::now();
    std::error_code ec;
    reg.find("a", ec);
    BOOST_TEST((ec == procreg::errc::io_failure));
    BOOST_TEST_MESSAGE("killed member: failed after "
                       << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started)
                              .count()
                       << " ms");
    BOOST_TEST((std::chrono::steady_clock::now() - started < std::chrono::seconds(3)));
    cluster.restart(0);
    cluster.wait_ready();
    BOOST_TEST(reg.find("a")->count == 1u);
}

// Authentication on: the right password works, a wrong one is refused
// with a clear error naming the user.
BOOST_AUTO_TEST_CASE(auth_wrong_password_is_refused) {
    etcd_cluster cluster;
    {
        procreg::detail::etcd_client admin(cluster.connection());
        admin.call_ok("/v3/auth/user/add", {{"name", "root"}, {"password", "right"}});
        admin.call_ok("/v3/auth/role/add", {{"name", "root"}});
        admin.call_ok("/v3/auth/user/grant", {{"user", "root"}, {"role", "root"}});
        admin.call_ok("/v3/auth/enable", boost::json::object{});
    }
    auto opts = store_options(cluster, "/auth");
    opts.connection.user = "root";
    opts.connection.password = "wrong";
    try {
        procreg::storage::etcd_store refused(opts);
        BOOST_FAIL("a wrong password must be refused");
    } catch (const procreg::error& e) {
        BOOST_TEST((e.code() == procreg::errc::io_failure));
        BOOST_TEST(e.os_error() == EACCES);
        BOOST_TEST(std::string(e.what()).find("authentication") != std::string::npos, e.what());
        BOOST_TEST(std::string(e.what()).find("\"root\"") != std::string::npos, e.what());
    }
    // Without credentials, etcd refuses the request itself.
    counter_registry anonymous{procreg::storage::etcd_store(store_options(cluster, "/auth"))};
    std::error_code ec;
    anonymous.insert(counter_record{"a", 0, 1}, ec);
    BOOST_TEST((ec == procreg::errc::io_failure));
    opts.connection.password = "right";
    counter_registry reg{procreg::storage::etcd_store(opts)};
    reg.insert(counter_record{"a", 0, 1});
    BOOST_TEST(reg.find("a")->count == 1u);
}

// Two owners with the same pid (each pid 1 of its own pid namespace) are
// two owners: killing one removes only its records.
BOOST_AUTO_TEST_CASE(same_pid_in_two_pid_namespaces_are_two_owners) {
    BOOST_TEST_REQUIRE(::geteuid() == 0, "this test needs root (unshare(CLONE_NEWPID))");
    etcd_cluster cluster;
    procreg_test::signal_pipe ready;
    const auto namespaced_owner = [&](std::string key) {
        return procreg_test::spawn([&, key] {
            if (::unshare(CLONE_NEWPID) != 0) return 20;
            const pid_t init = procreg_test::spawn([&, key] {
                ::prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (::getpid() != 1) return 21;
                auto reg = owner_registry(cluster, keeper(cluster, std::chrono::seconds(2)));
                reg.insert(session(key, 1));
                ready.notify();
                for (;;) ::pause();
                return 0;
            });
            return procreg_test::wait_exit(init);
        });
    };
    const pid_t a = namespaced_owner("ns-a");
    const pid_t b = namespaced_owner("ns-b");
    BOOST_TEST_REQUIRE(ready.wait(std::chrono::seconds(20)));
    BOOST_TEST_REQUIRE(ready.wait(std::chrono::seconds(20)));
    auto reader = observer_registry(cluster);
    auto rows = reader.list();
    BOOST_TEST_REQUIRE(rows.size() == 2u);
    BOOST_TEST(rows[0].record.pid == 1u);
    BOOST_TEST(rows[1].record.pid == 1u);
    BOOST_TEST(rows[0].alive);
    BOOST_TEST(rows[1].alive);
    BOOST_TEST(raw_get(cluster, "/procreg/pool/ns-a")->lease != raw_get(cluster, "/procreg/pool/ns-b")->lease);
    ::kill(a, SIGKILL);  // its namespace's init dies with it (PR_SET_PDEATHSIG)
    procreg_test::wait_exit(a);
    BOOST_TEST(eventually(std::chrono::seconds(3), [&] { return reader.list().size() == 1u; }));
    std::this_thread::sleep_for(std::chrono::seconds(3));  // past b's TTL: b's record stays
    rows = reader.list();
    BOOST_TEST_REQUIRE(rows.size() == 1u);
    BOOST_TEST(rows[0].record.sid == "ns-b");
    ::kill(b, SIGKILL);
    procreg_test::wait_exit(b);
}

// A registry used, then used again in a forked child and in the parent:
// each process talks on its own connection (the child's first call makes one).
BOOST_AUTO_TEST_CASE(registry_used_across_fork) {
    etcd_cluster cluster;
    counter_registry reg{procreg::storage::etcd_store(store_options(cluster, "/fork"))};
    reg.insert(counter_record{"parent", 0, 1});
    const pid_t child = procreg_test::spawn([&] {
        for (int i = 0; i < 20; ++i) {
            reg.transact([](auto& tx) { tx.modify("parent", [](counter_record& c) { ++c.count; }); });
        }
        reg.insert(counter_record{"child", 0, 2});
        return 0;
    });
    for (int i = 0; i < 20; ++i) {
        reg.transact([](auto& tx) { tx.modify("parent", [](counter_record& c) { ++c.count; }); });
    }
    BOOST_TEST(procreg_test::wait_exit(child) == 0);
    BOOST_TEST(reg.find("parent")->count == 41u);
    BOOST_TEST(reg.find("child")->count == 2u);
}

BOOST_AUTO_TEST_SUITE_END()

// The yoi seed's scope operations, on etcd: the invariant (effective write
// scopes never overlap) holds across processes, because each operation
// lists the table and the commit compares the whole prefix.
BOOST_AUTO_TEST_SUITE(yoi_on_etcd)

namespace yoi = procreg::yoi;
using pod_registry =
    procreg::registry<yoi::allocation, procreg::lock::no_lock, procreg::storage::etcd_store, procreg::liveness::etcd_lease>;

pod_registry pods(const etcd_cluster& cluster, std::shared_ptr<procreg::liveness::etcd_lease_keeper> k) {
    return pod_registry(procreg::storage::etcd_store(store_options(cluster, "/yoi/pods")), procreg::lock::no_lock{},
                        procreg::liveness::etcd_lease(std::move(k)));
}

yoi::errc scope_error_of(const std::function<void()>& step) {
    try {
        step();
    } catch (const yoi::scope_error& e) {
        return e.reason();
    }
    BOOST_FAIL("expected a procreg::yoi::scope_error");
    return yoi::errc{};
}

BOOST_AUTO_TEST_CASE(conflict_delegation_release) {
    etcd_cluster cluster;
    auto reg = pods(cluster, keeper(cluster, std::chrono::seconds(10)));
    const auto pid = static_cast<std::uint32_t>(::getpid());
    const auto w = [](const char* path) { return yoi::scope_rule::write(path, true); };
    reg.transact([&](auto& tx) { yoi::register_pod(tx, "a", pid, "/tmp/a.sock", {w("/src")}, "seg-a"); });
    BOOST_TEST((scope_error_of([&] {
                    reg.transact([&](auto& tx) { yoi::register_pod(tx, "b", pid, "/tmp/b.sock", {w("/src/core")}, "seg-b"); });
                }) == yoi::errc::write_conflict));
    BOOST_TEST((scope_error_of([&] {
                    reg.transact([&](auto& tx) { yoi::register_pod(tx, "a", pid, "/tmp/a.sock", {w("/docs")}, "seg-c"); });
                }) == yoi::errc::duplicate_pod_name));
    reg.transact([&](auto& tx) {
        yoi::delegate_scope(tx, "a", "b", pid, "/tmp/b.sock", {w("/src/core")}, yoi::delegation_scope{{w("/src")}});
    });
    reg.transact([&](auto& tx) {
        yoi::delegate_scope(tx, "b", "d", pid, "/tmp/d.sock", {w("/src/core/x")}, yoi::delegation_scope{{w("/src/core")}});
    });
    reg.transact([&](auto& tx) { yoi::release_pod(tx, "b"); });
    const auto d = reg.find("d");
    BOOST_TEST_REQUIRE(d.has_value());
    BOOST_TEST((d->delegated_from == std::optional<std::string>("a")));
    BOOST_TEST(!reg.find("b"));
}

// Processes registering overlapping write scopes at once, each held after
// its conflict check until all have checked: exactly one pod is registered.
BOOST_AUTO_TEST_CASE(concurrent_overlapping_registrations_never_both_succeed) {
    etcd_cluster cluster;
    constexpr int racers = 5;
    start_line line;
    std::vector<pid_t> children;
    for (int i = 0; i < racers; ++i) {
        children.push_back(procreg_test::spawn([&, i] {
            auto reg = pods(cluster, keeper(cluster, std::chrono::seconds(10)));
            const std::string name = "p" + std::to_string(i);
            bool first_run = true;
            try {
                reg.transact([&](auto& tx) {
                    yoi::register_pod(tx, name, static_cast<std::uint32_t>(::getpid()), "/tmp/" + name + ".sock",
                                      {yoi::scope_rule::write("/src", true)},
                                      "seg-" + name);
                    line.arrive_and_wait(first_run);
                });
            } catch (const yoi::scope_error& e) {
                if (e.reason() != yoi::errc::write_conflict) return 3;
                line.arrive_and_wait(first_run);  // never blocks: it arrived on its first run
                return 1;
            }
            for (;;) ::pause();
            return 0;
        }));
    }
    BOOST_TEST_REQUIRE(line.release(racers));
    auto reader = pods(cluster, nullptr);
    int losers = 0;
    std::vector<pid_t> winners;
    for (pid_t child : children) {
        int status = 0;
        // Losers exit; a winner pauses holding its lease.
        if (eventually(std::chrono::seconds(8), [&] { return ::waitpid(child, &status, WNOHANG) == child; })) {
            BOOST_TEST((WIFEXITED(status) && WEXITSTATUS(status) == 1));
            ++losers;
        } else {
            winners.push_back(child);
        }
    }
    BOOST_TEST(reader.list().size() == 1u);
    BOOST_TEST(losers == racers - 1);
    for (pid_t child : winners) {
        ::kill(child, SIGKILL);
        procreg_test::wait_exit(child);
    }
}

// Endpoints are checked before any connection (no member needed): what is
// malformed is errc::invalid_argument saying what is wrong, and a password
// given as user info never appears in the message.
BOOST_AUTO_TEST_CASE(malformed_endpoints_are_invalid_arguments_naming_the_fault) {
    const auto good = procreg::detail::parse_etcd_endpoint("[::1]:2379");
    BOOST_TEST(good.host == "::1");
    BOOST_TEST(good.port == "2379");
    const auto plain = procreg::detail::parse_etcd_endpoint("db-1.example:65535");
    BOOST_TEST(plain.host == "db-1.example");
    BOOST_TEST(plain.port == "65535");
    const std::vector<std::pair<std::string, std::string>> bad = {
        {"[::1]", "port is missing"},
        {"::1", "brackets"},
        {"fe80::1:2379", "brackets"},
        {"127.0.0.1", "port is missing"},
        {"host:", "port is missing"},
        {":2379", "host is missing"},
        {"", "host is missing"},
        {"host:abc", "not a number"},
        {"host:-1", "not a number"},
        {"host:99999", "out of range"},
        {"host:0", "out of range"},
        {"[::1", "lacks its ']'"},
        {"[::1]x:2379", "port is missing"},
        {"[localhost]:2379", "only for an IPv6"},
        {"user:s3cret@127.0.0.1:2379", "user info"},
        {"127.0.0.1:2379?x=1", "query string"},
        {"127.0.0.1:2379#top", "query string"},
        {"http://127.0.0.1:2379", "scheme or path"},
    };
    for (const auto& [text, why] : bad) {
        BOOST_TEST_CONTEXT(text) {
            try {
                procreg::detail::parse_etcd_endpoint(text);
                BOOST_ERROR("accepted");
            } catch (const procreg::error& e) {
                BOOST_TEST((e.code() == procreg::errc::invalid_argument));
                BOOST_TEST(std::string(e.what()).find(why) != std::string::npos, e.what());
                BOOST_TEST(std::string(e.what()).find("s3cret") == std::string::npos, e.what());
            }
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
