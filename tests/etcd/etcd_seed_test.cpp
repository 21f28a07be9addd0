// tests/etcd/etcd_seed_test.cpp — the seed conformance suites on the etcd storage (issue 20).
//
// The very case bodies the seed suites run on files
// (support/seed_cases/{algocline,yoi,agentmux}_cases.hpp), here on
// storage::etcd_store against a real member each case starts
// (support/etcd_cluster.hpp), with the lock the storage asks for
// (lock::no_lock: commits are compare-and-swap) and the preset's own
// liveness (pids probed on this machine; AgentMux has no owners). Children
// are real processes writing through their own connections.
//
// Not applicable here, because they look at files by nature: algocline's
// T3 (a corrupt registry.json), T5/T6 (permissions, the lock file), the
// seed's bytes read and written, a wrong field type in the file, the
// directory checks; yoi's `format` suite and the lock file; AgentMux's
// retire / unretire / hard_delete / exists_anywhere (tombstones: etcd_store
// keeps none), the schema guard (a record_files option), the directory and
// file-name cases.
#define BOOST_TEST_MODULE etcd_seed
#include <boost/test/unit_test.hpp>

#include "support/etcd_cluster.hpp"
#include "support/seed_cases/agentmux_cases.hpp"
#include "support/seed_cases/algocline_cases.hpp"
#include "support/seed_cases/yoi_cases.hpp"

#include <procreg/liveness/callable_liveness.hpp>
#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/lock/no_lock.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/etcd_store.hpp>

#include <boost/json.hpp>

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>

namespace {

using procreg::detail::base64_decode;
using procreg::detail::base64_encode;

// One member, one prefix, and a look at the keys without the registry.
struct etcd_place {
    procreg_test::etcd_cluster cluster;
    std::string prefix;

    explicit etcd_place(std::string p) : prefix(std::move(p)) {}

    procreg::storage::etcd_store store() const {
        procreg::storage::etcd_store::options opts;
        opts.connection = cluster.connection();
        opts.prefix = prefix;
        return procreg::storage::etcd_store(std::move(opts));
    }

    // Every key under the prefix, as etcd holds it.
    boost::json::array kvs() const {
        procreg::detail::etcd_client client(cluster.connection());
        std::string end = prefix + "0";  // '0' follows '/'
        const auto answer = client.call_ok(
            "/v3/kv/range", {{"key", base64_encode(prefix + "/")}, {"range_end", base64_encode(end)}});
        const auto* found = answer.as_object().if_contains("kvs");
        return found ? found->as_array() : boost::json::array{};
    }
    bool nothing_stored() const { return kvs().empty(); }
    std::size_t stored_count() const { return kvs().size(); }
    std::string stored_bytes() const {
        std::string out;
        for (const auto& kv : kvs()) {
            const auto& object = kv.as_object();
            out += *base64_decode(object.at("key").as_string()) + "=";
            if (const auto* value = object.if_contains("value")) out += *base64_decode(value->as_string());
            out += '\n';
        }
        return out;
    }
    std::optional<std::string> raw(const std::string& key) const {
        procreg::detail::etcd_client client(cluster.connection());
        const auto answer = client.call_ok("/v3/kv/range", {{"key", base64_encode(prefix + "/" + key)}});
        const auto* found = answer.as_object().if_contains("kvs");
        if (!found || found->as_array().empty()) return std::nullopt;
        const auto* value = found->as_array().front().as_object().if_contains("value");
        return value ? *base64_decode(value->as_string()) : std::string();
    }
    void write_raw(const std::string& key, const std::string& text) const {
        procreg::detail::etcd_client client(cluster.connection());
        client.call_ok("/v3/kv/put", {{"key", base64_encode(prefix + "/" + key)}, {"value", base64_encode(text)}});
    }
    // How etcd_store names a key in what it reports.
    std::filesystem::path where(const std::string& key) const {
        return "etcd://" + cluster.endpoints().front() + prefix + "/" + key;
    }
};

using algocline_registry = procreg::registry<procreg::algocline::pool_session, procreg::lock::no_lock,
                                             procreg::storage::etcd_store, procreg::liveness::kill_liveness>;
struct algocline_place : etcd_place {
    algocline_place() : etcd_place("/procreg/algocline") {}
    algocline_registry open() const {
        return algocline_registry(store(), procreg::lock::no_lock{}, procreg::liveness::kill_liveness{});
    }
};

using yoi_registry = procreg::registry<procreg::yoi::allocation, procreg::lock::no_lock, procreg::storage::etcd_store,
                                       procreg::liveness::kill_liveness>;
struct yoi_place : etcd_place {
    yoi_place() : etcd_place("/procreg/yoi") {}
    yoi_registry open() const {
        return yoi_registry(store(), procreg::lock::no_lock{}, procreg::liveness::kill_liveness{});
    }
};

using agentmux_registry = procreg::registry<procreg::agentmux::agent_record, procreg::lock::no_lock,
                                            procreg::storage::etcd_store, procreg::liveness::always_alive>;
struct agentmux_place : etcd_place {
    agentmux_place() : etcd_place("/procreg/agentmux") {}
    agentmux_registry open() const {
        return agentmux_registry(store(), procreg::lock::no_lock{}, procreg::liveness::always_alive{});
    }
    agentmux_registry reg = open();
};

}  // namespace

namespace algocline_cases = procreg_test::algocline_cases;
namespace yoi_cases = procreg_test::yoi_cases;
namespace agentmux_cases = procreg_test::agentmux_cases;

#define PROCREG_ETCD_PLACE_CASE(ns, name, place_type) \
    BOOST_AUTO_TEST_CASE(name) {                      \
        place_type place;                             \
        ns::name(place);                              \
    }

BOOST_AUTO_TEST_SUITE(algocline)
PROCREG_ETCD_PLACE_CASE(algocline_cases, load_default_when_absent, algocline_place)
PROCREG_ETCD_PLACE_CASE(algocline_cases, scan_and_gc_removes_dead_pid, algocline_place)
PROCREG_ETCD_PLACE_CASE(algocline_cases, concurrent_writers_no_entry_loss, algocline_place)
PROCREG_ETCD_PLACE_CASE(algocline_cases, concurrent_processes_lose_nothing, algocline_place)
PROCREG_ETCD_PLACE_CASE(algocline_cases, killed_lock_holder_does_not_wedge_or_corrupt, algocline_place)
PROCREG_ETCD_PLACE_CASE(algocline_cases, pids_out_of_range_are_dead, algocline_place)
BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(yoi)
BOOST_AUTO_TEST_CASE(register_detects_write_conflict) { yoi_cases::register_detects_write_conflict<yoi_place>(); }
BOOST_AUTO_TEST_CASE(duplicate_pod_name_rejected) { yoi_cases::duplicate_pod_name_rejected<yoi_place>(); }
BOOST_AUTO_TEST_CASE(delegate_must_be_subset) { yoi_cases::delegate_must_be_subset<yoi_place>(); }
BOOST_AUTO_TEST_CASE(delegate_uses_delegation_scope_not_direct_effective_write) {
    yoi_cases::delegate_uses_delegation_scope_not_direct_effective_write<yoi_place>();
}
BOOST_AUTO_TEST_CASE(delegate_succeeds_within_parent_scope) {
    yoi_cases::delegate_succeeds_within_parent_scope<yoi_place>();
}
BOOST_AUTO_TEST_CASE(delegate_rejects_sibling_overlap) { yoi_cases::delegate_rejects_sibling_overlap<yoi_place>(); }
BOOST_AUTO_TEST_CASE(release_reparents_children) { yoi_cases::release_reparents_children<yoi_place>(); }
BOOST_AUTO_TEST_CASE(reclaim_delegated_scope_removes_child_and_one_parent_deny_layer) {
    yoi_cases::reclaim_delegated_scope_removes_child_and_one_parent_deny_layer<yoi_place>();
}
BOOST_AUTO_TEST_CASE(reclaim_delegated_scope_removes_parent_deny_when_child_allocation_missing) {
    yoi_cases::reclaim_delegated_scope_removes_parent_deny_when_child_allocation_missing<yoi_place>();
}
BOOST_AUTO_TEST_CASE(reclaim_stale_reparents_and_removes_dead_entries) {
    yoi_cases::reclaim_stale_reparents_and_removes_dead_entries<yoi_place>();
}
BOOST_AUTO_TEST_CASE(read_rules_do_not_conflict_with_write) {
    yoi_cases::read_rules_do_not_conflict_with_write<yoi_place>();
}
BOOST_AUTO_TEST_CASE(releasing_pod_reopens_scope_for_fresh_registration) {
    yoi_cases::releasing_pod_reopens_scope_for_fresh_registration<yoi_place>();
}
BOOST_AUTO_TEST_CASE(delegated_scope_returns_to_parent_on_release) {
    yoi_cases::delegated_scope_returns_to_parent_on_release<yoi_place>();
}
BOOST_AUTO_TEST_CASE(register_pod_rejects_session_id_collision) {
    yoi_cases::register_pod_rejects_session_id_collision<yoi_place>();
}
BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(agentmux)
PROCREG_ETCD_PLACE_CASE(agentmux_cases, upsert_new_record_writes_the_seed_layout, agentmux_place)
PROCREG_ETCD_PLACE_CASE(agentmux_cases, upsert_preserves_unknown_top_level_and_data_fields, agentmux_place)
PROCREG_ETCD_PLACE_CASE(agentmux_cases, upsert_refuses_to_overwrite_a_corrupt_file, agentmux_place)
PROCREG_ETCD_PLACE_CASE(agentmux_cases, several_processes_upserting_different_records_lose_nothing, agentmux_place)
PROCREG_ETCD_PLACE_CASE(agentmux_cases, concurrent_upserts_of_one_record_are_never_torn, agentmux_place)
BOOST_AUTO_TEST_SUITE_END()
