// tests/support/fault_driver.hpp — the all-or-nothing proof, for any storage.
//
// A `scenario` describes one mutating operation on a registry: how to build
// the state before it, the operation, how to read the state back. The
// drivers then:
// - fail the k-th system call, for every k until the operation no longer
//   reaches the fault, once and persistently, with each injection mode; and
//   check after each run that the state parses and is exactly the state
//   before or after, that an operation reported as successful took effect
//   and one that did not take effect reported an error, that no temp file is
//   left, that no lock is left held, and that the next operation works;
// - SIGKILL a child running a sequence of operations at its k-th system
//   call, for every k, and check that every operation it acknowledged is on
//   disk and every file parses.
//
// Storages whose operations are atomic per file rather than as a whole
// (record_files: a transaction touching several files applies them one by
// one) describe their state as independent *units* (`scenario::units`):
// then each unit must be exactly its old or its new version, and anything
// short of all-new must have been reported as an error.
//
// The drivers run in a tmpfs directory when one is available
// (`use_fast_tmpdir`): the very same system calls are made — fsync
// included, storages stay durable — but a run takes microseconds instead of
// the milliseconds an ext4 fsync costs, so every k of every matrix fits in
// CI. Set PROCREG_RELIABILITY_TMPDIR to run them on another file system.
#pragma once

#include "fault_injection.hpp"
#include "process.hpp"
#include "temp_dir.hpp"

#include <procreg/error.hpp>

#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

namespace procreg_test::faults {

/// Points TMPDIR (where `temp_dir` creates directories) at
/// $PROCREG_RELIABILITY_TMPDIR when set, else at a private directory
/// /dev/shm/procreg_reliability.<uid> (tmpfs; not named "procreg-…", the
/// prefix of named-mutex segments there); returns the directory used. Call
/// once, before any temp_dir is made (a Boost.Test global fixture does it).
inline std::string use_fast_tmpdir() {
    const char* chosen = std::getenv("PROCREG_RELIABILITY_TMPDIR");
    std::string dir = chosen && *chosen ? chosen : "";
    if (dir.empty() && ::access("/dev/shm", W_OK | X_OK) == 0) {
        const std::string shm = "/dev/shm/procreg_reliability." + std::to_string(::geteuid());
        (void)::mkdir(shm.c_str(), 0700);
        struct ::stat st {};
        if (::lstat(shm.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == ::geteuid()) dir = shm;
    }
    if (!dir.empty()) ::setenv("TMPDIR", dir.c_str(), 1);
    const char* now = std::getenv("TMPDIR");
    return now && *now ? now : "/tmp";
}

/// Global fixture form of `use_fast_tmpdir`:
/// `BOOST_TEST_GLOBAL_FIXTURE(procreg_test::faults::fast_tmpdir);`
struct fast_tmpdir {
    fast_tmpdir() { BOOST_TEST_MESSAGE("reliability runs in " << use_fast_tmpdir()); }
};

/// `PROCREG_RELIABILITY_SCALE` (default 1): multiplies the rounds of the
/// bounded tests (load, stress); 0.1 makes a quick smoke run.
inline double reliability_scale() {
    const char* text = std::getenv("PROCREG_RELIABILITY_SCALE");
    if (!text || !*text) return 1.0;
    const double value = std::atof(text);
    return value > 0 ? value : 1.0;
}

/// A registry's state as named units (a file, a record), each in a
/// canonical text form; a unit that does not exist is not in the map.
using unit_states = std::map<std::string, std::string>;

/// The units as one text, for whole-state comparisons and messages.
inline std::string join_units(const unit_states& units) {
    std::string out;
    for (const auto& [name, text] : units) out += name + " = " + text + "\n";
    return out;
}

/// The units of `now` that are neither as in `a` nor as in `b` (absent counts as a value).
inline std::vector<std::string> units_outside(const unit_states& now, const unit_states& a, const unit_states& b) {
    std::map<std::string, int> names;
    for (const auto* m : {&now, &a, &b})
        for (const auto& item : *m) names[item.first] = 0;
    std::vector<std::string> bad;
    const auto value = [](const unit_states& m, const std::string& name) -> std::string {
        const auto it = m.find(name);
        return it == m.end() ? std::string("<absent>") : "=" + it->second;
    };
    for (const auto& item : names) {
        const std::string v = value(now, item.first);
        if (v != value(a, item.first) && v != value(b, item.first)) bad.push_back(item.first + " " + v);
    }
    return bad;
}

/// One mutating operation and the means to observe it.
struct scenario {
    /// Builds the state before the operation in `dir` (no faults armed).
    std::function<void(const std::filesystem::path& dir)> setup;
    /// The operation under test; throws procreg::error when it fails.
    std::function<void(const std::filesystem::path& dir)> operation;
    /// The registry's state in a canonical form; throws if it cannot be read.
    std::function<std::string(const std::filesystem::path& dir)> state;
    /// Returns true when another process can take the registry's lock now.
    std::function<bool(const std::filesystem::path& dir)> lock_is_free;
    /// An operation that must succeed after any fault.
    std::function<void(const std::filesystem::path& dir)> next_operation;
    /// Optional: the state as units that change atomically one by one (see
    /// the file comment). When set, `state` may be left empty.
    std::function<unit_states(const std::filesystem::path& dir)> units;
    /// Optional: runs after the checks, before the directory is removed
    /// (drop handles, remove shared-memory segments).
    std::function<void(const std::filesystem::path& dir)> teardown;
    /// False for an operation that by design cannot report failure (a
    /// destructor): then one that did not take effect need not have thrown.
    bool reports_errors = true;
};

/// Fills in `s.lock_is_free` and `s.teardown` for a lock kind of
/// lock_kinds.hpp (`Kind::is_free(path)`, `Kind::cleanup(path)`) whose lock,
/// for a registry in `dir`, is at `lock_path(dir)`.
template <class Kind>
void use_lock_kind(scenario& s, std::filesystem::path (*lock_path)(const std::filesystem::path& dir)) {
    s.lock_is_free = [lock_path](const std::filesystem::path& dir) { return Kind::is_free(lock_path(dir)); };
    s.teardown = [lock_path](const std::filesystem::path& dir) { Kind::cleanup(lock_path(dir)); };
}

/// A fault matrix's label: "<what>/<lock kind> <op>".
template <class Kind>
std::string matrix_label(const std::string& what, const char* op) {
    return what + "/" + Kind::name + " " + op;
}

/// A registry's state, read once: as one text (for whole-state comparisons)
/// and, when the scenario describes units, as those units.
struct observed {
    std::string text;
    unit_states units;
};

/// Reads the state of `s` (a `scenario` or a `crash_scenario`) in `dir`.
template <class Scenario>
observed observe(const Scenario& s, const std::filesystem::path& dir) {
    observed out;
    if (s.units) {
        out.units = s.units(dir);
        out.text = join_units(out.units);
    } else {
        out.text = s.state(dir);
    }
    return out;
}

/// What a run of the fault matrix did, for the reliability report.
struct fault_stats {
    unsigned long runs = 0;
    unsigned long faults_injected = 0;
    unsigned long failed_operations = 0;
};

/// Names of leftover temp files under `dir`, recursively.
inline std::vector<std::string> temp_files_in(const std::filesystem::path& dir) {
    std::vector<std::string> found;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
        const std::string name = entry.path().filename().string();
        if (name.find(".tmp-") != std::string::npos) found.push_back(entry.path().string());
    }
    return found;
}

/// Runs `s` under every standard mode, failing the k-th selected call for
/// k = 1, 2, ... until the operation completes without meeting the fault.
inline fault_stats run_fault_matrix(const scenario& s, const std::string& label) {
    fault_stats stats;
    observed before;
    observed after;
    {
        temp_dir dir;
        s.setup(dir.path());
        before = observe(s, dir.path());
        s.operation(dir.path());
        after = observe(s, dir.path());
        if (s.teardown) s.teardown(dir.path());
    }
    BOOST_TEST_REQUIRE(before.text != after.text, label << ": the operation must change the state");
    for (const mode& m : standard_modes()) {
        for (unsigned long k = 1;; ++k) {
            BOOST_TEST_REQUIRE(k < 1000u, label << " / " << m.name << ": operation never completes");
            temp_dir dir;
            s.setup(dir.path());
            plan p;
            p.fail_at = k;
            p.persistent = m.persistent;
            p.error = m.error;
            p.mask = m.mask;
            bool reported_error = false;
            std::string error_text;
            {
                armed guard(p);
                try {
                    s.operation(dir.path());
                } catch (const procreg::error& e) {
                    reported_error = true;
                    error_text = e.what();
                }
            }
            ++stats.runs;
            stats.faults_injected += p.injected;
            if (reported_error) ++stats.failed_operations;
            const std::string context = label + " / " + m.name + " / k=" + std::to_string(k);

            observed now;
            BOOST_CHECK_NO_THROW(now = observe(s, dir.path()));
            if (s.units) {
                const auto bad = units_outside(now.units, before.units, after.units);
                BOOST_TEST(bad.empty(), context << ": unit neither before nor after: " << (bad.empty() ? "" : bad[0]));
            } else {
                BOOST_TEST((now.text == before.text || now.text == after.text),
                           context << ": state is neither before nor after");
            }
            if (!reported_error && s.reports_errors) {
                BOOST_TEST(now.text == after.text, context << ": reported success but did not happen");
            }
            if (now.text != after.text && s.reports_errors) {
                BOOST_TEST(reported_error, context << ": did not (fully) happen but reported no error");
            }
            if (p.injected == 0) BOOST_TEST(!reported_error, context << ": failed with no fault: " << error_text);
            // A transient fault must leave no temp file at all. Under a
            // persistent fault even the cleanup unlink fails, so the temp
            // file may remain until the next operation, which must remove it.
            if (!m.persistent) {
                const auto leftovers = temp_files_in(dir.path());
                BOOST_TEST(leftovers.empty(), context << ": temp file left: " << (leftovers.empty() ? "" : leftovers[0]));
            }
            BOOST_TEST(s.lock_is_free(dir.path()), context << ": lock left held");
            BOOST_CHECK_NO_THROW(s.next_operation(dir.path()));
            const auto leftovers = temp_files_in(dir.path());
            BOOST_TEST(leftovers.empty(),
                       context << ": temp file survives the next operation: " << (leftovers.empty() ? "" : leftovers[0]));
            if (s.teardown) s.teardown(dir.path());
            if (p.injected == 0) break;  // the operation ran past every call the fault could hit
        }
    }
    BOOST_TEST_MESSAGE(label << ": " << stats.runs << " runs, " << stats.faults_injected << " faults injected, "
                             << stats.failed_operations << " operations failed cleanly");
    return stats;
}

/// A sequence of operations for the crash-point driver: step i turns state
/// i into state i + 1.
struct crash_scenario {
    std::function<void(const std::filesystem::path& dir)> setup;
    std::vector<std::function<void(const std::filesystem::path& dir)>> steps;
    std::function<std::string(const std::filesystem::path& dir)> state;
    /// Opens the registry once (sweeping leftovers of dead writers) so the
    /// driver can check no temp file survives a reopen.
    std::function<void(const std::filesystem::path& dir)> reopen;
    /// Optional: the state as units that change atomically one by one; a
    /// crash inside step i may leave each unit as after step i or i + 1.
    std::function<unit_states(const std::filesystem::path& dir)> units;
    /// Optional: runs before the directory is removed.
    std::function<void(const std::filesystem::path& dir)> teardown;
};

/// What the crash-point driver did.
struct crash_stats {
    unsigned long crash_points = 0;
};

/// SIGKILLs a child running `s.steps` at its k-th system call, for every k.
inline crash_stats run_crash_points(const crash_scenario& s, const std::string& label) {
    crash_stats stats;
    std::vector<observed> expected;  // the state before step 0, after step 0, ...
    {
        temp_dir dir;
        s.setup(dir.path());
        expected.push_back(observe(s, dir.path()));
        for (const auto& step : s.steps) {
            step(dir.path());
            expected.push_back(observe(s, dir.path()));
        }
        if (s.teardown) s.teardown(dir.path());
    }
    for (unsigned long k = 1;; ++k) {
        BOOST_TEST_REQUIRE(k < 5000u, label << ": the steps never complete");
        temp_dir dir;
        s.setup(dir.path());
        int acks[2];
        BOOST_TEST_REQUIRE(::pipe(acks) == 0);
        const pid_t child = spawn([&] {
            ::close(acks[0]);
            plan p;
            p.kill_at = k;
            armed guard(p);
            for (const auto& step : s.steps) {
                step(dir.path());
                const char done = 1;
                if (::write(acks[1], &done, 1) != 1) return 2;
            }
            return 0;
        });
        ::close(acks[1]);
        std::size_t acknowledged = 0;
        char byte = 0;
        while (::read(acks[0], &byte, 1) == 1) ++acknowledged;
        ::close(acks[0]);
        const int status = wait_exit(child);
        const std::string context = label + " / crash at call " + std::to_string(k);
        BOOST_TEST((status == 0 || status == 128 + SIGKILL), context << ": child exit " << status);
        observed now;
        BOOST_CHECK_NO_THROW(now = observe(s, dir.path()));
        BOOST_TEST_REQUIRE(acknowledged < expected.size());
        const bool at_ack = now.text == expected[acknowledged].text;
        const bool one_more = acknowledged + 1 < expected.size() && now.text == expected[acknowledged + 1].text;
        if (s.units && !at_ack && !one_more && acknowledged + 1 < expected.size()) {
            const auto bad = units_outside(now.units, expected[acknowledged].units, expected[acknowledged + 1].units);
            BOOST_TEST(bad.empty(), context << ": " << acknowledged << " steps acknowledged but unit "
                                            << (bad.empty() ? "" : bad[0]) << " matches neither");
        } else {
            BOOST_TEST((at_ack || one_more), context << ": " << acknowledged
                                                     << " steps acknowledged but the state matches neither");
        }
        BOOST_CHECK_NO_THROW(s.reopen(dir.path()));
        BOOST_TEST(temp_files_in(dir.path()).empty(), context << ": temp file survives a reopen");
        if (s.teardown) s.teardown(dir.path());
        if (status == 0) break;
        ++stats.crash_points;
    }
    BOOST_TEST_MESSAGE(label << ": " << stats.crash_points << " crash points");
    return stats;
}

}  // namespace procreg_test::faults
