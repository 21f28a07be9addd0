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
#include <procreg/registry.hpp>
#include <procreg/storage/etcd_store.hpp>
#include <procreg/storage/record_files.hpp>

#include <chrono>
#include <csignal>
#include <memory>
#include <optional>
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

[[maybe_unused]] lease_registry observer_registry(const etcd_cluster& cluster) {
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

BOOST_AUTO_TEST_SUITE_END()
