// Fault injection and crash points for the file-per-record storage
// (storage::record_files, AgentMux's layout), under flock and under the
// named mutex: insert, upsert, erase, reap (delete and retire), retire,
// unretire, hard_delete and a multi-step transaction, each with the k-th
// system call failing for every k (once and persistently), and a child
// SIGKILLed at its k-th system call.
//
// record_files is atomic per file, not per transaction: a transaction
// applies its changes file by file (docs/storage-record-files.md). So the
// state is checked per unit. A unit is one record key — its active file and
// its retired file together — because a retire or unretire is one rename
// and must never lose or duplicate the record; hard_delete of a key with
// both copies is two unlinks, so there each file is its own unit. Every
// unit must be exactly old or new, and anything short of all-new must be
// reported as an error.
#define BOOST_TEST_MODULE record_files_faults
#include <boost/test/unit_test.hpp>

#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/record_files.hpp>

#include "../support/counter_record.hpp"
#include "../support/fault_driver.hpp"
#include "../support/lock_kinds.hpp"

#include <boost/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace procreg_test::faults;

BOOST_TEST_GLOBAL_FIXTURE(fast_tmpdir);

namespace {

// A record with an owner process, so reap has something to decide; `count`
// is its version.
using worker = procreg_test::counter_record;
using procreg::storage::erase_action;
using procreg::storage::record_files;

const std::uint32_t live_pid = static_cast<std::uint32_t>(::getpid());
const std::uint32_t gone_pid = static_cast<std::uint32_t>(procreg_test::dead_pid());

template <class Kind>
using registry_t = procreg::registry<worker, typename Kind::type, record_files, procreg::liveness::kill_liveness>;

fs::path root_of(const fs::path& dir) { return dir / "r"; }
fs::path lock_of(const fs::path& dir) { return root_of(dir) / ".registry.lock"; }

procreg::storage::record_files_options options(const fs::path& dir, erase_action on_erase = erase_action::remove) {
    procreg::storage::record_files_options opts;
    opts.root = root_of(dir);
    opts.on_erase = on_erase;
    opts.durable = true;  // every fsync is a system call the faults must meet
    return opts;
}

template <class Kind>
registry_t<Kind> open(const fs::path& dir, erase_action on_erase = erase_action::remove) {
    return registry_t<Kind>(record_files(options(dir, on_erase)));
}

worker make(const std::string& name, std::uint32_t pid, std::uint32_t version = 1) { return worker{name, pid, version}; }

// Active: alive (live owner), dead (dead owner), both. Retired: old, both.
template <class Kind>
void setup(const fs::path& dir) {
    auto reg = open<Kind>(dir);
    reg.insert(make("alive", live_pid));
    reg.insert(make("dead", gone_pid));
    reg.insert(make("old", live_pid));
    reg.retire("old");
    reg.insert(make("both", live_pid, 0));
    reg.retire("both");
    reg.insert(make("both", live_pid, 1));
}

// Each record file under root and root/retired, read without procreg: it
// must parse as a JSON object (throws otherwise); its bytes are its state.
// Hidden names (the lock file, temp files) are not records.
unit_states files_by(const fs::path& dir, bool per_key) {
    unit_states out;
    for (const char* side : {"active", "retired"}) {
        const fs::path where = std::string(side) == "active" ? root_of(dir) : root_of(dir) / "retired";
        for (const auto& entry : fs::directory_iterator(where)) {
            const std::string name = entry.path().filename().string();
            if (name.front() == '.' || entry.is_directory()) continue;
            const std::string bytes = procreg_test::read_text(entry.path());
            if (!boost::json::parse(bytes).is_object()) throw std::runtime_error(name + " is not an object");
            const std::string key = name.substr(0, name.size() - 5);
            if (per_key) {
                out[key] += std::string(side) + ":" + bytes;
            } else {
                out[std::string(side) + "/" + name] = bytes;
            }
        }
    }
    return out;
}

unit_states by_key(const fs::path& dir) { return files_by(dir, true); }
unit_states by_file(const fs::path& dir) { return files_by(dir, false); }

template <class Kind>
void next_operation(const fs::path& dir) {
    auto reg = open<Kind>(dir);
    reg.upsert(make("next", live_pid));
    if (!reg.find("next")) throw std::runtime_error("next operation did not take effect");
}

template <class Kind>
scenario make_scenario(std::function<void(registry_t<Kind>&)> op, erase_action on_erase = erase_action::remove,
                       bool per_file = false) {
    scenario s;
    s.setup = setup<Kind>;
    s.operation = [op, on_erase](const fs::path& dir) {
        auto reg = open<Kind>(dir, on_erase);
        op(reg);
    };
    s.units = per_file ? by_file : by_key;
    s.next_operation = next_operation<Kind>;
    use_lock_kind<Kind>(s, lock_of);
    return s;
}

template <class Kind>
std::string label(const char* op) {
    return matrix_label<Kind>("record_files", op);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(record_files_faults)

BOOST_AUTO_TEST_CASE_TEMPLATE(insert_is_all_or_nothing, Kind, locks::both) {
    run_fault_matrix(make_scenario<Kind>([](auto& reg) { reg.insert(make("fresh", live_pid)); }), label<Kind>("insert"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(upsert_is_all_or_nothing, Kind, locks::both) {
    run_fault_matrix(make_scenario<Kind>([](auto& reg) { reg.upsert(make("alive", live_pid, 2)); }),
                     label<Kind>("upsert"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(erase_is_all_or_nothing, Kind, locks::both) {
    run_fault_matrix(make_scenario<Kind>([](auto& reg) {
                         if (!reg.erase("alive")) throw std::runtime_error("nothing erased");
                     }),
                     label<Kind>("erase"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(reap_is_all_or_nothing, Kind, locks::both) {
    run_fault_matrix(make_scenario<Kind>([](auto& reg) { reg.reap(); }), label<Kind>("reap"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(reap_that_retires_is_all_or_nothing, Kind, locks::both) {
    run_fault_matrix(make_scenario<Kind>([](auto& reg) { reg.reap(); }, erase_action::retire),
                     label<Kind>("reap (retire)"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(retire_is_all_or_nothing, Kind, locks::both) {
    run_fault_matrix(make_scenario<Kind>([](auto& reg) { reg.retire("alive"); }), label<Kind>("retire"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(unretire_is_all_or_nothing, Kind, locks::both) {
    run_fault_matrix(make_scenario<Kind>([](auto& reg) { reg.unretire("old"); }), label<Kind>("unretire"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(hard_delete_is_all_or_nothing_per_file, Kind, locks::both) {
    // Two unlinks (active, then retired): each file is its own unit.
    run_fault_matrix(make_scenario<Kind>([](auto& reg) { reg.hard_delete("both"); }, erase_action::remove, true),
                     label<Kind>("hard_delete"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(multi_step_transaction_is_all_or_nothing_per_record, Kind, locks::both) {
    run_fault_matrix(make_scenario<Kind>([](auto& reg) {
                         reg.transact([](auto& tx) {
                             tx.upsert(make("alive", live_pid, 2));  // rewrite
                             tx.insert(make("fresh", live_pid));     // create
                             tx.retire("dead");                      // rename active -> retired
                             tx.unretire("old");                     // rename retired -> active
                             tx.erase("both");                       // unlink active, retired copy stays
                         });
                     }),
                     label<Kind>("transaction"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(crash_at_every_system_call_keeps_acknowledged_operations, Kind, locks::both) {
    crash_scenario s;
    s.setup = setup<Kind>;
    s.units = by_key;
    const auto with_registry = [](std::function<void(registry_t<Kind>&)> op) {
        return [op](const fs::path& dir) {
            auto reg = open<Kind>(dir);
            op(reg);
        };
    };
    s.steps = {
        with_registry([](auto& reg) { reg.insert(make("x1", live_pid)); }),
        with_registry([](auto& reg) { reg.upsert(make("alive", live_pid, 2)); }),
        with_registry([](auto& reg) { reg.retire("alive"); }),
        with_registry([](auto& reg) { reg.unretire("alive"); }),
        with_registry([](auto& reg) { reg.reap(); }),
        with_registry([](auto& reg) { reg.erase("x1"); }),
        with_registry([](auto& reg) { reg.hard_delete("old"); }),
        with_registry([](auto& reg) {
            reg.transact([](auto& tx) {
                tx.insert(make("x2", live_pid));
                tx.retire("both");
                tx.upsert(make("alive", live_pid, 3));
            });
        }),
    };
    s.reopen = [](const fs::path& dir) { auto reg = open<Kind>(dir); };
    s.teardown = [](const fs::path& dir) { Kind::cleanup(lock_of(dir)); };
    run_crash_points(s, label<Kind>("crash"));
}

BOOST_AUTO_TEST_SUITE_END()
