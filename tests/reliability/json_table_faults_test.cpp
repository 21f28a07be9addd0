// Fault injection and crash points for the one-JSON-file storage (the
// algocline preset): every mutating operation is all-or-nothing under a
// failing k-th system call and under SIGKILL at the k-th system call.
#define BOOST_TEST_MODULE json_table_faults
#include <boost/test/unit_test.hpp>

#include <procreg/presets/algocline.hpp>

#include "../support/fault_driver.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using procreg::algocline::pool_session;
using namespace procreg_test::faults;

namespace {

const std::uint32_t live_pid = static_cast<std::uint32_t>(::getpid());
const std::uint32_t gone_pid = static_cast<std::uint32_t>(procreg_test::dead_pid());

fs::path file_in(const fs::path& dir) { return dir / "registry.json"; }

pool_session entry(const std::string& sid, std::uint32_t pid, const std::string& version = "1") {
    pool_session s = pool_session::make(sid, pid, "/run/" + sid + ".sock", version);
    s.created_at = "2026-01-01T00:00:00Z";
    return s;
}

void setup(const fs::path& dir) {
    auto reg = procreg::algocline::open(file_in(dir));
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

bool lock_is_free(const fs::path& dir) {
    const pid_t child = procreg_test::spawn([&] {
        procreg::lock::flock_lock lock(dir / "registry.lock");
        if (!lock.try_lock()) return 1;
        lock.unlock();
        return 0;
    });
    return procreg_test::wait_exit(child) == 0;
}

void next_operation(const fs::path& dir) {
    auto reg = procreg::algocline::open(file_in(dir));
    reg.upsert(entry("next", live_pid));
    if (!reg.find("next")) throw std::runtime_error("next operation did not take effect");
}

scenario make(std::function<void(procreg::algocline::pool_registry&)> op) {
    scenario s;
    s.setup = setup;
    s.operation = [op](const fs::path& dir) {
        auto reg = procreg::algocline::open(file_in(dir));
        op(reg);
    };
    s.state = state;
    s.lock_is_free = lock_is_free;
    s.next_operation = next_operation;
    return s;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(json_table_faults)

BOOST_AUTO_TEST_CASE(insert_is_all_or_nothing) {
    run_fault_matrix(make([](auto& reg) { reg.insert(entry("new", live_pid)); }), "json_table insert");
}

BOOST_AUTO_TEST_CASE(upsert_is_all_or_nothing) {
    run_fault_matrix(make([](auto& reg) { reg.upsert(entry("alive", live_pid, "2")); }), "json_table upsert");
}

BOOST_AUTO_TEST_CASE(erase_is_all_or_nothing) {
    run_fault_matrix(make([](auto& reg) { reg.erase("alive"); }), "json_table erase");
}

BOOST_AUTO_TEST_CASE(reap_is_all_or_nothing) {
    run_fault_matrix(make([](auto& reg) { reg.reap(); }), "json_table reap");
}

BOOST_AUTO_TEST_CASE(multi_step_transaction_is_all_or_nothing) {
    run_fault_matrix(make([](auto& reg) {
                         reg.transact([](auto& tx) {
                             tx.erase("dead");
                             tx.insert(entry("a", live_pid));
                             tx.insert(entry("b", live_pid));
                         });
                     }),
                     "json_table transaction");
}

BOOST_AUTO_TEST_CASE(crash_at_every_system_call_keeps_acknowledged_operations) {
    crash_scenario s;
    s.setup = setup;
    s.state = state;
    const auto with_registry = [](std::function<void(procreg::algocline::pool_registry&)> op) {
        return [op](const fs::path& dir) {
            auto reg = procreg::algocline::open(file_in(dir));
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
    s.reopen = [](const fs::path& dir) { auto reg = procreg::algocline::open(file_in(dir)); };
    run_crash_points(s, "json_table");
}

BOOST_AUTO_TEST_SUITE_END()
