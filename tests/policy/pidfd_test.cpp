// The pidfd liveness policy against docs/engineering.md §4, with real
// processes: the current process is alive; a reaped child, a zombie child, a
// live pid with another start time and a record from another boot are dead;
// a process we may not signal (EPERM) is alive; a record without identity
// is judged by its pid alone; identity is stamped into, and survives in, the
// registry's JSON. Every probe runs both through pidfd_open and through the
// /proc-only path used where pidfd_open is missing.
#define BOOST_TEST_MODULE pidfd_liveness
#include <boost/test/unit_test.hpp>

#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/liveness/pidfd_liveness.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/presets/algocline.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/json_table.hpp>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <boost/json.hpp>

#include <chrono>
#include <climits>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

using procreg::liveness::pidfd_liveness;
using procreg::liveness::pidfd_probe;
using procreg_test::temp_dir;
using namespace std::chrono_literals;

namespace {

using procreg::algocline::pool_session;
using pidfd_registry = procreg::registry<pool_session, procreg::lock::flock_lock, procreg::storage::json_table,
                                         pidfd_liveness>;

const pidfd_probe methods[] = {pidfd_probe::pidfd_then_proc, pidfd_probe::proc_only};

const char* method_name(pidfd_probe m) { return m == pidfd_probe::proc_only ? "proc_only" : "pidfd_then_proc"; }

std::string slurp(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Independent of the policy's parser: fields after the last ')', 1-based from 3.
std::vector<std::string> stat_fields_after_comm(pid_t pid) {
    const std::string text = slurp("/proc/" + std::to_string(pid) + "/stat");
    std::istringstream rest(text.substr(text.rfind(')') + 1));
    std::vector<std::string> out;
    for (std::string token; rest >> token;) out.push_back(token);
    return out;
}
std::uint64_t start_time_of(pid_t pid) { return std::stoull(stat_fields_after_comm(pid).at(19)); }
char state_of(pid_t pid) {
    const auto fields = stat_fields_after_comm(pid);
    return fields.empty() ? '?' : fields[0][0];
}
std::string current_boot_id() {
    std::string id = slurp("/proc/sys/kernel/random/boot_id");
    while (!id.empty() && id.back() == '\n') id.pop_back();
    return id;
}

std::uint64_t self() { return static_cast<std::uint64_t>(::getpid()); }

// A child that runs until told to exit.
struct parked_child {
    procreg_test::signal_pipe go;
    pid_t pid = procreg_test::spawn([this] { return go.wait(60s) ? 0 : 1; });
    ~parked_child() {
        if (pid > 0) {
            ::kill(pid, SIGKILL);
            procreg_test::wait_exit(pid);
        }
    }
    void finish() {
        go.notify();
        procreg_test::wait_exit(pid);
        pid = -1;
    }
};

// Waits for `pid` to exit but leaves it unreaped (a zombie).
void wait_zombie(pid_t pid) {
    siginfo_t info{};
    while (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) != 0) {
        BOOST_TEST_REQUIRE(errno == EINTR);
    }
}

std::filesystem::path registry_file(const temp_dir& dir) { return dir / "registry.json"; }

pidfd_registry open_registry(const temp_dir& dir) {
    auto opts = procreg::algocline::options(registry_file(dir));
    opts.durable = false;
    return pidfd_registry(procreg::storage::json_table(std::move(opts)));
}

boost::json::object read_json(const temp_dir& dir) {
    return boost::json::parse(procreg_test::read_text(registry_file(dir))).as_object();
}

boost::json::object& session_json(boost::json::object& top, std::size_t i) {
    return top.at("sessions").as_array().at(i).as_object();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(pidfd)

BOOST_AUTO_TEST_CASE(the_current_process_is_alive) {
    for (const auto m : methods) {
        BOOST_TEST_CONTEXT(method_name(m)) {
            const pidfd_liveness live(m);
            BOOST_TEST((live.method() == m));
            BOOST_TEST(live.is_alive(self(), {}));
            boost::json::object stamped;
            live.stamp_identity(self(), stamped);
            BOOST_TEST(live.is_alive(self(), stamped));
        }
    }
    BOOST_TEST((pidfd_liveness{}.method() == pidfd_probe::pidfd_then_proc));
}

BOOST_AUTO_TEST_CASE(pid_zero_and_pids_beyond_int_max_are_dead) {
    for (const auto m : methods) {
        BOOST_TEST_CONTEXT(method_name(m)) {
            const pidfd_liveness live(m);
            BOOST_TEST(!live.is_alive(0, {}));
            BOOST_TEST(!live.is_alive(static_cast<std::uint64_t>(INT_MAX) + 1, {}));
            BOOST_TEST(!live.is_alive(UINT64_MAX, {}));  // a negative pid widened
            BOOST_TEST(!live.is_alive(0xffffffffull, {}));
            boost::json::object stamped{{"keep", 1}};
            live.stamp_identity(0, stamped);
            BOOST_TEST(stamped.size() == 1u);
        }
    }
}

BOOST_AUTO_TEST_CASE(a_reaped_child_is_dead) {
    for (const auto m : methods) {
        BOOST_TEST_CONTEXT(method_name(m)) {
            const pidfd_liveness live(m);
            parked_child child;
            boost::json::object stamped;
            live.stamp_identity(static_cast<std::uint64_t>(child.pid), stamped);
            BOOST_TEST(live.is_alive(static_cast<std::uint64_t>(child.pid), stamped));
            const auto pid = static_cast<std::uint64_t>(child.pid);
            child.finish();
            BOOST_TEST(!live.is_alive(pid, stamped));
            BOOST_TEST(!live.is_alive(pid, {}));
        }
    }
}

BOOST_AUTO_TEST_CASE(an_unreaped_zombie_child_is_dead) {
    for (const auto m : methods) {
        BOOST_TEST_CONTEXT(method_name(m)) {
            const pidfd_liveness live(m);
            const pid_t child = procreg_test::spawn([] { return 0; });
            wait_zombie(child);
            BOOST_TEST(state_of(child) == 'Z');
            // kill(pid, 0) succeeds on a zombie: kill_liveness is fooled, pidfd is not.
            BOOST_TEST(procreg::liveness::kill_liveness{}.is_alive(static_cast<std::uint64_t>(child), {}));
            BOOST_TEST(!live.is_alive(static_cast<std::uint64_t>(child), {}));
            boost::json::object stamped{{"other", "kept"}};
            live.stamp_identity(static_cast<std::uint64_t>(child), stamped);
            BOOST_TEST(!stamped.contains(pidfd_liveness::start_time_key));  // a zombie gets no identity
            BOOST_TEST(stamped.contains("other"));
            procreg_test::wait_exit(child);
        }
    }
}

BOOST_AUTO_TEST_CASE(a_live_pid_with_another_start_time_is_dead) {
    for (const auto m : methods) {
        BOOST_TEST_CONTEXT(method_name(m)) {
            const pidfd_liveness live(m);
            boost::json::object stamped;
            live.stamp_identity(self(), stamped);
            BOOST_TEST_REQUIRE(stamped.contains(pidfd_liveness::start_time_key));
            const std::uint64_t start = stamped.at(pidfd_liveness::start_time_key).to_number<std::uint64_t>();
            stamped[pidfd_liveness::start_time_key] = start + 1;  // the pid now belongs to someone else
            BOOST_TEST(!live.is_alive(self(), stamped));
            stamped[pidfd_liveness::start_time_key] = static_cast<std::int64_t>(start);  // as parsed from a file
            BOOST_TEST(live.is_alive(self(), stamped));
        }
    }
}

BOOST_AUTO_TEST_CASE(a_record_from_another_boot_is_dead) {
    for (const auto m : methods) {
        BOOST_TEST_CONTEXT(method_name(m)) {
            const pidfd_liveness live(m);
            boost::json::object stamped;
            live.stamp_identity(self(), stamped);
            BOOST_TEST_REQUIRE(stamped.contains(pidfd_liveness::boot_id_key));
            std::string other = current_boot_id();
            other[0] = other[0] == '0' ? '1' : '0';
            stamped[pidfd_liveness::boot_id_key] = other;
            BOOST_TEST(!live.is_alive(self(), stamped));
            // The boot id alone (no start time) decides as well.
            stamped.erase(pidfd_liveness::start_time_key);
            BOOST_TEST(!live.is_alive(self(), stamped));
            stamped[pidfd_liveness::boot_id_key] = current_boot_id();
            BOOST_TEST(live.is_alive(self(), stamped));
        }
    }
}

// kill(pid, 0) fails with EPERM for a process of another user: it exists,
// so it is alive (treating EPERM as dead deletes valid records).
BOOST_AUTO_TEST_CASE(a_process_we_may_not_signal_is_alive) {
    if (::geteuid() == 0) {
        boost::json::object parent_identity;
        pidfd_liveness{}.stamp_identity(self(), parent_identity);
        const auto parent = self();
        const pid_t child = procreg_test::spawn([&] {
            constexpr uid_t nobody = 65534;
            if (::setgid(nobody) != 0 || ::setuid(nobody) != 0) return 10;
            errno = 0;
            if (::kill(1, 0) == 0 || errno != EPERM) return 11;  // the precondition: EPERM
            if (::kill(static_cast<pid_t>(parent), 0) == 0 || errno != EPERM) return 12;
            int code = 0;
            for (const auto m : methods) {
                const pidfd_liveness live(m);
                if (!live.is_alive(1, {})) code |= 1;
                if (!live.is_alive(parent, {})) code |= 2;
                if (!live.is_alive(parent, parent_identity)) code |= 4;
            }
            return code;
        });
        BOOST_TEST(procreg_test::wait_exit(child) == 0);
    } else {
        errno = 0;
        if (::kill(1, 0) == 0 || errno != EPERM) {
            BOOST_TEST_MESSAGE("not root and pid 1 is signalable: no EPERM process available");
            return;
        }
        for (const auto m : methods) BOOST_TEST(pidfd_liveness(m).is_alive(1, {}));
    }
}

// What a seed's Rust program writes: no identity keys. Then the pid decides.
BOOST_AUTO_TEST_CASE(a_record_without_identity_is_judged_by_its_pid_alone) {
    for (const auto m : methods) {
        BOOST_TEST_CONTEXT(method_name(m)) {
            const pidfd_liveness live(m);
            const boost::json::object seed_record{{"sid", "s"}, {"pid", self()}, {"sock", "/x"}};
            BOOST_TEST(live.is_alive(self(), seed_record));
            BOOST_TEST(!live.is_alive(static_cast<std::uint64_t>(procreg_test::dead_pid()), seed_record));
            // Malformed identity keys are ignored, not taken for a mismatch.
            const boost::json::object malformed{{std::string(pidfd_liveness::start_time_key), "soon"},
                                                {std::string(pidfd_liveness::boot_id_key), 7}};
            BOOST_TEST(live.is_alive(self(), malformed));
            const boost::json::object negative{{std::string(pidfd_liveness::start_time_key), -5}};
            BOOST_TEST(live.is_alive(self(), negative));
        }
    }
}

BOOST_AUTO_TEST_CASE(stamp_identity_replaces_the_identity_keys) {
    for (const auto m : methods) {
        BOOST_TEST_CONTEXT(method_name(m)) {
            const pidfd_liveness live(m);
            boost::json::object stamped{{"sid", "s"},
                                        {std::string(pidfd_liveness::start_time_key), 1},
                                        {std::string(pidfd_liveness::boot_id_key), "old"}};
            live.stamp_identity(self(), stamped);
            BOOST_TEST(stamped.at("sid").as_string() == "s");
            BOOST_TEST(stamped.at(pidfd_liveness::start_time_key).to_number<std::uint64_t>() ==
                       start_time_of(::getpid()));
            BOOST_TEST(stamped.at(pidfd_liveness::boot_id_key).as_string() == current_boot_id());

            // Stamped for a child: its own start time.
            parked_child child;
            live.stamp_identity(static_cast<std::uint64_t>(child.pid), stamped);
            BOOST_TEST(stamped.at(pidfd_liveness::start_time_key).to_number<std::uint64_t>() ==
                       start_time_of(child.pid));
            child.finish();

            // Stamped for a dead pid: the old identity goes, none comes.
            live.stamp_identity(static_cast<std::uint64_t>(procreg_test::dead_pid()), stamped);
            BOOST_TEST(!stamped.contains(pidfd_liveness::start_time_key));
            BOOST_TEST(!stamped.contains(pidfd_liveness::boot_id_key));
            BOOST_TEST(stamped.size() == 1u);
        }
    }
}

// Field 2 of /proc/<pid>/stat is the command name in parentheses, and the
// process chooses it: it may contain spaces and ')'. Fields are counted after
// the *last* ')', so a name posing as state 'Z' and a start time fools nobody.
BOOST_AUTO_TEST_CASE(stat_is_parsed_after_the_last_parenthesis) {
    namespace pd = procreg::liveness::pidfd_detail;
    std::string tail = " S";
    for (int field = 4; field <= 21; ++field) tail += " " + std::to_string(field);
    tail += " 4242 23 24\n";
    const auto parsed = pd::parse_stat("77 (a) Z 1 (b)" + tail);
    BOOST_TEST_REQUIRE(parsed.has_value());
    BOOST_TEST(parsed->state == 'S');
    BOOST_TEST(parsed->start_time == 4242u);
    BOOST_TEST(!pd::parse_stat("77 no parenthesis S 1").has_value());
    BOOST_TEST(!pd::parse_stat("77 (short) S 1 2 3").has_value());  // ends before field 22
    BOOST_TEST(!pd::parse_stat("77 (x) SS 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 9").has_value());

    // A live process whose command name is such a trap.
    for (const auto m : methods) {
        BOOST_TEST_CONTEXT(method_name(m)) {
            const pidfd_liveness live(m);
            procreg_test::signal_pipe named;
            procreg_test::signal_pipe go;
            const pid_t child = procreg_test::spawn([&] {
                if (::prctl(PR_SET_NAME, "a) Z 1 (b", 0, 0, 0) != 0) return 1;
                named.notify();
                return go.wait(60s) ? 0 : 2;
            });
            BOOST_TEST_REQUIRE(named.wait(20s));
            BOOST_TEST(slurp("/proc/" + std::to_string(child) + "/stat").find("(a) Z 1 (b)") != std::string::npos);
            BOOST_TEST(live.is_alive(static_cast<std::uint64_t>(child), {}));
            boost::json::object stamped;
            live.stamp_identity(static_cast<std::uint64_t>(child), stamped);
            BOOST_TEST_REQUIRE(stamped.contains(pidfd_liveness::start_time_key));
            BOOST_TEST(stamped.at(pidfd_liveness::start_time_key).to_number<std::uint64_t>() == start_time_of(child));
            BOOST_TEST(live.is_alive(static_cast<std::uint64_t>(child), stamped));
            go.notify();
            BOOST_TEST(procreg_test::wait_exit(child) == 0);
        }
    }
}

// A main thread that called pthread_exit while another thread runs shows
// state 'Z' in /proc/<pid>/stat although the process lives. The pidfd knows
// better; /proc alone cannot tell (docs/policy-liveness.md says so).
BOOST_AUTO_TEST_CASE(a_process_whose_main_thread_exited_is_alive_through_its_pidfd) {
    std::fflush(nullptr);
    const pid_t child = ::fork();
    BOOST_TEST_REQUIRE(child >= 0);
    if (child == 0) {
        pthread_t worker;
        if (::pthread_create(
                &worker, nullptr,
                [](void*) -> void* {
                    for (;;) ::pause();
                },
                nullptr) != 0) {
            ::_exit(1);
        }
        // Ends the main thread alone, without pthread_exit's unwinding
        // (which the test framework's catch(...) frames would swallow).
        ::syscall(SYS_exit, 0);
        ::_exit(2);
    }
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (state_of(child) != 'Z' && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(2ms);
    BOOST_TEST_REQUIRE(state_of(child) == 'Z');
    BOOST_TEST(pidfd_liveness(pidfd_probe::pidfd_then_proc).is_alive(static_cast<std::uint64_t>(child), {}));
    BOOST_TEST(!pidfd_liveness(pidfd_probe::proc_only).is_alive(static_cast<std::uint64_t>(child), {}));
    ::kill(child, SIGKILL);
    BOOST_TEST(procreg_test::wait_exit(child) == 128 + SIGKILL);
}

// Identity lives in the record's JSON on disk, survives rewrites (also by a
// program that does not know it), and decides liveness when read back.
BOOST_AUTO_TEST_CASE(identity_round_trips_through_a_json_table_registry) {
    temp_dir dir;
    auto reg = open_registry(dir);
    const auto me = static_cast<std::uint32_t>(::getpid());
    reg.insert(pool_session::make("mine", me, "/run/mine.sock", "0.30.0"));

    auto top = read_json(dir);
    auto& stored = session_json(top, 0);
    BOOST_TEST(stored.at("sid").as_string() == "mine");
    BOOST_TEST(stored.at(pidfd_liveness::start_time_key).to_number<std::uint64_t>() == start_time_of(::getpid()));
    BOOST_TEST(stored.at(pidfd_liveness::boot_id_key).as_string() == current_boot_id());
    auto rows = reg.list();
    BOOST_TEST_REQUIRE(rows.size() == 1u);
    BOOST_TEST(rows[0].alive);

    // Same pid: identity kept. Another pid: identity of that process.
    auto changed = pool_session::make("mine", me, "/run/other.sock", "0.31.0");
    BOOST_TEST((reg.upsert(changed).status == procreg::upsert_status::replaced));
    top = read_json(dir);
    BOOST_TEST(session_json(top, 0).at(pidfd_liveness::start_time_key).to_number<std::uint64_t>() ==
               start_time_of(::getpid()));
    {
        parked_child child;
        reg.upsert(pool_session::make("mine", static_cast<std::uint32_t>(child.pid), "/s", "1"));
        top = read_json(dir);
        BOOST_TEST(session_json(top, 0).at(pidfd_liveness::start_time_key).to_number<std::uint64_t>() ==
                   start_time_of(child.pid));
        BOOST_TEST(reg.list().at(0).alive);
        child.finish();
        BOOST_TEST(!reg.list().at(0).alive);
        BOOST_TEST(reg.reap().size() == 1u);
    }

    // The seed-format preset (kill liveness, no identity of its own) reads the
    // file and rewrites it without losing the identity keys.
    reg.insert(pool_session::make("mine", me, "/run/mine.sock", "0.30.0"));
    {
        auto plain = procreg::algocline::open(registry_file(dir));
        const auto found = plain.find("mine");
        BOOST_TEST_REQUIRE(found.has_value());
        BOOST_TEST(found->sock == "/run/mine.sock");
        plain.upsert(pool_session::make("mine", me, "/run/renamed.sock", "0.30.0"));
    }
    top = read_json(dir);
    BOOST_TEST(session_json(top, 0).at("sock").as_string() == "/run/renamed.sock");
    BOOST_TEST(session_json(top, 0).contains(pidfd_liveness::start_time_key));
    BOOST_TEST(session_json(top, 0).contains(pidfd_liveness::boot_id_key));
    BOOST_TEST(reg.list().at(0).alive);

    // A record whose stored start time no longer matches its live pid
    // (the pid was reused) is dead and reaped.
    session_json(top, 0)[pidfd_liveness::start_time_key] = start_time_of(::getpid()) + 7;
    procreg_test::write_text(registry_file(dir), boost::json::serialize(top));
    BOOST_TEST(!reg.list().at(0).alive);
    BOOST_TEST(reg.reap().size() == 1u);
    BOOST_TEST(reg.list().empty());

    // Records as the Rust seed writes them (no identity): judged by pid.
    const auto dead = static_cast<std::uint32_t>(procreg_test::dead_pid());
    procreg_test::write_text(registry_file(dir),
                             "{\"sessions\":[{\"sid\":\"live\",\"pid\":" + std::to_string(me) +
                                 ",\"sock\":\"/a\",\"version\":\"1\",\"created_at\":\"2026-01-01T00:00:00Z\"},"
                                 "{\"sid\":\"gone\",\"pid\":" + std::to_string(dead) +
                                 ",\"sock\":\"/b\",\"version\":\"1\",\"created_at\":\"2026-01-01T00:00:00Z\"}]}");
    const auto reaped = reg.reap();
    BOOST_TEST_REQUIRE(reaped.size() == 1u);
    BOOST_TEST(reaped[0].sid == "gone");
    top = read_json(dir);
    BOOST_TEST(!session_json(top, 0).contains(pidfd_liveness::start_time_key));  // not invented on rewrite
    BOOST_TEST(reg.list().at(0).alive);
}

BOOST_AUTO_TEST_SUITE_END()
