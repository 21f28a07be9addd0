// Issue 16 item 3: an upsert asks whether the owner identity stored with a
// record still describes the live process with its pid
// (transaction::stored_identity_describes). It asked pidfd_liveness with
// its default probe, pidfd_open, whatever probe the registry's own policy
// was given: a registry told `pidfd_probe::proc_only` (a system where
// pidfd_open is not to be used) still called it, and believed its answer.
// Here pidfd_open fails with ESRCH ("no such process") under a seccomp
// filter, in a child: a proc_only registry upserting the record of its own
// live process must still see that process as the record's owner, and so
// keep the identity stored with it (the pidfs inode among it), not drop it
// as a dead owner's.
#define BOOST_TEST_MODULE regression_identity_probe
#include <boost/test/unit_test.hpp>

#include <procreg/detail/owner_identity.hpp>
#include <procreg/liveness/pidfd_liveness.hpp>

#include "support/counter_registries.hpp"
#include "support/pidfs.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace fs = std::filesystem;
using procreg::liveness::pidfd_liveness;
using procreg::liveness::pidfd_probe;
using procreg_test::counter_record;

namespace {

auto open_counter(const fs::path& dir, pidfd_probe probe) {
    return procreg_test::open_counter_table<procreg::lock::flock_lock, pidfd_liveness>(dir, "counters",
                                                                                        pidfd_liveness(probe));
}

std::string read_all(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// From now on pidfd_open fails in this process with ESRCH, as if the
// process it names did not exist. False when seccomp refuses the filter.
bool make_pidfd_open_fail() {
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, static_cast<std::uint32_t>(offsetof(struct seccomp_data, nr))),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_open, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ESRCH & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program {};
    program.len = static_cast<unsigned short>(sizeof filter / sizeof filter[0]);
    program.filter = filter;
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
    return ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0;
}

}  // namespace

BOOST_AUTO_TEST_CASE(an_upsert_judges_the_stored_identity_with_the_registrys_own_probe) {
    BOOST_TEST_REQUIRE(procreg_test::kernel_has_pidfs(), "this test needs pidfs (Linux >= 6.9); the kernel has none");
    procreg_test::temp_dir dir;
    const fs::path dir_path = dir.path();
    const fs::path file = dir_path / "registry.json";
    const auto self = static_cast<std::uint32_t>(::getpid());
    // The record of this live process, stamped with the pidfs inode by the default probe.
    open_counter(dir_path, pidfd_probe::pidfd_then_proc).insert(counter_record{"mine", self, 1});
    const std::string inode_key(procreg::detail::owner_pidfs_inode_key);
    BOOST_TEST_REQUIRE(read_all(file).find(inode_key) != std::string::npos);

    // 0: identity kept; 1: dropped; 2: no seccomp here; 3: the proc_only probe itself saw no owner.
    const pid_t child = procreg_test::spawn([&] {
        if (!make_pidfd_open_fail()) return 2;
        auto reg = open_counter(dir_path, pidfd_probe::proc_only);
        boost::json::object none;
        if (!pidfd_liveness(pidfd_probe::proc_only).is_alive(self, none)) return 3;
        reg.upsert(counter_record{"mine", self, 2});
        return read_all(file).find(inode_key) != std::string::npos ? 0 : 1;
    });
    const int code = procreg_test::wait_exit(child);
    BOOST_TEST_REQUIRE(code != 2, "seccomp refused the filter");
    BOOST_TEST_REQUIRE(code != 3);
    BOOST_TEST(code == 0, "a proc_only registry judged its own live owner dead by pidfd_open, and dropped "
                          "the identity stored with the record");
    BOOST_TEST(read_all(file).find("\"count\": 2") != std::string::npos);
}
