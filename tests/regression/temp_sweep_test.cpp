// Issue 13 item 8: a temp file in flight must survive every sweep. Stale
// temp files were swept when opening a storage, by kill(writer_pid, 0) on
// the pid in their name; a writer in another pid namespace sharing the
// directory (containers sharing a volume) names its temp file with a pid
// that means nothing here, and lost it mid-save. Now a temp file's name
// carries its writer's pid namespace, and without the registry lock only a
// file of this namespace whose writer is gone is swept (docs/reliability.md).
#define BOOST_TEST_MODULE regression_temp_sweep
#include <boost/test/unit_test.hpp>

#include <procreg/detail/temp_files.hpp>
#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/claim_file.hpp>
#include <procreg/storage/json_table.hpp>
#include <procreg/storage/record_files.hpp>

#include "support/counter_registries.hpp"
#include "support/fault_injection.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using procreg_test::counter_record;
using namespace std::chrono_literals;

namespace {

using procreg_test::counter_registry;

// The three storages, each opened on `dir` the same way in every process.
struct json_table_kind : procreg_test::basic_json_table_kind<false> {
    static constexpr const char* target = "registry.json";
    static constexpr bool sweeps_all_under_the_lock = true;
};
struct record_files_kind : procreg_test::basic_record_files_kind<false> {
    static constexpr const char* target = "n.json";
    static constexpr bool sweeps_all_under_the_lock = false;
};
struct claim_file_kind : procreg_test::basic_claim_file_kind<false> {
    static constexpr const char* target = "claim.json";
    static constexpr bool sweeps_all_under_the_lock = true;
};

// Temp files (procreg's names, ".<target>.tmp-<pid>-...") in `dir`.
std::vector<std::string> temp_files(const std::filesystem::path& dir) {
    std::vector<std::string> out;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        const std::string name = entry.path().filename().string();
        if (name.front() == '.' && name.find(".tmp-") != std::string::npos) out.push_back(name);
    }
    return out;
}

// Pauses the process at the first rename or link, i.e. with its temp file
// complete and not yet published, until the parent says go.
struct pause_before_publish {
    procreg_test::signal_pipe* paused;
    procreg_test::signal_pipe* go;
    bool done = false;
    static int hook(procreg::detail::sys::call c, void* context) {
        auto& self = *static_cast<pause_before_publish*>(context);
        using procreg::detail::sys::call;
        if (!self.done && (c == call::rename || c == call::link)) {
            self.done = true;
            self.paused->notify();
            if (!self.go->wait(60s)) ::_exit(80);
        }
        return 0;
    }
};

// Runs `body` in a child whose pid in a new pid namespace is `ns_pid`
// (chosen through that namespace's ns_last_pid). Returns the child's
// outermost ancestor, whose exit code is `body`'s (or 90+ on a setup failure).
template <class Body>
pid_t spawn_in_pid_namespace(pid_t ns_pid, Body body) {
    return procreg_test::spawn([&] {
        if (::unshare(CLONE_NEWPID) != 0) return 90;
        const pid_t init = ::fork();  // pid 1 of the new namespace
        if (init < 0) return 91;
        if (init == 0) {
            // ns_last_pid acts on the writer's own pid namespace.
            std::ofstream("/proc/sys/kernel/ns_last_pid") << (ns_pid - 1);
            std::fflush(nullptr);
            const pid_t writer = ::fork();
            if (writer == 0) {
                if (::getpid() != ns_pid) ::_exit(93);
                int code = 70;
                try {
                    code = body();
                } catch (const std::exception& e) {
                    std::fprintf(stderr, "writer in a pid namespace: %s\n", e.what());
                }
                std::fflush(nullptr);
                ::_exit(code);
            }
            ::_exit(writer < 0 ? 92 : procreg_test::wait_exit(writer));
        }
        return procreg_test::wait_exit(init);
    });
}

template <class Kind>
void in_flight_temp_file_of_a_writer_in_another_pid_namespace_survives() {
    BOOST_TEST_REQUIRE(::geteuid() == 0, "this test makes a pid namespace (CLONE_NEWPID): run it as root");
    procreg_test::temp_dir dir;
    // A pid that names no process here: kill(pid, 0) says the writer is dead.
    const pid_t ns_pid = procreg_test::dead_pid();
    procreg_test::signal_pipe paused;
    procreg_test::signal_pipe go;
    const pid_t writer = spawn_in_pid_namespace(ns_pid, [&] {
        counter_registry<typename Kind::storage> reg(Kind::open(dir.path()));
        pause_before_publish pause{&paused, &go};
        procreg_test::faults::hook_guard guard(&pause_before_publish::hook, &pause);
        reg.insert(counter_record{"n", 1, 42});  // pid 1: this namespace's init, alive
        return 0;
    });
    BOOST_TEST_REQUIRE(paused.wait(20s), "the writer in a new pid namespace did not reach its publish");
    const auto in_flight = temp_files(dir.path());
    BOOST_TEST_REQUIRE(in_flight.size() == 1u);
    BOOST_TEST(in_flight[0].find(".tmp-" + std::to_string(ns_pid) + "-") != std::string::npos);

    // Another program opens the registry meanwhile, and tries to write.
    counter_registry<typename Kind::storage> other(Kind::open(dir.path()));
    BOOST_TEST((temp_files(dir.path()) == in_flight), "a temp file in flight was swept");
    go.notify();
    BOOST_TEST(procreg_test::wait_exit(writer) == 0, "the writer in the other pid namespace failed to save");
    const auto row = other.find("n");
    BOOST_TEST_REQUIRE(row.has_value());
    BOOST_TEST(row->count == 42u);
    BOOST_TEST(temp_files(dir.path()).empty());
}

std::uint64_t own_pid_namespace() {
    struct ::stat st {};
    BOOST_TEST_REQUIRE(::stat("/proc/self/ns/pid", &st) == 0);
    return static_cast<std::uint64_t>(st.st_ino);
}

// A temp file tagged with another pid namespace is never judged by its pid;
// one of this namespace whose writer is gone goes at open. Under the lock
// json_table and claim_file remove every temp file (all their writers save
// under it); record_files keeps the foreign one (writers may save without
// the lock, the seed's model).
template <class Kind>
void a_temp_file_of_another_pid_namespace_is_not_judged_by_its_pid() {
    procreg_test::temp_dir dir;
    const std::string prefix = std::string(".") + Kind::target + ".tmp-";
    const std::string dead = std::to_string(procreg_test::dead_pid());
    const auto foreign = dir / (prefix + dead + "-0-1-ns" + std::to_string(own_pid_namespace() + 1));
    const auto ours = dir / (prefix + dead + "-0-2-ns" + std::to_string(own_pid_namespace()));
    procreg_test::write_text(foreign, "{");
    procreg_test::write_text(ours, "{");
    counter_registry<typename Kind::storage> reg(Kind::open(dir.path()));
    BOOST_TEST(!std::filesystem::exists(ours));
    BOOST_TEST(std::filesystem::exists(foreign), "a temp file of another pid namespace was judged by its pid");
    reg.insert(counter_record{"n", static_cast<std::uint32_t>(::getpid()), 1});
    BOOST_TEST(std::filesystem::exists(foreign) == !Kind::sweeps_all_under_the_lock);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(temp_sweep)

BOOST_AUTO_TEST_CASE(json_table_keeps_a_temp_file_in_flight_in_another_pid_namespace) {
    in_flight_temp_file_of_a_writer_in_another_pid_namespace_survives<json_table_kind>();
}
BOOST_AUTO_TEST_CASE(record_files_keeps_a_temp_file_in_flight_in_another_pid_namespace) {
    in_flight_temp_file_of_a_writer_in_another_pid_namespace_survives<record_files_kind>();
}
BOOST_AUTO_TEST_CASE(claim_file_keeps_a_temp_file_in_flight_in_another_pid_namespace) {
    in_flight_temp_file_of_a_writer_in_another_pid_namespace_survives<claim_file_kind>();
}

BOOST_AUTO_TEST_CASE(json_table_does_not_judge_another_namespace_by_pid) {
    a_temp_file_of_another_pid_namespace_is_not_judged_by_its_pid<json_table_kind>();
}
BOOST_AUTO_TEST_CASE(record_files_does_not_judge_another_namespace_by_pid) {
    a_temp_file_of_another_pid_namespace_is_not_judged_by_its_pid<record_files_kind>();
}
BOOST_AUTO_TEST_CASE(claim_file_does_not_judge_another_namespace_by_pid) {
    a_temp_file_of_another_pid_namespace_is_not_judged_by_its_pid<claim_file_kind>();
}

BOOST_AUTO_TEST_SUITE_END()
