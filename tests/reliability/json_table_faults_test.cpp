// Fault injection and crash points for the one-JSON-file storage (the
// algocline preset, and the same registry under the named mutex): every
// mutating operation is all-or-nothing under a failing k-th system call and
// under SIGKILL at the k-th system call.
#define BOOST_TEST_MODULE json_table_faults
#include <boost/test/unit_test.hpp>

#include <procreg/presets/algocline.hpp>

#include "../support/fault_driver.hpp"
#include "../support/lock_kinds.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using procreg::algocline::pool_session;
using namespace procreg_test::faults;

BOOST_TEST_GLOBAL_FIXTURE(fast_tmpdir);

namespace {

const std::uint32_t live_pid = static_cast<std::uint32_t>(::getpid());
const std::uint32_t gone_pid = static_cast<std::uint32_t>(procreg_test::dead_pid());

fs::path file_in(const fs::path& dir) { return dir / "registry.json"; }
fs::path lock_in(const fs::path& dir) { return dir / "registry.lock"; }

// With flock this is exactly procreg::algocline::pool_registry.
template <class Kind>
using pool_registry = procreg::registry<pool_session, typename Kind::type, procreg::storage::json_table,
                                        procreg::liveness::kill_liveness>;

template <class Kind>
pool_registry<Kind> open(const fs::path& dir) {
    return pool_registry<Kind>(procreg::storage::json_table(procreg::algocline::options(file_in(dir))));
}

pool_session entry(const std::string& sid, std::uint32_t pid, const std::string& version = "1") {
    pool_session s = pool_session::make(sid, pid, "/run/" + sid + ".sock", version);
    s.created_at = "2026-01-01T00:00:00Z";
    return s;
}

template <class Kind>
void setup(const fs::path& dir) {
    auto reg = open<Kind>(dir);
    reg.insert(entry("alive", live_pid));
    reg.insert(entry("dead", gone_pid));
}

// The table as sorted "sid|pid|version" lines, read without procreg.
std::string state(const fs::path& dir) {
    const std::string text = procreg_test::read_text(file_in(dir));
    const auto parsed = boost::json::parse(text);
    std::vector<std::string> rows;
    for (const auto& item : parsed.at("sessions").as_array()) {
        const auto& o = item.as_object();
        rows.push_back(std::string(o.at("sid").as_string()) + "|" + std::to_string(o.at("pid").as_int64()) + "|" +
                       std::string(o.at("version").as_string()));
    }
    std::sort(rows.begin(), rows.end());
    std::string out;
    for (const auto& row : rows) out += row + "\n";
    return out;
}

template <class Kind>
void next_operation(const fs::path& dir) {
    auto reg = open<Kind>(dir);
    reg.upsert(entry("next", live_pid));
    if (!reg.find("next")) throw std::runtime_error("next operation did not take effect");
}

template <class Kind>
scenario make(std::function<void(pool_registry<Kind>&)> op) {
    scenario s;
    s.setup = setup<Kind>;
    s.operation = [op](const fs::path& dir) {
        auto reg = open<Kind>(dir);
        op(reg);
    };
    s.state = state;
    s.next_operation = next_operation<Kind>;
    use_lock_kind<Kind>(s, lock_in);
    return s;
}

template <class Kind>
std::string label(const char* op) {
    return matrix_label<Kind>("json_table", op);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(json_table_faults)

BOOST_AUTO_TEST_CASE_TEMPLATE(insert_is_all_or_nothing, Kind, locks::both) {
    run_fault_matrix(make<Kind>([](auto& reg) { reg.insert(entry("new", live_pid)); }), label<Kind>("insert"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(upsert_is_all_or_nothing, Kind, locks::both) {
    run_fault_matrix(make<Kind>([](auto& reg) { reg.upsert(entry("alive", live_pid, "2")); }), label<Kind>("upsert"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(erase_is_all_or_nothing, Kind, locks::both) {
    run_fault_matrix(make<Kind>([](auto& reg) { reg.erase("alive"); }), label<Kind>("erase"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(reap_is_all_or_nothing, Kind, locks::both) {
    run_fault_matrix(make<Kind>([](auto& reg) { reg.reap(); }), label<Kind>("reap"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(multi_step_transaction_is_all_or_nothing, Kind, locks::both) {
    run_fault_matrix(make<Kind>([](auto& reg) {
                         reg.transact([](auto& tx) {
                             tx.erase("dead");
                             tx.insert(entry("a", live_pid));
                             tx.insert(entry("b", live_pid));
                         });
                     }),
                     label<Kind>("transaction"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(crash_at_every_system_call_keeps_acknowledged_operations, Kind, locks::both) {
    crash_scenario s;
    s.setup = setup<Kind>;
    s.state = state;
    const auto with_registry = [](std::function<void(pool_registry<Kind>&)> op) {
        return [op](const fs::path& dir) {
            auto reg = open<Kind>(dir);
            op(reg);
        };
    };
    s.steps = {
        with_registry([](auto& reg) { reg.insert(entry("x1", live_pid)); }),
        with_registry([](auto& reg) { reg.upsert(entry("alive", live_pid, "2")); }),
        with_registry([](auto& reg) { reg.reap(); }),
        with_registry([](auto& reg) { reg.erase("x1"); }),
        with_registry([](auto& reg) { reg.insert(entry("x2", live_pid)); }),
    };
    s.reopen = [](const fs::path& dir) { auto reg = open<Kind>(dir); };
    s.teardown = [](const fs::path& dir) { Kind::cleanup(lock_in(dir)); };
    run_crash_points(s, label<Kind>("crash"));
}

BOOST_AUTO_TEST_SUITE_END()
