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
#pragma once

#include "fault_injection.hpp"
#include "process.hpp"
#include "temp_dir.hpp"

#include <procreg/error.hpp>

#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace procreg_test::faults {

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
};

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
    std::string before;
    std::string after;
    {
        temp_dir dir;
        s.setup(dir.path());
        before = s.state(dir.path());
        s.operation(dir.path());
        after = s.state(dir.path());
    }
    BOOST_TEST_REQUIRE(before != after, label << ": the operation must change the state");
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

            std::string now;
            BOOST_CHECK_NO_THROW(now = s.state(dir.path()));
            BOOST_TEST((now == before || now == after), context << ": state is neither before nor after");
            if (!reported_error) BOOST_TEST(now == after, context << ": reported success but did not happen");
            if (now == before) BOOST_TEST(reported_error, context << ": did not happen but reported no error");
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
};

/// What the crash-point driver did.
struct crash_stats {
    unsigned long crash_points = 0;
};

/// SIGKILLs a child running `s.steps` at its k-th system call, for every k.
inline crash_stats run_crash_points(const crash_scenario& s, const std::string& label) {
    crash_stats stats;
    std::vector<std::string> expected;
    {
        temp_dir dir;
        s.setup(dir.path());
        expected.push_back(s.state(dir.path()));
        for (const auto& step : s.steps) {
            step(dir.path());
            expected.push_back(s.state(dir.path()));
        }
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
        std::string now;
        BOOST_CHECK_NO_THROW(now = s.state(dir.path()));
        const bool at_ack = now == expected[acknowledged];
        const bool one_more = acknowledged + 1 < expected.size() && now == expected[acknowledged + 1];
        BOOST_TEST((at_ack || one_more), context << ": " << acknowledged
                                                 << " steps acknowledged but the state matches neither");
        BOOST_CHECK_NO_THROW(s.reopen(dir.path()));
        BOOST_TEST(temp_files_in(dir.path()).empty(), context << ": temp file survives a reopen");
        if (status == 0) break;
        ++stats.crash_points;
    }
    BOOST_TEST_MESSAGE(label << ": " << stats.crash_points << " crash points");
    return stats;
}

}  // namespace procreg_test::faults
