// Fault injection and crash points for single-holder claims
// (storage::claim_file + procreg::claim), in both formats:
// - pid text, through trusty-memory's daemon lock (under flock, the
//   preset's own registry, and under the named mutex): acquire on an empty
//   directory, stale takeover, the guard's explicit release and its
//   destructor;
// - JSON record, through INSOMNIA's consolidation lock: acquire, stale
//   takeover, release_with_cleanup (the consumed staging entries, then the
//   lock) and release_only.
//
// The state of a claim is who holds it: "free" or "held by <the record>".
// A stale claim (its pid is dead) and no claim file are the same state —
// both mean free, and a takeover passes through "no file" between moving
// the stale claim aside and linking the new one in (docs/
// storage-claim-file.md, "Crash safety"). The state function reads the file
// without procreg and parses it strictly, so a torn claim fails the check.
// INSOMNIA's consumed entries are units of their own: release_with_cleanup
// removes them one by one, then the lock.
// Last, the directory fsync that ends a publish, failed on purpose: the
// operation reports the failure, so the claim must be as before it.
#define BOOST_TEST_MODULE claim_file_faults
#include <boost/test/unit_test.hpp>

#include <procreg/presets/insomnia.hpp>
#include <procreg/presets/trusty.hpp>

#include "../support/fault_driver.hpp"
#include "../support/lock_kinds.hpp"

#include <boost/json.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace procreg_test::faults;
namespace trusty = procreg::trusty;
namespace insomnia = procreg::insomnia;

BOOST_TEST_GLOBAL_FIXTURE(fast_tmpdir);

namespace {

const std::uint32_t live_pid = static_cast<std::uint32_t>(::getpid());
const std::uint32_t gone_pid = static_cast<std::uint32_t>(procreg_test::dead_pid());

// ── trusty (pid text) ────────────────────────────────────────────────────────

template <class Kind>
using trusty_registry = procreg::with_lock_t<trusty::daemon_registry, typename Kind::type>;
template <class Kind>
using trusty_claim = trusty::basic_daemon_claim<trusty_registry<Kind>>;

fs::path daemon_lock(const fs::path& dir) { return dir / "data" / trusty::lock_filename; }
fs::path daemon_flock(const fs::path& dir) { return dir / "data" / ".daemon.lock.flock"; }

template <class Kind>
trusty_claim<Kind> open_trusty(const fs::path& dir) {
    return trusty::open<trusty_registry<Kind>>(daemon_lock(dir));
}

// Throws unless a release removed the claim.
void require_released(procreg::release_status status, const std::string& what) {
    if (status != procreg::release_status::released) {
        throw procreg::error(procreg::errc::io_failure, {}, what + ": " + procreg::to_string(status));
    }
}

// The guard a scenario holds between its setup and its operation.
template <class Kind>
std::optional<typename trusty_claim<Kind>::handle>& trusty_guard() {
    static std::optional<typename trusty_claim<Kind>::handle> guard;
    return guard;
}

template <class Kind>
void drop_trusty_guard() {
    if (trusty_guard<Kind>()) trusty_guard<Kind>()->dismiss();
    trusty_guard<Kind>().reset();
}

// "free" or "held by <pid>"; throws on anything but "<digits>\n".
std::string trusty_state(const fs::path& dir) {
    const fs::path file = daemon_lock(dir);
    if (!fs::exists(fs::symlink_status(file))) return "free";
    const std::string bytes = procreg_test::read_text(file);
    if (bytes.size() < 2 || bytes.back() != '\n' || bytes.find_first_not_of("0123456789") != bytes.size() - 1) {
        throw std::runtime_error("torn or foreign pid lock: \"" + bytes + "\"");
    }
    const auto pid = std::stoull(bytes);
    return procreg::liveness::pid_alive(pid) ? "held by " + std::to_string(pid) : "free";
}

template <class Kind>
void trusty_next_operation(const fs::path& dir) {
    drop_trusty_guard<Kind>();
    auto claim = open_trusty<Kind>(dir);
    claim.registry().erase(trusty::claim_key);  // whatever the fault left, a clean slate
    auto guard = claim.acquire(trusty::daemon_lock_record{live_pid});
    require_released(guard.release(), "release after a fault");
}

template <class Kind>
scenario trusty_scenario(std::function<void(const fs::path&)> setup, std::function<void(const fs::path&)> op) {
    scenario s;
    s.setup = [setup](const fs::path& dir) {
        drop_trusty_guard<Kind>();
        fs::create_directories(dir / "data");
        setup(dir);
    };
    s.operation = std::move(op);
    s.state = trusty_state;
    s.lock_is_free = [](const fs::path& dir) { return Kind::is_free(daemon_flock(dir)); };
    s.next_operation = trusty_next_operation<Kind>;
    s.teardown = [](const fs::path& dir) {
        drop_trusty_guard<Kind>();
        Kind::cleanup(daemon_flock(dir));
    };
    return s;
}

template <class Kind>
void trusty_acquire(const fs::path& dir) {
    trusty_guard<Kind>().emplace(open_trusty<Kind>(dir).acquire(trusty::daemon_lock_record{live_pid}));
}

template <class Kind>
void trusty_release(const fs::path&) {
    require_released(trusty_guard<Kind>()->release(), "release");
}

void write_stale_pid(const fs::path& dir) { procreg_test::write_text(daemon_lock(dir), std::to_string(gone_pid) + "\n"); }

template <class Kind>
std::string trusty_label(const char* op) {
    return matrix_label<Kind>("claim_file pid text (trusty)", op);
}

// ── INSOMNIA (JSON record) ───────────────────────────────────────────────────

const std::vector<std::string> consumed = {"0196a3b0-0000-7000-8000-000000000001",
                                           "0196a3b0-0000-7000-8000-000000000002"};

fs::path staging_of(const fs::path& dir) { return insomnia::staging_dir(dir / "ws"); }
fs::path insomnia_flock(const fs::path& dir) { return staging_of(dir) / ".consolidation.lock.flock"; }

std::optional<insomnia::staging_lock>& staging_guard() {
    static std::optional<insomnia::staging_lock> guard;
    return guard;
}

// The lock as "free" or "held by {pid, pod_name, consumed_ids}" (started_at
// differs on every acquisition, so it is not part of the state), and one
// unit per consumed entry file. Throws if the lock does not parse.
unit_states insomnia_units(const fs::path& dir) {
    unit_states out;
    const fs::path file = insomnia::lock_file_path(staging_of(dir));
    std::string lock = "free";
    if (fs::exists(fs::symlink_status(file))) {
        const auto parsed = boost::json::parse(procreg_test::read_text(file)).as_object();
        const auto pid = parsed.at("pid").to_number<std::uint64_t>();
        if (procreg::liveness::pid_alive(pid)) {
            lock = "held by " + std::to_string(pid) + " pod=" + std::string(parsed.at("pod_name").as_string()) +
                   " ids=" + boost::json::serialize(parsed.at("consumed_ids")) +
                   " started_at=" + (parsed.at("started_at").is_string() ? "string" : "?");
        }
    }
    out["lock"] = lock;
    for (const auto& id : consumed) {
        const fs::path entry = staging_of(dir) / (id + ".json");
        if (fs::exists(entry)) out["entry " + id] = procreg_test::read_text(entry);
    }
    return out;
}

void insomnia_setup_entries(const fs::path& dir) {
    staging_guard().reset();
    fs::create_directories(staging_of(dir));
    for (const auto& id : consumed) procreg_test::write_text(staging_of(dir) / (id + ".json"), "{\"id\": \"" + id + "\"}");
}

void write_stale_consolidation(const fs::path& dir) {
    procreg_test::write_text(insomnia::lock_file_path(staging_of(dir)),
                             "{\n  \"pid\": " + std::to_string(gone_pid) +
                                 ",\n  \"pod_name\": \"ghost\",\n  \"started_at\": \"2026-01-01T00:00:00Z\",\n"
                                 "  \"consumed_ids\": []\n}");
}

void insomnia_acquire(const fs::path& dir) {
    staging_guard().emplace(insomnia::staging_lock::acquire(staging_of(dir), live_pid, "pod-a", consumed));
}

void insomnia_next_operation(const fs::path& dir) {
    staging_guard().reset();
    auto claim = insomnia::open(staging_of(dir));
    claim.registry().erase(insomnia::claim_key);
    auto lock = insomnia::staging_lock::acquire(staging_of(dir), live_pid, "pod-next", {});
    require_released(lock.release_only(), "release after a fault");
}

scenario insomnia_scenario(std::function<void(const fs::path&)> setup, std::function<void(const fs::path&)> op) {
    scenario s;
    s.setup = [setup](const fs::path& dir) {
        insomnia_setup_entries(dir);
        setup(dir);
    };
    s.operation = std::move(op);
    s.units = insomnia_units;
    s.lock_is_free = [](const fs::path& dir) { return locks::flock::is_free(insomnia_flock(dir)); };
    s.next_operation = insomnia_next_operation;
    s.teardown = [](const fs::path&) { staging_guard().reset(); };
    return s;
}

void throw_if_failed(const insomnia::cleanup_report& report) {
    if (!report.failures.empty()) {
        throw procreg::error(procreg::errc::io_failure, report.failures.front().path, report.failures.front().reason);
    }
    require_released(*report.lock, "lock");  // no failure reported: the lock's removal did not fail
}

}  // namespace

BOOST_AUTO_TEST_SUITE(claim_file_faults)

BOOST_AUTO_TEST_CASE_TEMPLATE(trusty_acquire_on_an_empty_directory, Kind, locks::both) {
    run_fault_matrix(trusty_scenario<Kind>([](const fs::path&) {}, trusty_acquire<Kind>), trusty_label<Kind>("acquire"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(trusty_stale_takeover, Kind, locks::both) {
    run_fault_matrix(trusty_scenario<Kind>(write_stale_pid, trusty_acquire<Kind>), trusty_label<Kind>("stale takeover"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(trusty_guard_release, Kind, locks::both) {
    run_fault_matrix(trusty_scenario<Kind>(trusty_acquire<Kind>, trusty_release<Kind>), trusty_label<Kind>("release"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(trusty_guard_destructor_release, Kind, locks::both) {
    // The destructor swallows errors by design (the seed's Drop): a failed
    // release leaves the claim held by this live pid, which may retake it.
    auto s = trusty_scenario<Kind>(trusty_acquire<Kind>, [](const fs::path&) { trusty_guard<Kind>().reset(); });
    s.reports_errors = false;
    run_fault_matrix(s, trusty_label<Kind>("guard destructor"));
}

BOOST_AUTO_TEST_CASE(insomnia_acquire_on_an_empty_directory) {
    run_fault_matrix(insomnia_scenario([](const fs::path&) {}, insomnia_acquire), "claim_file JSON (insomnia) acquire");
}

BOOST_AUTO_TEST_CASE(insomnia_stale_takeover) {
    run_fault_matrix(insomnia_scenario(write_stale_consolidation, insomnia_acquire),
                     "claim_file JSON (insomnia) stale takeover");
}

BOOST_AUTO_TEST_CASE(insomnia_release_with_cleanup) {
    // Removes each consumed entry, then the lock; failures are reported in
    // the cleanup report (never thrown), which is the caller's error.
    run_fault_matrix(insomnia_scenario(insomnia_acquire,
                                       [](const fs::path&) { throw_if_failed(staging_guard()->release_with_cleanup()); }),
                     "claim_file JSON (insomnia) release_with_cleanup");
}

BOOST_AUTO_TEST_CASE(insomnia_release_only) {
    run_fault_matrix(insomnia_scenario(insomnia_acquire,
                                       [](const fs::path&) { require_released(staging_guard()->release_only(), "release_only"); }),
                     "claim_file JSON (insomnia) release_only");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(trusty_crash_at_every_system_call, Kind, locks::both) {
    crash_scenario s;
    s.setup = [](const fs::path& dir) {
        drop_trusty_guard<Kind>();
        fs::create_directories(dir / "data");
        write_stale_pid(dir);
    };
    s.state = trusty_state;
    s.steps = {
        trusty_acquire<Kind>,                                    // stale takeover
        trusty_release<Kind>,                                    // explicit release
        trusty_acquire<Kind>,                                    // on an empty directory
        [](const fs::path&) { trusty_guard<Kind>().reset(); },  // the guard's destructor
    };
    s.reopen = [](const fs::path& dir) { (void)open_trusty<Kind>(dir); };
    s.teardown = [](const fs::path& dir) {
        drop_trusty_guard<Kind>();
        Kind::cleanup(daemon_flock(dir));
    };
    run_crash_points(s, trusty_label<Kind>("crash"));
}

BOOST_AUTO_TEST_CASE(insomnia_crash_at_every_system_call) {
    crash_scenario s;
    s.setup = [](const fs::path& dir) {
        insomnia_setup_entries(dir);
        write_stale_consolidation(dir);
    };
    s.units = insomnia_units;
    s.steps = {
        insomnia_acquire,  // stale takeover
        [](const fs::path&) { throw_if_failed(staging_guard()->release_with_cleanup()); },
        [](const fs::path& dir) {
            staging_guard().emplace(insomnia::staging_lock::acquire(staging_of(dir), live_pid, "pod-b", {}));
        },
        [](const fs::path&) { (void)staging_guard()->release_only(); },
    };
    s.reopen = [](const fs::path& dir) { (void)insomnia::open(staging_of(dir)); };
    s.teardown = [](const fs::path&) { staging_guard().reset(); };
    run_crash_points(s, "claim_file JSON (insomnia) crash");
}

// ── a failed directory fsync undoes the publish ──────────────────────────────

namespace {

// Runs `op` with the `nth` fsync failing once (EIO); returns the error text.
std::string with_failing_fsync(unsigned long nth, const std::function<void()>& op) {
    plan p;
    p.fail_at = nth;
    p.error = EIO;
    p.mask = bit(call::fsync);
    std::string what;
    {
        armed guard(p);
        try {
            op();
        } catch (const procreg::error& e) {
            what = e.what();
        }
    }
    BOOST_TEST(p.injected == 1u);
    return what;
}

}  // namespace

// An acquire fsyncs the new claim, then the directory. When the second
// fails, acquire throws — and must not leave its claim behind: INSOMNIA
// refuses its own live pid, so a claim left there would lock this process
// out until it exits. A stale claim that was judged is put back byte for byte.
BOOST_AUTO_TEST_CASE(insomnia_failed_directory_fsync_leaves_the_lock_as_before) {
    procreg_test::temp_dir dir;
    insomnia_setup_entries(dir.path());
    const fs::path lock = insomnia::lock_file_path(staging_of(dir.path()));
    std::string what = with_failing_fsync(2, [&] { insomnia_acquire(dir.path()); });
    BOOST_TEST(what.find("fsync of the directory failed; the change was undone") != std::string::npos, what);
    BOOST_TEST(!staging_guard().has_value());
    BOOST_TEST(!fs::exists(fs::symlink_status(lock)));
    BOOST_TEST(procreg_test::faults::temp_files_in(dir.path()).empty());
    BOOST_CHECK_NO_THROW(insomnia_acquire(dir.path()));  // not refused by a claim of its own
    staging_guard().reset();

    procreg_test::temp_dir stale;
    insomnia_setup_entries(stale.path());
    write_stale_consolidation(stale.path());
    const fs::path stale_lock = insomnia::lock_file_path(staging_of(stale.path()));
    const std::string before = procreg_test::read_text(stale_lock);
    what = with_failing_fsync(2, [&] { insomnia_acquire(stale.path()); });
    BOOST_TEST(what.find("the change was undone") != std::string::npos, what);
    BOOST_TEST(procreg_test::read_text(stale_lock) == before);
    BOOST_TEST(procreg_test::faults::temp_files_in(stale.path()).empty());
    BOOST_CHECK_NO_THROW(insomnia_acquire(stale.path()));
    staging_guard().reset();
}

// A release fsyncs only the directory. When that fails, release throws, the
// claim is back and the guard still holds it, so the release can be retried.
BOOST_AUTO_TEST_CASE(trusty_failed_directory_fsync_keeps_the_guards_claim) {
    procreg_test::temp_dir dir;
    fs::create_directories(dir / "data");
    trusty_acquire<locks::flock>(dir.path());
    const std::string before = procreg_test::read_text(daemon_lock(dir.path()));
    const std::string what = with_failing_fsync(1, [&] { trusty_release<locks::flock>(dir.path()); });
    BOOST_TEST(what.find("the change was undone") != std::string::npos, what);
    BOOST_TEST(procreg_test::read_text(daemon_lock(dir.path())) == before);
    BOOST_TEST(trusty_guard<locks::flock>()->held());
    BOOST_TEST((trusty_guard<locks::flock>()->release() == procreg::release_status::released));
    BOOST_TEST(!fs::exists(daemon_lock(dir.path())));
    drop_trusty_guard<locks::flock>();
}

BOOST_AUTO_TEST_SUITE_END()
