// Issue 13 item 4: a pid reused within one clock tick must not inherit the
// dead owner's identity. The start time in /proc/<pid>/stat counts clock
// ticks (10 ms), so an owner SIGKILLed and reaped, whose pid is given at
// once to a newcomer (clone3 with set_tid, as root), leaves a record whose
// pid, start time and boot id all match the newcomer. Where the kernel has
// pidfs (Linux >= 6.9) the pidfd's inode number tells the two apart: it is
// never reused before reboot (docs/policy-liveness.md).
#define BOOST_TEST_MODULE regression_pidfs_identity
#include <boost/test/unit_test.hpp>

#include <procreg/detail/owner_identity.hpp>
#include <procreg/liveness/pidfd_liveness.hpp>

#include "support/pidfs.hpp"
#include "support/process.hpp"

#include <boost/json.hpp>

#include <cerrno>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

#include <signal.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

using procreg::liveness::pidfd_liveness;

namespace {

std::uint64_t start_time_of(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::istringstream rest(text.substr(text.rfind(')') + 1));
    std::string token;
    for (int field = 3; field <= 22; ++field) rest >> token;  // field 22: start time
    return std::stoull(token);
}

// clone3's argument block (linux/sched.h, CLONE_ARGS_SIZE_VER1), spelled out
// so the test does not depend on the installed kernel headers' version.
struct clone3_args {
    std::uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        set_tid_size;
};

// A child that waits for SIGKILL, created with exactly `pid` (clone3
// set_tid, which needs CAP_CHECKPOINT_RESTORE). -1 (errno set) when the pid
// is taken or the kernel refuses.
pid_t spawn_with_pid(pid_t pid) {
    pid_t wanted = pid;
    clone3_args args{};
    args.exit_signal = SIGCHLD;
    args.set_tid = reinterpret_cast<std::uintptr_t>(&wanted);
    args.set_tid_size = 1;
    const long rc = ::syscall(SYS_clone3, &args, sizeof args);
    if (rc == 0) {
        for (;;) ::pause();  // only async-signal-safe calls in this raw clone
    }
    return static_cast<pid_t>(rc);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(pidfs_identity)

BOOST_AUTO_TEST_CASE(a_pid_reused_within_one_clock_tick_reads_dead) {
    BOOST_TEST_REQUIRE(::geteuid() == 0, "this test reuses pids with clone3 set_tid: run it as root");
    BOOST_TEST_REQUIRE(procreg_test::kernel_has_pidfs(), "this test needs pidfs (Linux >= 6.9); the kernel has none");
    const pidfd_liveness live;
    int reused = 0, same_tick = 0;
    // Each try kills an owner and gives its pid to a newcomer at once. When
    // the newcomer starts in the owner's clock tick (most tries on an idle
    // machine), pid + start time + boot id cannot tell them apart and only
    // the pidfs inode can; when it does not (a loaded machine), the stored
    // start time is set to the newcomer's, as if it had: the same case,
    // made deterministic.
    for (int attempt = 0; attempt < 200 && reused < 5; ++attempt) {
        procreg_test::signal_pipe never;
        const pid_t owner = procreg_test::spawn([&] { return never.wait(std::chrono::seconds(60)) ? 0 : 1; });
        boost::json::object stored;
        live.stamp_identity(static_cast<std::uint64_t>(owner), stored);
        const std::uint64_t owner_start = start_time_of(owner);
        ::kill(owner, SIGKILL);
        procreg_test::wait_exit(owner);
        const pid_t newcomer = spawn_with_pid(owner);
        if (newcomer < 0) {
            BOOST_TEST_REQUIRE(errno == EEXIST, "clone3 set_tid failed: errno " << errno);
            continue;  // someone else took the pid first
        }
        const std::uint64_t newcomer_start = start_time_of(newcomer);
        const bool in_same_tick = newcomer_start == owner_start;
        if (!in_same_tick) stored[procreg::detail::owner_start_time_key] = newcomer_start;
        const bool alive = newcomer == owner && live.is_alive(static_cast<std::uint64_t>(owner), stored);
        ::kill(newcomer, SIGKILL);
        procreg_test::wait_exit(newcomer);
        BOOST_TEST_REQUIRE(newcomer == owner);
        ++reused;
        same_tick += in_same_tick;
        BOOST_TEST(!alive, "the record of SIGKILLed pid " << owner << " reads alive: pid " << newcomer
                                                            << " with its start time and boot id has its identity");
        BOOST_TEST(stored.contains(procreg::detail::owner_pidfs_inode_key));
    }
    BOOST_TEST_REQUIRE(reused > 0, "no pid could be reused in 200 tries");
    BOOST_TEST_MESSAGE(reused << " pids reused, " << same_tick << " within the owner's clock tick");
}

BOOST_AUTO_TEST_CASE(the_pidfs_inode_is_stamped_and_matches_the_live_owner) {
    BOOST_TEST_REQUIRE(procreg_test::kernel_has_pidfs(), "this test needs pidfs (Linux >= 6.9); the kernel has none");
    const pidfd_liveness live;
    boost::json::object stored;
    live.stamp_identity(static_cast<std::uint64_t>(::getpid()), stored);
    BOOST_TEST_REQUIRE(stored.contains(procreg::detail::owner_pidfs_inode_key));
    BOOST_TEST(live.is_alive(static_cast<std::uint64_t>(::getpid()), stored));
    // Another inode with the same pid, start time and boot id: another process.
    auto& inode = stored[procreg::detail::owner_pidfs_inode_key];
    inode = inode.to_number<std::uint64_t>() + 1;
    BOOST_TEST(!live.is_alive(static_cast<std::uint64_t>(::getpid()), stored));
    // The /proc-only probe cannot see the inode and falls back to start time + boot id.
    BOOST_TEST(pidfd_liveness(procreg::liveness::pidfd_probe::proc_only)
                   .is_alive(static_cast<std::uint64_t>(::getpid()), stored));
    // A malformed inode is ignored like any malformed identity key.
    inode = "soon";
    BOOST_TEST(live.is_alive(static_cast<std::uint64_t>(::getpid()), stored));
}

BOOST_AUTO_TEST_SUITE_END()
