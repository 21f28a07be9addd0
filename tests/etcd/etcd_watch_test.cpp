// tests/etcd/etcd_watch_test.cpp — procreg::watcher over etcd's watch stream (issue 20, watch events).
//
// The watcher learns of changes from the storage's change feed
// (detail/etcd_watch_stream.hpp over `/v3/watch`), never by polling. Real
// members (support/etcd_cluster.hpp), real writer and owner processes: a
// put or delete by another process is an event within a bounded wait; a
// SIGKILLed owner's records are reported owner_died and removed within its
// lease's TTL + 1 s; a watcher cut off from its member resumes on another
// from the last revision it saw, and when that revision was compacted
// away it reads everything again and reports the right difference.
#define BOOST_TEST_MODULE etcd_watch
#include <boost/test/unit_test.hpp>

#include "support/etcd_cluster.hpp"
#include "support/process.hpp"

#include <procreg/liveness/etcd_lease.hpp>
#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/lock/no_lock.hpp>
#include <procreg/presets/algocline.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/etcd_store.hpp>
#include <procreg/watch/watcher.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <unistd.h>

namespace {

using procreg::algocline::pool_session;
using procreg::watch_event_kind;
using procreg_test::etcd_cluster;
using lease_registry = procreg::registry<pool_session, procreg::lock::no_lock, procreg::storage::etcd_store,
                                         procreg::liveness::etcd_lease>;
using pid_registry = procreg::registry<pool_session, procreg::lock::no_lock, procreg::storage::etcd_store,
                                       procreg::liveness::kill_liveness>;

procreg::storage::etcd_store store(procreg::detail::etcd_connection connection) {
    procreg::storage::etcd_store::options opts;
    opts.connection = std::move(connection);
    opts.prefix = "/procreg/watched";
    return procreg::storage::etcd_store(std::move(opts));
}

pid_registry writer(procreg::detail::etcd_connection connection) {
    return pid_registry(store(std::move(connection)), procreg::lock::no_lock{}, procreg::liveness::kill_liveness{});
}

// Owned by the test process (the writer children exit while the records stay).
const std::uint32_t test_pid = static_cast<std::uint32_t>(::getpid());

pool_session session(const std::string& sid, const std::string& version = "1") {
    return pool_session{sid, test_pid, "/run/" + sid + ".sock", version, "t"};
}

// Every event the watcher has within `quiet` of the previous one: (kind, key) in order.
template <class Watcher>
std::vector<std::pair<watch_event_kind, std::string>> events_until_quiet(Watcher& w, std::chrono::milliseconds quiet) {
    std::vector<std::pair<watch_event_kind, std::string>> out;
    while (auto e = w.next(quiet)) out.emplace_back(e->kind, e->key);
    return out;
}

// The first write through the members left after one was stopped or
// killed. When that member led the cluster, the others elect a leader
// first, and a write meanwhile fails ("leader changed", or a timeout that
// may or may not have applied it): it is tried again for up to 20 s; a
// duplicate says an earlier try was applied.
void insert_once_a_leader_is_elected(pid_registry& reg, const pool_session& record) {
    for (const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);;) {
        try {
            reg.insert(record);
            return;
        } catch (const procreg::error& failed) {
            if (failed.code() == procreg::errc::duplicate_key) return;
            BOOST_TEST_REQUIRE((std::chrono::steady_clock::now() < give_up), "no write through the others: " << failed.what());
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
    }
}

// A TCP socket listening on a loopback port the kernel picks, for a fake
// gateway; `endpoint` gets its "127.0.0.1:<port>".
int loopback_listener(int backlog, std::string& endpoint) {
    const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    BOOST_TEST_REQUIRE(listener >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof address;
    BOOST_TEST_REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&address), size) == 0);
    BOOST_TEST_REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &size) == 0);
    BOOST_TEST_REQUIRE(::listen(listener, backlog) == 0);
    endpoint = "127.0.0.1:" + std::to_string(ntohs(address.sin_port));
    return listener;
}

// A lease keeper on `cluster` whose leases live `ttl` without renewal.
std::shared_ptr<procreg::liveness::etcd_lease_keeper> lease_keeper(etcd_cluster& cluster, std::chrono::seconds ttl) {
    procreg::liveness::etcd_lease_options opts;
    opts.connection = cluster.connection();
    opts.ttl = ttl;
    return std::make_shared<procreg::liveness::etcd_lease_keeper>(opts);
}

// A registry on `cluster` whose records are leased by `keeper` (none: it only reads).
lease_registry lease_registry_on(etcd_cluster& cluster,
                                 std::shared_ptr<procreg::liveness::etcd_lease_keeper> keeper = nullptr) {
    return lease_registry(store(cluster.connection()), procreg::lock::no_lock{},
                          keeper ? procreg::liveness::etcd_lease(std::move(keeper)) : procreg::liveness::etcd_lease{});
}

std::string describe(const std::vector<std::pair<watch_event_kind, std::string>>& events) {
    std::string out;
    for (const auto& e : events) out += std::string(procreg::to_string(e.first)) + " " + e.second + "; ";
    return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(etcd_watch)

// Another process adds, changes and removes a record, one step at a time:
// each step is one event, within a bounded wait.
BOOST_AUTO_TEST_CASE(a_put_or_delete_by_another_process_is_an_event) {
    etcd_cluster cluster;
    auto reg = writer(cluster.connection());
    reg.insert(session("before"));
    procreg::watcher<pid_registry> w(reg);
    BOOST_TEST(w.current().active.size() == 1u);  // the starting point, not an event
    BOOST_TEST(!w.try_next());

    procreg_test::signal_pipe step_done;
    procreg_test::signal_pipe next_step;
    const pid_t child = procreg_test::spawn([&] {
        auto mine = writer(cluster.connection());
        mine.insert(session("a"));
        step_done.notify();
        if (!next_step.wait()) return 1;
        mine.upsert(session("a", "2"));
        step_done.notify();
        if (!next_step.wait()) return 2;
        mine.erase("a");
        step_done.notify();
        return 0;
    });
    const std::vector<watch_event_kind> expected = {watch_event_kind::added, watch_event_kind::changed,
                                                    watch_event_kind::removed};
    for (const watch_event_kind kind : expected) {
        BOOST_TEST_REQUIRE(step_done.wait());
        const auto e = w.next(std::chrono::seconds(5));
        BOOST_TEST_REQUIRE(e.has_value(), "no event for " << procreg::to_string(kind));
        BOOST_TEST(procreg::to_string(e->kind) == procreg::to_string(kind));
        BOOST_TEST(e->key == "a");
        BOOST_TEST(!w.try_next());  // exactly one event per step
        next_step.notify();
    }
    BOOST_TEST(procreg_test::wait_exit(child) == 0);
    BOOST_TEST(w.stats().rebuilds == 0u);
    BOOST_TEST(!w.polls_owners());  // the feed wakes it: no timer
}

// An owner SIGKILLed: its lease expires, etcd deletes its keys, and the
// watcher reports owner_died then removed within the TTL + 1 s.
BOOST_AUTO_TEST_CASE(a_sigkilled_owner_is_reported_gone_within_the_ttl) {
    etcd_cluster cluster;
    auto observer = lease_registry_on(cluster);
    procreg::watcher<lease_registry> w(observer);
    procreg_test::signal_pipe registered;
    constexpr auto ttl = std::chrono::seconds(2);
    const pid_t owner = procreg_test::spawn([&] {
        auto reg = lease_registry_on(cluster, lease_keeper(cluster, ttl));
        reg.insert(session("mine"));
        reg.insert(session("also-mine"));
        registered.notify();
        for (;;) ::pause();
        return 0;
    });
    BOOST_TEST_REQUIRE(registered.wait());
    const auto added = events_until_quiet(w, std::chrono::milliseconds(500));
    BOOST_TEST(added.size() == 2u, describe(added));
    BOOST_TEST(!w.polls_owners());  // the lease, not a pid, says whether the owner lives

    ::kill(owner, SIGKILL);
    const auto deadline = std::chrono::steady_clock::now() + ttl + std::chrono::seconds(1);
    BOOST_TEST(procreg_test::wait_exit(owner) == 128 + SIGKILL);
    std::vector<std::pair<watch_event_kind, std::string>> gone;
    while (gone.size() < 4) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) break;
        const auto e = w.next(left);
        if (!e) break;
        gone.emplace_back(e->kind, e->key);
    }
    BOOST_TEST_REQUIRE(gone.size() == 4u, "within TTL + 1 s: " << describe(gone));
    std::map<std::string, std::vector<watch_event_kind>> by_key;
    for (const auto& e : gone) by_key[e.second].push_back(e.first);
    for (const std::string key : {"mine", "also-mine"}) {
        BOOST_TEST_CONTEXT(key) {
            BOOST_TEST_REQUIRE(by_key[key].size() == 2u);
            BOOST_TEST(procreg::to_string(by_key[key][0]) == "owner_died");
            BOOST_TEST(procreg::to_string(by_key[key][1]) == "removed");
        }
    }
    BOOST_TEST(w.current().active.empty());
}

// An explicit delete of a leased record whose owner lives is a removal, not a death.
BOOST_AUTO_TEST_CASE(deleting_a_live_owners_record_is_only_a_removal) {
    etcd_cluster cluster;
    auto owner = lease_registry_on(cluster, lease_keeper(cluster, std::chrono::seconds(10)));
    owner.insert(session("mine"));
    procreg::watcher<lease_registry> w(owner);
    const pid_t other = procreg_test::spawn([&] {
        auto reg = lease_registry_on(cluster);
        return reg.erase("mine") ? 0 : 1;
    });
    BOOST_TEST(procreg_test::wait_exit(other) == 0);
    const auto events = events_until_quiet(w, std::chrono::seconds(2));
    BOOST_TEST_REQUIRE(events.size() == 1u, describe(events));
    BOOST_TEST(procreg::to_string(events[0].first) == "removed");
}

// The owner marker is a put of its own, once per lease and storage object:
// a transaction still holds as many records as etcd lets one txn write
// (--max-txn-ops, 128 by default), and the marker is there for the watcher.
BOOST_AUTO_TEST_CASE(a_transaction_of_128_leased_records_fits_in_one_txn) {
    etcd_cluster cluster;
    auto keeper = lease_keeper(cluster, std::chrono::seconds(30));
    auto owner = lease_registry_on(cluster, keeper);
    owner.transact([](auto& tx) {
        for (int i = 0; i < 128; ++i) tx.insert(session("bulk-" + std::to_string(i)));
    });
    BOOST_TEST(owner.list().size() == 128u);
    auto observer = lease_registry_on(cluster);
    procreg::watcher<lease_registry> w(observer);
    BOOST_TEST_REQUIRE(w.current().active.size() == 128u);
    keeper->revoke();
    const auto events = events_until_quiet(w, std::chrono::seconds(2));
    std::size_t died = 0;
    for (const auto& e : events) died += e.first == watch_event_kind::owner_died ? 1 : 0;
    BOOST_TEST(died == 128u, describe(events));
}

// An owner erases its record itself and then ends cleanly (its keeper
// revokes the lease) before the watcher reads the delete: the erase is a
// removal, never an owner's death. Only the lease's end takes its keys (with
// the owner marker, in one revision), so only such a delete may be reported
// owner_died; "kept" went that way, but the watcher may find it gone when it
// re-reads for the erase, before it reads the lease's end, and then reports
// it removed only (docs/watch.md, "On etcd").
BOOST_AUTO_TEST_CASE(an_erase_followed_by_the_owners_end_is_never_an_owners_death) {
    etcd_cluster cluster;
    auto keeper = lease_keeper(cluster, std::chrono::seconds(30));
    auto owner = lease_registry_on(cluster, keeper);
    owner.insert(session("erased"));
    owner.insert(session("kept"));
    auto observer = lease_registry_on(cluster);
    procreg::watcher<lease_registry> w(observer);
    BOOST_TEST_REQUIRE(w.current().active.size() == 2u);
    BOOST_TEST_REQUIRE(owner.erase("erased"));
    keeper->revoke();  // the owner's clean end: "kept" goes with the lease
    const auto events = events_until_quiet(w, std::chrono::seconds(2));
    std::map<std::string, std::vector<std::string>> by_key;
    for (const auto& e : events) by_key[e.second].push_back(procreg::to_string(e.first));
    BOOST_TEST(by_key["erased"] == std::vector<std::string>{"removed"}, describe(events));
    BOOST_TEST(!by_key["kept"].empty(), describe(events));
    BOOST_TEST(by_key["kept"].back() == "removed", describe(events));
    BOOST_TEST(w.current().active.empty());
}

// The owner's end alone, read by the watcher before anything else changed:
// its records are reported owner_died, then removed (a clean revoke here;
// the SIGKILL case above is the same through the lease's expiry).
BOOST_AUTO_TEST_CASE(an_owners_revoke_is_reported_as_its_death) {
    etcd_cluster cluster;
    auto keeper = lease_keeper(cluster, std::chrono::seconds(30));
    auto owner = lease_registry_on(cluster, keeper);
    owner.insert(session("kept"));
    auto observer = lease_registry_on(cluster);
    procreg::watcher<lease_registry> w(observer);
    BOOST_TEST_REQUIRE(w.current().active.size() == 1u);
    keeper->revoke();
    const auto events = events_until_quiet(w, std::chrono::seconds(2));
    BOOST_TEST(describe(events) == "owner_died kept; removed kept; ");
}

// The watcher's member dies; the writes go on through the others. The
// stream resumes on another member from the last revision seen, replaying
// each change (no full resync).
BOOST_AUTO_TEST_CASE(a_broken_stream_resumes_from_the_last_revision_on_another_member) {
    etcd_cluster cluster(3);
    auto reg = writer(cluster.connection());
    reg.insert(session("keep"));
    reg.insert(session("change"));
    reg.insert(session("drop"));
    procreg::watcher<pid_registry> w(reg);  // its stream is on the first member
    cluster.kill(0);
    procreg::detail::etcd_connection others = cluster.connection();
    others.endpoints.erase(others.endpoints.begin());
    auto rest = writer(others);
    insert_once_a_leader_is_elected(rest, session("new"));
    rest.upsert(session("change", "2"));
    BOOST_TEST(rest.erase("drop"));
    const auto events = events_until_quiet(w, std::chrono::seconds(3));
    const std::vector<std::pair<watch_event_kind, std::string>> expected = {
        {watch_event_kind::changed, "change"}, {watch_event_kind::removed, "drop"}, {watch_event_kind::added, "new"}};
    BOOST_TEST((events == expected), describe(events));
    BOOST_TEST(w.stats().rebuilds == 0u);
}

// The same, but the revisions the watcher missed are compacted away before
// it comes back: etcd cancels the resumed watch (compact_revision), and the
// watcher reads the whole state again and reports exactly the difference.
BOOST_AUTO_TEST_CASE(compaction_while_disconnected_resyncs_with_the_right_diff) {
    etcd_cluster cluster(3);
    auto reg = writer(cluster.connection());
    reg.insert(session("keep"));
    reg.insert(session("change"));
    reg.insert(session("drop"));
    procreg::watcher<pid_registry> w(reg);
    cluster.kill(0);
    procreg::detail::etcd_connection others = cluster.connection();
    others.endpoints.erase(others.endpoints.begin());
    auto rest = writer(others);
    insert_once_a_leader_is_elected(rest, session("new"));
    rest.upsert(session("change", "2"));
    BOOST_TEST(rest.erase("drop"));
    rest.insert(session("flash"));  // came and went while the watcher was away: no event
    BOOST_TEST(rest.erase("flash"));
    procreg::detail::etcd_client client(others);
    const auto now = procreg::detail::etcd_client::revision_of(
        client.call_ok("/v3/kv/range", {{"key", procreg::detail::base64_encode("/procreg/watched/keep")}}));
    client.call_ok("/v3/kv/compaction", {{"revision", std::to_string(now)}, {"physical", true}});

    const auto events = events_until_quiet(w, std::chrono::seconds(3));
    const std::vector<std::pair<watch_event_kind, std::string>> expected = {
        {watch_event_kind::changed, "change"}, {watch_event_kind::removed, "drop"}, {watch_event_kind::added, "new"}};
    BOOST_TEST((events == expected), describe(events));
    BOOST_TEST(w.stats().rebuilds == 1u);  // the compaction's full resync
    BOOST_TEST(w.current().active.size() == 3u);
    // And it follows changes again afterwards.
    rest.insert(session("later"));
    const auto later = w.next(std::chrono::seconds(5));
    BOOST_TEST_REQUIRE(later.has_value());
    BOOST_TEST(later->key == "later");
}

// A member may send the watch's confirmation and the first events in one
// write (a resumed watch replays history right behind `created`): those
// events are news for the first drain, not swallowed by the opening.
// A fake gateway on loopback sends exactly that.
BOOST_AUTO_TEST_CASE(events_sent_with_the_confirmation_are_reported) {
    std::string gateway_endpoint;
    const int listener = loopback_listener(1, gateway_endpoint);
    procreg_test::signal_pipe done;
    std::thread gateway([&] {
        const int client = ::accept(listener, nullptr, nullptr);
        if (client < 0) return;
        std::string request;
        char buffer[4096];
        while (request.find("\r\n\r\n") == std::string::npos || request.find("}}") == std::string::npos) {
            const ssize_t n = ::recv(client, buffer, sizeof buffer, 0);
            if (n <= 0) break;
            request.append(buffer, static_cast<std::size_t>(n));
        }
        const std::string key = procreg::detail::base64_encode("/procreg/watched/a");
        const std::string lines =
            R"({"result":{"header":{"revision":"5"},"created":true}})"
            "\n"
            R"({"result":{"header":{"revision":"6"},"events":[{"kv":{"key":")" + key +
            R"(","mod_revision":"6","value":"e30="}}]}})"
            "\n";
        char length[32];
        std::snprintf(length, sizeof length, "%zx", lines.size());
        const std::string response =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
            std::string(length) + "\r\n" + lines + "\r\n";
        (void)!::send(client, response.data(), response.size(), MSG_NOSIGNAL);  // one write
        (void)done.wait(std::chrono::seconds(10));
        ::close(client);
    });
    procreg::detail::etcd_connection connection;
    connection.endpoints = {gateway_endpoint};
    {
        procreg::detail::etcd_watch_stream feed(connection, "/procreg/watched/", "/procreg/watched0",
                                                "/procreg/watched.owners/");
        const procreg::change_news news = feed.drain();
        BOOST_TEST(news.changed);
        BOOST_TEST(feed.revision() == 6);
    }
    done.notify();
    gateway.join();
    ::close(listener);
}

// With credentials, a reopen whose authentication fails (the member answers
// 503 to /v3/auth/authenticate once) is a failed reopen like any other: it
// leaves the retry timer armed, so fd() becomes readable again and the next
// drain() opens the stream once the member is healthy. A fake gateway plays
// the member: it authenticates, confirms each watch, and drops the stream on request.
BOOST_AUTO_TEST_CASE(a_failed_authentication_on_reopen_is_retried) {
    std::string gateway_endpoint;
    const int listener = loopback_listener(16, gateway_endpoint);
    std::atomic<bool> auth_down{false};
    std::atomic<int> drops{0};
    std::atomic<bool> stopping{false};
    std::vector<std::thread> handlers;
    std::thread gateway([&] {
        for (;;) {
            const int client = ::accept(listener, nullptr, nullptr);
            if (client < 0 || stopping) {
                if (client >= 0) ::close(client);
                return;
            }
            handlers.emplace_back([&, client] {
                std::string request;
                char buffer[4096];
                for (;;) {  // headers, then Content-Length bytes of body
                    const auto end = request.find("\r\n\r\n");
                    const auto length = request.find("Content-Length: ");
                    if (end != std::string::npos && length != std::string::npos &&
                        request.size() >= end + 4 + std::stoul(request.substr(length + 16))) {
                        break;
                    }
                    const ssize_t n = ::recv(client, buffer, sizeof buffer, 0);
                    if (n <= 0) break;
                    request.append(buffer, static_cast<std::size_t>(n));
                }
                std::string response;
                if (request.rfind("POST /v3/auth/authenticate", 0) == 0) {
                    const std::string body = auth_down ? "upstream down" : R"({"header":{"revision":"5"},"token":"t"})";
                    response = std::string(auth_down ? "HTTP/1.1 503 Service Unavailable" : "HTTP/1.1 200 OK") +
                               "\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
                               body;
                    (void)!::send(client, response.data(), response.size(), MSG_NOSIGNAL);
                } else if (request.rfind("POST /v3/watch", 0) == 0) {
                    const std::string line = R"({"result":{"header":{"revision":"5"},"created":true}})" "\n";
                    char length[32];
                    std::snprintf(length, sizeof length, "%zx", line.size());
                    response = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + std::string(length) +
                               "\r\n" + line + "\r\n";
                    (void)!::send(client, response.data(), response.size(), MSG_NOSIGNAL);
                    const int seen = drops;
                    while (drops == seen && !stopping) std::this_thread::sleep_for(std::chrono::milliseconds(10));
                }
                ::close(client);  // drops the stream
            });
        }
    });
    struct stop_gateway {  // also when a requirement fails: no thread left joinable
        std::function<void()> stop;
        ~stop_gateway() { stop(); }
    } stopper{[&] {
        stopping = true;
        ++drops;
        ::shutdown(listener, SHUT_RDWR);
        gateway.join();
        for (auto& t : handlers) t.join();
        ::close(listener);
    }};
    procreg::detail::etcd_connection connection;
    connection.endpoints = {gateway_endpoint};
    connection.user = "u";
    connection.password = "p";
    connection.timeout = std::chrono::milliseconds(1000);
    {
        procreg::detail::etcd_watch_stream feed(connection, "/procreg/watched/", "/procreg/watched0",
                                                "/procreg/watched.owners/");
        auto readable = [&](int ms) {
            pollfd ready{feed.fd(), POLLIN, 0};
            return ::poll(&ready, 1, ms) == 1;
        };
        auth_down = true;
        ++drops;  // the member drops the stream and fails the next authentication
        for (int attempt = 0; attempt < 2; ++attempt) {  // the second starts with no stream at all
            BOOST_TEST_REQUIRE(readable(5000), "fd() not readable before failed reopen " << attempt);
            BOOST_CHECK_THROW(feed.drain(), procreg::error);  // the reopen fails: no member accepts
        }
        auth_down = false;  // healthy again
        BOOST_TEST_REQUIRE(readable(5000), "fd() never readable again after a failed authentication");
        BOOST_CHECK_NO_THROW(feed.drain());
        BOOST_TEST(feed.reopened() == 1u);
    }
}

// The watcher's member stops answering without closing TCP (SIGSTOP: as a
// partition or a dead host would look). The stream is silent, so after its
// idle interval the member is probed, the probe times out, and the stream
// opens again on another member from the last revision: the insert made
// through the others arrives within interval + probe timeout + reopen + 5 s.
BOOST_AUTO_TEST_CASE(a_member_that_stops_answering_is_left_for_another) {
    etcd_cluster cluster(3);
    const auto timeout = std::chrono::seconds(2);
    auto reg = writer(cluster.connection(timeout));
    reg.insert(session("before"));
    procreg::watcher<pid_registry> w(reg);  // its stream is on the first member
    cluster.signal(0, SIGSTOP);
    struct resume {  // also when a requirement fails
        etcd_cluster& c;
        ~resume() { c.signal(0, SIGCONT); }
    } resumed{cluster};
    procreg::detail::etcd_connection others = cluster.connection(timeout);
    others.endpoints.erase(others.endpoints.begin());
    auto rest = writer(others);
    insert_once_a_leader_is_elected(rest, session("while-stopped"));
    const auto interval = std::max(2 * std::chrono::milliseconds(timeout), std::chrono::milliseconds(1000));
    const auto bound = interval + 2 * timeout + std::chrono::seconds(5);
    std::optional<procreg::watcher<pid_registry>::event_type> e;
    const auto deadline = std::chrono::steady_clock::now() + bound;
    while (!e && std::chrono::steady_clock::now() < deadline) {
        try {  // a read through the stopped member may fail meanwhile
            e = w.next(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
            if (!e) break;
        } catch (const procreg::error&) {
        }
    }
    BOOST_TEST_REQUIRE(e.has_value(), "no event within " << bound.count() << " ms of the member stopping");
    BOOST_TEST(procreg::to_string(e->kind) == "added");
    BOOST_TEST(e->key == "while-stopped");
}

BOOST_AUTO_TEST_SUITE_END()
