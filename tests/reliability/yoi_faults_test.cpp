// Fault injection and crash points for yoi's pod registry, the biggest user
// of json_table: register_pod (which also reclaims a dead pod and reparents
// its child), delegate_scope, release_pod (which reparents children) and
// reclaim_stale, under flock (the preset's registry) and the named mutex.
// Each yoi operation is one transaction over the whole table, so the whole
// table must be exactly as before or as after.
#define BOOST_TEST_MODULE yoi_faults
#include <boost/test/unit_test.hpp>

#include <procreg/presets/yoi.hpp>

#include "../support/fault_driver.hpp"
#include "../support/lock_kinds.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace fs = std::filesystem;
using namespace procreg_test::faults;
namespace yoi = procreg::yoi;
using yoi::scope_rule;

BOOST_TEST_GLOBAL_FIXTURE(fast_tmpdir);

namespace {

const std::uint32_t live_pid = static_cast<std::uint32_t>(::getpid());
const std::uint32_t gone_pid = static_cast<std::uint32_t>(procreg_test::dead_pid());

// With flock this is exactly yoi::pod_registry.
template <class Kind>
using pod_registry =
    procreg::registry<yoi::allocation, typename Kind::type, procreg::storage::json_table, procreg::liveness::kill_liveness>;

fs::path pods_of(const fs::path& dir) { return dir / "run" / "pods.json"; }
fs::path lock_of(const fs::path& dir) { return dir / "run" / "pods.lock"; }

template <class Kind>
pod_registry<Kind> open(const fs::path& dir) {
    return pod_registry<Kind>(procreg::storage::json_table(yoi::options(pods_of(dir))));
}

std::string sock(const std::string& pod) { return "/run/yoi/" + pod + ".sock"; }

yoi::allocation raw(std::string name, std::uint32_t pid, std::string target, std::optional<std::string> parent,
                    std::optional<std::string> segment) {
    yoi::allocation a;
    a.pod_name = std::move(name);
    a.pid = pid;
    a.socket = sock(a.pod_name);
    a.scope_allow = {scope_rule::write(std::move(target), true)};
    a.delegated_from = std::move(parent);
    a.segment_id = std::move(segment);
    return a;
}

// parent (live) with its child; ghost (dead) with its live child orphan.
template <class Kind>
void setup(const fs::path& dir) {
    auto reg = open<Kind>(dir);
    reg.transact([](auto& tx) {
        yoi::register_pod(tx, "parent", live_pid, sock("parent"), {scope_rule::write("/src", true)}, "seg-parent");
        yoi::delegate_scope(tx, "parent", "child", live_pid, sock("child"), {scope_rule::write("/src/child", true)},
                            yoi::delegation_scope{{scope_rule::write("/src", true)}});
        // A dead pod and its child, inserted raw (the operations would reclaim it at once).
        tx.insert(raw("ghost", gone_pid, "/ghost", std::nullopt, std::string("seg-ghost")));
        tx.insert(raw("orphan", live_pid, "/ghost/sub", std::string("ghost"), std::nullopt));
    });
}

// The table as its allocations, serialised, sorted by pod name; read
// without procreg (a torn file throws).
std::string state(const fs::path& dir) {
    const auto parsed = boost::json::parse(procreg_test::read_text(pods_of(dir)));
    std::vector<std::string> rows;
    for (const auto& item : parsed.at("allocations").as_array()) rows.push_back(boost::json::serialize(item));
    std::sort(rows.begin(), rows.end());
    std::string out;
    for (const auto& row : rows) out += row + "\n";
    return out;
}

template <class Kind>
void next_operation(const fs::path& dir) {
    auto reg = open<Kind>(dir);
    reg.transact([](auto& tx) {
        yoi::register_pod(tx, "next", live_pid, sock("next"), {scope_rule::write("/next", true)}, "seg-next");
    });
    if (!reg.find("next")) throw std::runtime_error("next operation did not take effect");
}

template <class Kind>
using pod_step = std::function<void(typename pod_registry<Kind>::transaction_type&)>;

// `op` as one transaction on the registry in `dir`.
template <class Kind>
std::function<void(const fs::path&)> in_transaction(pod_step<Kind> op) {
    return [op](const fs::path& dir) {
        auto reg = open<Kind>(dir);
        reg.transact([&](auto& tx) { op(tx); });
    };
}

template <class Kind>
scenario make_scenario(pod_step<Kind> op) {
    scenario s;
    s.setup = setup<Kind>;
    s.operation = in_transaction<Kind>(std::move(op));
    s.state = state;
    s.next_operation = next_operation<Kind>;
    use_lock_kind<Kind>(s, lock_of);
    return s;
}

template <class Kind>
std::string label(const char* op) {
    return matrix_label<Kind>("yoi", op);
}

template <class Tx>
void register_fresh(Tx& tx) {
    yoi::register_pod(tx, "fresh", live_pid, sock("fresh"), {scope_rule::write("/docs", true)}, "seg-fresh");
}
template <class Tx>
void delegate_kid(Tx& tx) {
    yoi::delegate_scope(tx, "parent", "kid", live_pid, sock("kid"), {scope_rule::write("/src/kid", true)},
                        yoi::delegation_scope{{scope_rule::write("/src", true)}});
}

}  // namespace

BOOST_AUTO_TEST_SUITE(yoi_faults)

BOOST_AUTO_TEST_CASE_TEMPLATE(register_pod_is_all_or_nothing, Kind, locks::both) {
    // Also reclaims ghost and reparents orphan: one transaction, three changes.
    run_fault_matrix(make_scenario<Kind>([](auto& tx) { register_fresh(tx); }), label<Kind>("register_pod"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(delegate_scope_is_all_or_nothing, Kind, locks::both) {
    run_fault_matrix(make_scenario<Kind>([](auto& tx) { delegate_kid(tx); }), label<Kind>("delegate_scope"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(release_pod_is_all_or_nothing, Kind, locks::both) {
    run_fault_matrix(make_scenario<Kind>([](auto& tx) { yoi::release_pod(tx, "parent"); }),
                     label<Kind>("release_pod"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(reclaim_stale_is_all_or_nothing, Kind, locks::both) {
    run_fault_matrix(make_scenario<Kind>([](auto& tx) {
                         if (yoi::reclaim_stale(tx).size() != 1u) throw std::runtime_error("ghost not reclaimed");
                     }),
                     label<Kind>("reclaim_stale"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(crash_at_every_system_call_keeps_acknowledged_operations, Kind, locks::both) {
    crash_scenario s;
    s.setup = setup<Kind>;
    s.state = state;
    const auto with_tx = [](pod_step<Kind> op) { return in_transaction<Kind>(std::move(op)); };
    s.steps = {
        with_tx([](auto& tx) { yoi::reclaim_stale(tx); }),
        with_tx([](auto& tx) { register_fresh(tx); }),
        with_tx([](auto& tx) { delegate_kid(tx); }),
        with_tx([](auto& tx) { tx.insert(raw("ghost2", gone_pid, "/ghost2", std::string("fresh"), std::nullopt)); }),
        with_tx([](auto& tx) { yoi::release_pod(tx, "parent"); }),
        with_tx([](auto& tx) { yoi::reclaim_stale(tx); }),
    };
    s.reopen = [](const fs::path& dir) { (void)open<Kind>(dir); };
    s.teardown = [](const fs::path& dir) { Kind::cleanup(lock_of(dir)); };
    run_crash_points(s, label<Kind>("crash"));
}

BOOST_AUTO_TEST_SUITE_END()
