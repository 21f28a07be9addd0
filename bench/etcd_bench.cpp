// bench/etcd_bench.cpp — procreg on etcd: latency and throughput, beside the floors (docs/benchmarks.md).
//
// Starts its own members on loopback (tests/support/etcd_cluster.hpp; data
// directories under $TMPDIR), a single member and a three-member cluster,
// and measures with 100 existing records:
// - the latency of insert, erase, find, list (one registry call each);
// - the floors: a bare put over the same HTTP client (no read, no compare:
//   what the gateway itself costs) and `etcdctl put` (one process per put,
//   as a shell script does it);
// - what etcd's lock service would add to each transaction (lock + unlock);
// - the throughput of 1, 2, 4, 8 processes each inserting and erasing its own keys.
// Prints Markdown tables.
#include "support/etcd_cluster.hpp"
#include "support/process.hpp"

#include <procreg/liveness/callable_liveness.hpp>
#include <procreg/lock/no_lock.hpp>
#include <procreg/presets/algocline.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/etcd_store.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <sys/mman.h>

namespace {

using procreg::algocline::pool_session;
using bench_registry =
    procreg::registry<pool_session, procreg::lock::no_lock, procreg::storage::etcd_store, procreg::liveness::always_alive>;
using clock_type = std::chrono::steady_clock;

bench_registry open(const procreg_test::etcd_cluster& cluster) {
    procreg::storage::etcd_store::options opts;
    opts.connection = cluster.connection(std::chrono::seconds(5));
    opts.prefix = "/bench";
    return bench_registry{procreg::storage::etcd_store(opts)};
}

pool_session record(const std::string& sid) { return pool_session{sid, 1, "/run/w.sock", "0.30.0", "2026-01-01T00:00:00Z"}; }

struct figures {
    double median_us;
    double p99_us;
};

template <class Call>
figures time_calls(int count, Call&& call) {
    std::vector<double> samples;
    for (int i = 0; i < count; ++i) {
        const auto start = clock_type::now();
        call(i);
        samples.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - start).count());
    }
    std::sort(samples.begin(), samples.end());
    return {samples[samples.size() / 2], samples[std::min(samples.size() - 1, samples.size() * 99 / 100)]};
}

void latency(const char* name, procreg_test::etcd_cluster& cluster) {
    auto reg = open(cluster);
    for (int i = 0; i < 100; ++i) reg.upsert(record("existing-" + std::to_string(1000 + i)));
    constexpr int calls = 300;
    const figures insert = time_calls(calls, [&](int i) { reg.insert(record("k" + std::to_string(i))); });
    const figures erase = time_calls(calls, [&](int i) { reg.erase("k" + std::to_string(i)); });
    const figures find = time_calls(calls, [&](int i) { (void)reg.find("existing-" + std::to_string(1000 + i % 100)); });
    const figures list = time_calls(calls / 3, [&](int) { (void)reg.list(); });
    procreg::detail::etcd_client client(cluster.connection(std::chrono::seconds(5)));
    const figures bare = time_calls(calls, [&](int i) {
        client.call_ok("/v3/kv/put", {{"key", procreg::detail::base64_encode("/floor/k" + std::to_string(i))},
                                      {"value", procreg::detail::base64_encode(std::string(190, 'x'))}});
    });
    // What the other design would add to every transaction: etcd's lock
    // service around it (lock, then unlock, with a lease held already).
    const auto lease = procreg::detail::etcd_client::int_field(
        client.call_ok("/v3/lease/grant", {{"TTL", "60"}}).as_object(), "ID");
    const figures lock_pair = time_calls(calls, [&](int) {
        const auto locked = client.call_ok(
            "/v3/lock/lock", {{"name", procreg::detail::base64_encode("/bench-lock")}, {"lease", std::to_string(lease)}});
        client.call_ok("/v3/lock/unlock", {{"key", locked.as_object().at("key")}});
    });
    const std::string endpoint = cluster.endpoints().front();
    const figures etcdctl = time_calls(30, [&](int i) {
        const std::string command = "ETCDCTL_API=3 etcdctl --endpoints=" + endpoint + " put /floor/ctl" +
                                    std::to_string(i) + " " + std::string(190, 'x') + " >/dev/null";
        if (std::system(command.c_str()) != 0) std::fprintf(stderr, "etcdctl put failed\n");
    });
    std::printf("\n### %s, 100 records: latency (µs)\n\n| operation | median | p99 |\n|---|---:|---:|\n", name);
    const auto row = [](const char* what, const figures& f) {
        std::printf("| %s | %.0f | %.0f |\n", what, f.median_us, f.p99_us);
    };
    row("insert", insert);
    row("erase", erase);
    row("find", find);
    row("list (100 records)", list);
    row("floor: bare put, same HTTP client", bare);
    row("lock service: lock + unlock, nothing inside", lock_pair);
    row("floor: `etcdctl put` (a process per put)", etcdctl);
}

void throughput(const char* name, procreg_test::etcd_cluster& cluster) {
    std::printf("\n### %s: throughput, insert + erase of own keys (operations/s, all processes)\n\n", name);
    std::printf("| processes | ops/s |\n|---:|---:|\n");
    for (int processes : {1, 2, 4, 8}) {
        constexpr int pairs = 100;
        const auto start = clock_type::now();
        std::vector<pid_t> children;
        for (int p = 0; p < processes; ++p) {
            children.push_back(procreg_test::spawn([&, p] {
                auto reg = open(cluster);
                for (int i = 0; i < pairs; ++i) {
                    const std::string sid = "t" + std::to_string(p) + "-" + std::to_string(i);
                    reg.insert(record(sid));
                    reg.erase(sid);
                }
                return 0;
            }));
        }
        int failed = 0;
        for (pid_t child : children) failed += procreg_test::wait_exit(child) != 0 ? 1 : 0;
        const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
        std::printf("| %d | %.0f%s |\n", processes, processes * pairs * 2 / seconds, failed ? " (failures)" : "");
    }
}

}  // namespace

int main() {
    {
        procreg_test::etcd_cluster single(1);
        latency("single member", single);
        throughput("single member", single);
    }
    {
        procreg_test::etcd_cluster three(3);
        latency("three members", three);
        throughput("three members", three);
    }
    return 0;
}
