// Conformance suite of trusty-memory's daemon PID lock (seed 003, daemon lock module).
//
// The seed's own tests come first, ported one for one (its refusal test used
// pid 1; here the live holder is a real child process, and pid 1 is checked
// too when it is alive). Then what the seed promises without testing:
// malformed files, I/O errors on read, the exact on-disk bytes, the own-pid
// retake, a guard that must not delete a lock someone else took over, and a
// holder in another process that is SIGKILLed.
#define BOOST_TEST_MODULE trusty
#include <boost/test/unit_test.hpp>

#include <procreg/presets/trusty.hpp>

#include "../support/claim_helpers.hpp"
#include "../support/policy_matrix.hpp"
#include "../support/process.hpp"
#include "../support/temp_dir.hpp"

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;
namespace trusty = procreg::trusty;
using test_registry = procreg_test::under_test<trusty::daemon_registry>;
using procreg_test::temp_dir;

namespace {

std::uint32_t self_pid() { return static_cast<std::uint32_t>(::getpid()); }

}  // namespace

BOOST_AUTO_TEST_SUITE(trusty_lock)

// ── lock_file_path ──────────────────────────────────────────────────────────

BOOST_AUTO_TEST_CASE(lock_file_path_uses_data_dir) {
    temp_dir dir;
    const fs::path path = trusty::lock_file_path_for_dir(dir.path());
    BOOST_TEST(path.filename() == "daemon.lock");
    BOOST_TEST(std::string(trusty::lock_filename) == "daemon.lock");
    BOOST_TEST(path.parent_path() == dir.path());
}

// lock_file_path() resolves the data directory like the seed's
// resolve_data_dir on Linux. Each ctest case is its own process, so setting
// the environment here races with nothing.
BOOST_AUTO_TEST_CASE(lock_file_path_follows_xdg_data_home) {
    temp_dir dir;
    ::setenv("XDG_DATA_HOME", dir.path().c_str(), 1);
    BOOST_TEST(trusty::lock_file_path().value() == dir / "trusty-memory" / "daemon.lock");
    ::unsetenv("XDG_DATA_HOME");
    ::setenv("HOME", dir.path().c_str(), 1);
    BOOST_TEST(trusty::lock_file_path().value() == dir / ".local" / "share" / "trusty-memory" / "daemon.lock");
    ::unsetenv("HOME");
    BOOST_TEST(!trusty::lock_file_path().has_value());
}

// ── read_lock_pid ───────────────────────────────────────────────────────────

BOOST_AUTO_TEST_CASE(read_lock_pid_returns_none_for_missing_file) {
    temp_dir dir;
    BOOST_TEST(!trusty::read_lock_pid(dir / "daemon.lock").has_value());
}

BOOST_AUTO_TEST_CASE(read_lock_pid_returns_pid_for_valid_file) {
    temp_dir dir;
    procreg_test::write_text(dir / "daemon.lock", "12345\n");
    BOOST_TEST(trusty::read_lock_pid(dir / "daemon.lock").value() == 12345u);
}

BOOST_AUTO_TEST_CASE(read_lock_pid_returns_none_for_empty_file) {
    temp_dir dir;
    procreg_test::write_text(dir / "daemon.lock", "");
    BOOST_TEST(!trusty::read_lock_pid(dir / "daemon.lock").has_value());
    procreg_test::write_text(dir / "daemon.lock", " \n\t");
    BOOST_TEST(!trusty::read_lock_pid(dir / "daemon.lock").has_value());
}

// What `trim().parse::<u32>()` rejects is None; what it accepts is the pid.
BOOST_AUTO_TEST_CASE(read_lock_pid_returns_none_for_malformed_file) {
    temp_dir dir;
    const fs::path path = dir / "daemon.lock";
    for (const char* text : {"abc\n", "-5\n", "12 34\n", "4294967296\n", "99999999999999999999999\n", "0x10\n", "+\n",
                             "{\"pid\": 5}"}) {
        procreg_test::write_text(path, text);
        BOOST_TEST(!trusty::read_lock_pid(path).has_value(), "malformed: " << text);
    }
    procreg_test::write_text(path, "  +4294967295 \r\n");
    BOOST_TEST(trusty::read_lock_pid(path).value() == 4294967295u);
}

// Any failure other than "no such file" is an error, not None.
BOOST_AUTO_TEST_CASE(read_lock_pid_errors_on_other_io_failure) {
    temp_dir dir;
    fs::create_directory(dir / "daemon.lock");  // a directory where the file should be
    BOOST_CHECK_THROW(trusty::read_lock_pid(dir / "daemon.lock"), procreg::error);

    temp_dir other;
    procreg_test::write_text(other / "target", "77\n");
    fs::create_symlink(other / "target", other / "daemon.lock");  // procreg never follows a symlink
    try {
        (void)trusty::read_lock_pid(other / "daemon.lock");
        BOOST_FAIL("a symlinked lock file must be an error");
    } catch (const procreg::error& e) {
        BOOST_TEST(e.code() == procreg::errc::unsafe_path);
        BOOST_TEST(e.path() == other / "daemon.lock");
    }
}

// Reading never creates anything: a diagnostic command must not leave a data
// directory behind.
BOOST_AUTO_TEST_CASE(read_lock_pid_creates_nothing) {
    temp_dir dir;
    BOOST_TEST(!trusty::read_lock_pid(dir / "missing" / "daemon.lock").has_value());
    BOOST_TEST(!fs::exists(dir / "missing"));
}

// ── pid_alive ───────────────────────────────────────────────────────────────

BOOST_AUTO_TEST_CASE(pid_alive_returns_true_for_current_pid) { BOOST_TEST(trusty::pid_alive(self_pid())); }

BOOST_AUTO_TEST_CASE(pid_alive_returns_false_for_pid_zero) { BOOST_TEST(!trusty::pid_alive(0)); }

BOOST_AUTO_TEST_CASE(pid_alive_returns_false_for_overflow_pid) {
    BOOST_TEST(!trusty::pid_alive(UINT32_MAX));
    BOOST_TEST(!trusty::pid_alive(static_cast<std::uint32_t>(INT_MAX) + 1u));
}

// ── acquire_lock ────────────────────────────────────────────────────────────

BOOST_AUTO_TEST_CASE(acquire_lock_writes_own_pid) {
    temp_dir dir;
    const fs::path path = dir / "daemon.lock";
    BOOST_TEST_REQUIRE(!fs::exists(path));
    auto guard = trusty::acquire_lock<test_registry>(path);
    BOOST_TEST(trusty::read_lock_pid(path).value() == self_pid());
    BOOST_TEST(guard.record().pid == self_pid());
    BOOST_TEST(guard.held());
}

// The stale pid belongs to a real child that was spawned and reaped.
BOOST_AUTO_TEST_CASE(acquire_lock_reclaims_stale_pid) {
    temp_dir dir;
    const fs::path path = dir / "daemon.lock";
    const auto dead = static_cast<std::uint32_t>(procreg_test::dead_pid());
    BOOST_TEST_REQUIRE(!trusty::pid_alive(dead));
    procreg_test::write_text(path, std::to_string(dead) + "\n");
    auto guard = trusty::acquire_lock<test_registry>(path);
    BOOST_TEST(trusty::read_lock_pid(path).value() == self_pid());
}

// A live holder is refused with "already running", its pid, the lock file,
// and how to remove a stale lock by hand.
BOOST_AUTO_TEST_CASE(acquire_lock_refuses_live_pid) {
    temp_dir dir;
    const fs::path path = dir / "daemon.lock";
    procreg_test::live_child holder;
    procreg_test::write_text(path, std::to_string(holder.pid()) + "\n");
    try {
        auto guard = trusty::acquire_lock<test_registry>(path);
        BOOST_FAIL("a live holder must be refused");
    } catch (const procreg::claim_in_use& e) {
        BOOST_TEST(e.code() == procreg::errc::in_use);
        BOOST_TEST(e.pid().value() == static_cast<std::uint64_t>(holder.pid()));
        BOOST_TEST(e.path() == path);
        const std::string what = e.what();
        BOOST_TEST(what.find("already running") != std::string::npos, what);
        BOOST_TEST(what.find("PID " + std::to_string(holder.pid())) != std::string::npos, what);
        BOOST_TEST(what.find("lock file: " + path.string()) != std::string::npos, what);
        BOOST_TEST(what.find("rm \"" + path.string() + "\"") != std::string::npos, what);
    }
    // Refusal writes nothing.
    BOOST_TEST(procreg_test::read_text(path) == std::to_string(holder.pid()) + "\n");

    // The seed's own probe: pid 1, where it is alive and is not us.
    if (trusty::pid_alive(1) && self_pid() != 1) {
        procreg_test::write_text(path, "1\n");
        std::error_code ec;
        auto none = trusty::open<test_registry>(path).acquire(trusty::daemon_lock_record{self_pid()}, ec);
        BOOST_TEST(!none.has_value());
        BOOST_TEST(ec == procreg::errc::in_use);
    }
}

// ── DaemonLock drop ─────────────────────────────────────────────────────────

BOOST_AUTO_TEST_CASE(daemon_lock_drops_removes_file) {
    temp_dir dir;
    const fs::path path = dir / "daemon.lock";
    {
        auto guard = trusty::acquire_lock<test_registry>(path);
        BOOST_TEST(fs::exists(path));
    }
    BOOST_TEST(!fs::exists(path));
}

// ── beyond the seed's tests ─────────────────────────────────────────────────

// Byte for byte what the Rust program writes: "<pid>\n", mode 0600, and
// nothing else left in the directory but procreg's own lock file.
BOOST_AUTO_TEST_CASE(on_disk_format_is_the_seeds) {
    temp_dir dir;
    const fs::path path = dir / "daemon.lock";
    auto guard = trusty::acquire_lock<test_registry>(path);
    BOOST_TEST(procreg_test::read_text(path) == std::to_string(self_pid()) + "\n");
    BOOST_TEST(procreg_test::mode_of(path) == 0600u);
    BOOST_TEST(procreg_test::list_dir(dir.path()) ==
               (procreg_test::lock_uses_file<trusty::daemon_registry> ? ".daemon.lock.flock daemon.lock "
                                                                       : "daemon.lock "));
}

// An empty or malformed lock has no holder: acquire takes it over, as the
// seed does (read_lock_pid → None → write).
BOOST_AUTO_TEST_CASE(acquire_lock_reclaims_malformed_file) {
    for (const char* text : {"", "garbage\n", "4294967296\n"}) {
        temp_dir dir;
        const fs::path path = dir / "daemon.lock";
        procreg_test::write_text(path, text);
        auto guard = trusty::acquire_lock<test_registry>(path);
        BOOST_TEST(procreg_test::read_text(path) == std::to_string(self_pid()) + "\n", "was: " << text);
    }
}

// The seed lets its own pid take the lock again. The older guard then no
// longer owns the file (it was replaced), so dropping it leaves the newer
// guard's lock in place — the seed would have deleted it.
BOOST_AUTO_TEST_CASE(own_pid_retakes_and_older_guard_leaves_newer_lock) {
    temp_dir dir;
    const fs::path path = dir / "daemon.lock";
    auto first = std::make_unique<trusty::basic_daemon_lock<test_registry>>(trusty::acquire_lock<test_registry>(path));
    auto second = trusty::acquire_lock<test_registry>(path);
    BOOST_TEST(trusty::read_lock_pid(path).value() == self_pid());
    BOOST_TEST((first->release() == procreg::release_status::not_ours));
    first.reset();
    BOOST_TEST(fs::exists(path));
    BOOST_TEST((second.release() == procreg::release_status::released));
    BOOST_TEST(!fs::exists(path));
    BOOST_TEST((second.release() == procreg::release_status::absent));
}

// A guard whose lock was replaced by another writer (here as the Rust
// program's stale reclaim does: temp file + rename) must not delete it.
BOOST_AUTO_TEST_CASE(guard_does_not_remove_a_lock_taken_over) {
    temp_dir dir;
    const fs::path path = dir / "daemon.lock";
    procreg_test::live_child other;
    {
        auto guard = trusty::acquire_lock<test_registry>(path);
        procreg_test::foreign_replace(path, std::to_string(other.pid()) + "\n");
    }
    BOOST_TEST(trusty::read_lock_pid(path).value() == static_cast<std::uint32_t>(other.pid()));
}

// A lock removed by hand (the advice in the error message) is simply gone.
BOOST_AUTO_TEST_CASE(guard_tolerates_a_lock_removed_by_hand) {
    temp_dir dir;
    const fs::path path = dir / "daemon.lock";
    auto guard = trusty::acquire_lock<test_registry>(path);
    fs::remove(path);
    BOOST_TEST((guard.release() == procreg::release_status::absent));
    BOOST_TEST(!fs::exists(path));
}

// The daemon in another process holds the lock; while it lives every start
// is refused; once it is SIGKILLed (no drop runs) its lock is stale and the
// next start takes it over.
BOOST_AUTO_TEST_CASE(lock_of_a_killed_daemon_is_reclaimed) {
    temp_dir dir;
    const fs::path path = dir / "daemon.lock";
    procreg_test::live_child daemon([&] { return trusty::acquire_lock<test_registry>(path); });
    BOOST_TEST_REQUIRE(daemon.ready());
    const auto daemon_pid = static_cast<std::uint32_t>(daemon.pid());

    BOOST_TEST(trusty::read_lock_pid(path).value() == daemon_pid);
    BOOST_CHECK_THROW(trusty::acquire_lock<test_registry>(path), procreg::claim_in_use);

    BOOST_TEST(daemon.stop() == 128 + SIGKILL);
    BOOST_TEST(trusty::read_lock_pid(path).value() == daemon_pid);  // left behind
    auto guard = trusty::acquire_lock<test_registry>(path);
    BOOST_TEST(trusty::read_lock_pid(path).value() == self_pid());
}

BOOST_AUTO_TEST_SUITE_END()
