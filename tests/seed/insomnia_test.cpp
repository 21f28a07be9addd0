// Conformance suite of INSOMNIA's consolidation lock (seed 002, `_staging/.consolidation.lock`).
//
// The seed's five tests come first, ported one for one (its staging entries
// were written by `write_staging`; here they are `<uuid>.json` files written
// directly). Then what the seed promises without testing: an unparseable lock
// is stale, dropping the handle does nothing, release_only keeps the staging
// entries, a release never removes a lock another pod took over, the exact
// serde layout, a lock written by the Rust program, and a holder in another
// process that is SIGKILLed.
#define BOOST_TEST_MODULE insomnia
#include <boost/test/unit_test.hpp>

#include <procreg/presets/insomnia.hpp>

#include "../support/claim_helpers.hpp"
#include "../support/policy_matrix.hpp"
#include "../support/process.hpp"
#include "../support/temp_dir.hpp"

#include <boost/json.hpp>

#include <cstdint>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

namespace fs = std::filesystem;
namespace insomnia = procreg::insomnia;
using test_registry = procreg_test::under_test<insomnia::consolidation_registry>;
using staging_lock = insomnia::basic_staging_lock<test_registry>;
using procreg_test::temp_dir;

namespace {

std::uint32_t self_pid() { return static_cast<std::uint32_t>(::getpid()); }

// The seed's make_layout: a workspace whose staging directory exists.
struct layout {
    temp_dir root;
    fs::path staging = insomnia::staging_dir(root.path());
    layout() { fs::create_directories(staging); }
};

// A staging entry as extract's write_staging leaves it: `<uuid>.json`.
std::string write_staging(const fs::path& staging, const std::string& id) {
    procreg_test::write_text(staging / (id + ".json"), "{\"source\":{\"segment_id\":\"s\",\"range\":[0,0]}}");
    return id;
}

const std::string id_a = "0196b5a2-7c1e-7d3a-9f10-1a2b3c4d5e6f";
const std::string id_b = "0196b5a2-7c1e-7d3a-9f10-1a2b3c4d5e70";

// A lock as serde_json::to_string_pretty(&LockRecord) writes it.
std::string serde_lock(std::uint64_t pid, const std::string& pod, const std::vector<std::string>& ids = {}) {
    std::string out = "{\n  \"pid\": " + std::to_string(pid) + ",\n  \"pod_name\": \"" + pod +
                      "\",\n  \"started_at\": \"2026-04-22T10:00:00.123456789Z\",\n  \"consumed_ids\": ";
    if (ids.empty()) return out + "[]\n}";
    out += "[";
    for (std::size_t i = 0; i < ids.size(); ++i) out += std::string(i ? "," : "") + "\n    \"" + ids[i] + "\"";
    return out + "\n  ]\n}";
}

}  // namespace

BOOST_AUTO_TEST_SUITE(insomnia_lock)

// ── the seed's tests ────────────────────────────────────────────────────────

BOOST_AUTO_TEST_CASE(acquire_writes_lock_file) {
    layout ws;
    auto lock = staging_lock::acquire(ws.staging, self_pid(), "pod", {});
    BOOST_TEST(fs::exists(ws.staging / ".consolidation.lock"));
    BOOST_TEST(lock.path() == ws.staging / ".consolidation.lock");
    BOOST_TEST(lock.record().pid == self_pid());
    BOOST_TEST(lock.record().pod_name == "pod");
}

// The holder's own pid is refused too (INSOMNIA differs from trusty here).
BOOST_AUTO_TEST_CASE(acquire_rejects_when_live_pid_holds_lock) {
    layout ws;
    auto first = staging_lock::acquire(ws.staging, self_pid(), "pod-a", {});
    try {
        auto second = staging_lock::acquire(ws.staging, self_pid(), "pod-b", {});
        BOOST_FAIL("expected in_use");
    } catch (const procreg::claim_in_use& e) {
        BOOST_TEST(e.code() == procreg::errc::in_use);
        BOOST_TEST(e.pid().value() == self_pid());
        BOOST_TEST(e.owner_name().value() == "pod-a");
        const std::string what = e.what();
        BOOST_TEST(what.find("consolidation lock held by live pid " + std::to_string(self_pid()) +
                             " (pod \"pod-a\")") != std::string::npos,
                   what);
    }
    BOOST_TEST(insomnia::open<test_registry>(ws.staging).holder()->pod_name == "pod-a");
}

BOOST_AUTO_TEST_CASE(acquire_overwrites_stale_lock) {
    layout ws;
    procreg_test::write_text(ws.staging / ".consolidation.lock", serde_lock(UINT32_MAX, "ghost"));
    auto lock = staging_lock::acquire(ws.staging, self_pid(), "pod", {});
    BOOST_TEST(lock.record().pid == self_pid());
    BOOST_TEST(insomnia::open<test_registry>(ws.staging).holder()->pod_name == "pod");
}

BOOST_AUTO_TEST_CASE(release_drops_consumed_entries_and_unlinks_lock) {
    layout ws;
    const std::string a = write_staging(ws.staging, id_a);
    const std::string b = write_staging(ws.staging, id_b);
    auto lock = staging_lock::acquire(ws.staging, self_pid(), "pod", {a});
    const fs::path lock_path = lock.path();
    const auto report = lock.release_with_cleanup(ws.staging);
    BOOST_TEST(report.failures.empty());
    BOOST_TEST((report.lock == procreg::release_status::released));
    BOOST_TEST(!fs::exists(lock_path), "lock file must be removed");
    BOOST_TEST(!fs::exists(ws.staging / (a + ".json")), "consumed entry must be deleted");
    BOOST_TEST(fs::exists(ws.staging / (b + ".json")), "non-consumed entry must remain");
}

BOOST_AUTO_TEST_CASE(release_is_resilient_to_missing_consumed_entries) {
    layout ws;
    auto lock = staging_lock::acquire(ws.staging, self_pid(), "pod", {id_a});
    const fs::path lock_path = lock.path();
    const auto report = lock.release_with_cleanup(ws.staging);
    BOOST_TEST(report.failures.empty());
    BOOST_TEST(!fs::exists(lock_path));
}

// ── beyond the seed's tests ─────────────────────────────────────────────────

// An unparseable lock (torn write, garbage, wrong shape, invalid pid) has no
// holder and is taken over; the takeover is reported, not silent.
BOOST_AUTO_TEST_CASE(unparseable_lock_is_stale) {
    for (const char* text : {"", "{ not json", "[1, 2]", "{\"pid\": \"x\", \"pod_name\": \"p\"}",
                             "{\"pod_name\": \"p\", \"started_at\": \"t\", \"consumed_ids\": []}",
                             "{\"pid\": -1, \"pod_name\": \"p\", \"started_at\": \"t\", \"consumed_ids\": []}"}) {
        layout ws;
        procreg_test::write_text(ws.staging / ".consolidation.lock", text);
        auto peek = insomnia::consolidation_storage::peek<insomnia::lock_record>(insomnia::options(ws.staging));
        BOOST_TEST((peek.state == procreg::storage::claim_state::unparseable), "was: " << text);
        auto lock = staging_lock::acquire(ws.staging, self_pid(), "pod", {});
        BOOST_TEST(insomnia::open<test_registry>(ws.staging).holder()->pod_name == "pod", "was: " << text);
    }
}

// Dropping the handle does nothing: the lock stays until released or stale.
BOOST_AUTO_TEST_CASE(drop_does_nothing) {
    layout ws;
    { auto lock = staging_lock::acquire(ws.staging, self_pid(), "pod", {}); }
    BOOST_TEST(fs::exists(ws.staging / ".consolidation.lock"));
    BOOST_CHECK_THROW(staging_lock::acquire(ws.staging, self_pid(), "pod-2", {}), procreg::claim_in_use);
}

// release_only removes the lock alone: the run failed, its inputs stay.
BOOST_AUTO_TEST_CASE(release_only_keeps_staging_entries) {
    layout ws;
    write_staging(ws.staging, id_a);
    auto lock = staging_lock::acquire(ws.staging, self_pid(), "pod", {id_a});
    BOOST_TEST((lock.release_only() == procreg::release_status::released));
    BOOST_TEST(!fs::exists(ws.staging / ".consolidation.lock"));
    BOOST_TEST(fs::exists(ws.staging / (id_a + ".json")));
    BOOST_TEST((lock.release_only() == procreg::release_status::absent));
}

// Where the seed's release_only logs a failure to remove the lock and
// returns, the preset's raises a procreg::error and keeps the handle
// holding, so the caller knows the lock is still there and may retry.
// The failure is real: in a child's own mount namespace the lock file is
// bind-mounted onto itself, and a mount point cannot be removed (EBUSY).
// Root only.
BOOST_AUTO_TEST_CASE(release_only_raises_on_an_io_error_and_keeps_holding) {
    BOOST_TEST_REQUIRE(::geteuid() == 0u, "this test remounts the staging directory read-only: run it as root");
    layout ws;
    write_staging(ws.staging, id_a);
    const std::string lock_file = (ws.staging / ".consolidation.lock").string();
    const pid_t child = procreg_test::spawn([&] {
        if (::unshare(CLONE_NEWNS) != 0) return 10;
        if (::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return 11;
        auto lock = staging_lock::acquire(ws.staging, static_cast<std::uint32_t>(::getpid()), "pod", {id_a});
        if (::mount(lock_file.c_str(), lock_file.c_str(), nullptr, MS_BIND, nullptr) != 0) return 12;
        try {
            (void)lock.release_only();
            return 20;  // no error: the failure went unreported
        } catch (const procreg::error& e) {
            if (std::string(e.what()).find(lock_file) == std::string::npos) return 21;  // names the file
        }
        if (!lock.held()) return 22;
        // release_with_cleanup, as the seed's, reports instead of raising.
        const insomnia::cleanup_report report = lock.release_with_cleanup();
        return report.failures.empty() ? 23 : 0;
    });
    BOOST_TEST(procreg_test::wait_exit(child) == 0);
    // The consumed entry went (release_with_cleanup removes entries first, as
    // the seed's); the lock, which could not be removed, is still the child's.
    BOOST_TEST(!fs::exists(ws.staging / (id_a + ".json")));
    const auto holder = insomnia::open<test_registry>(ws.staging).holder();
    BOOST_TEST_REQUIRE(holder.has_value());
    BOOST_TEST(holder->pid == static_cast<std::uint32_t>(child));
}

// A lock taken over after its holder was judged dead belongs to the new
// holder: the old handle's release must leave it (the seed would delete it).
BOOST_AUTO_TEST_CASE(release_leaves_a_lock_taken_over) {
    layout ws;
    const auto dead = static_cast<std::uint32_t>(procreg_test::dead_pid());
    auto old_lock = staging_lock::acquire(ws.staging, dead, "old", {});
    auto new_lock = staging_lock::acquire(ws.staging, self_pid(), "new", {});
    BOOST_TEST((old_lock.release_only() == procreg::release_status::not_ours));
    BOOST_TEST(insomnia::open<test_registry>(ws.staging).holder()->pod_name == "new");
    BOOST_TEST((new_lock.release_only() == procreg::release_status::released));
}

// The bytes are serde_json::to_string_pretty's: field order, two-space
// indent, no trailing newline, started_at as chrono's RFC 3339 with
// nanoseconds, UUIDs in lower case.
BOOST_AUTO_TEST_CASE(on_disk_format_is_serdes) {
    layout ws;
    const std::string upper = "0196B5A2-7C1E-7D3A-9F10-1A2B3C4D5E6F";
    auto lock = staging_lock::acquire(ws.staging, 4242, "pod-a", {upper});
    const std::string text = procreg_test::read_text(ws.staging / ".consolidation.lock");
    const std::string started = lock.record().started_at;
    BOOST_TEST(std::regex_match(started, std::regex(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z)")), started);
    const std::string expected = "{\n  \"pid\": 4242,\n  \"pod_name\": \"pod-a\",\n  \"started_at\": \"" + started +
                                 "\",\n  \"consumed_ids\": [\n    \"" + id_a + "\"\n  ]\n}";
    BOOST_TEST(text == expected);
    BOOST_TEST(procreg_test::mode_of(ws.staging / ".consolidation.lock") == 0600u);
    BOOST_CHECK_EXCEPTION(staging_lock::acquire(ws.staging, 1, "x", {"../../etc/passwd"}), procreg::error,
                          [](const procreg::error& e) { return e.code() == procreg::errc::invalid_key; });
}

// A lock the Rust program wrote (another field order, compact, an unknown
// field) is read; its live holder is refused by pid and pod name.
BOOST_AUTO_TEST_CASE(reads_a_lock_written_by_the_rust_program) {
    layout ws;
    procreg_test::live_child pod;
    procreg_test::write_text(ws.staging / ".consolidation.lock",
                             "{\"consumed_ids\":[\"" + id_a + "\"],\"started_at\":\"2026-04-22T10:00:00Z\",\"pid\":" +
                                 std::to_string(pod.pid()) + ",\"pod_name\":\"rust-pod\",\"extra\":true}");
    const auto holder = insomnia::open<test_registry>(ws.staging).holder();
    BOOST_TEST_REQUIRE(holder.has_value());
    BOOST_TEST(holder->pod_name == "rust-pod");
    BOOST_TEST(holder->consumed_ids == std::vector<std::string>{id_a});
    try {
        (void)staging_lock::acquire(ws.staging, self_pid(), "pod", {});
        BOOST_FAIL("a live Rust holder must be refused");
    } catch (const procreg::claim_in_use& e) {
        BOOST_TEST(e.pid().value() == static_cast<std::uint64_t>(pod.pid()));
        BOOST_TEST(e.owner_name().value() == "rust-pod");
    }
}

// The consolidating pod is another process; killed mid-run (no release), its
// lock is stale and the next run takes it over.
BOOST_AUTO_TEST_CASE(lock_of_a_killed_pod_is_taken_over) {
    layout ws;
    procreg_test::live_child pod(
        [&] { return staging_lock::acquire(ws.staging, static_cast<std::uint32_t>(::getpid()), "doomed", {id_a}); });
    BOOST_TEST_REQUIRE(pod.ready());
    try {
        (void)staging_lock::acquire(ws.staging, self_pid(), "next", {});
        BOOST_FAIL("the running pod must be refused");
    } catch (const procreg::claim_in_use& e) {
        BOOST_TEST(e.pid().value() == static_cast<std::uint64_t>(pod.pid()));
        BOOST_TEST(e.owner_name().value() == "doomed");
    }
    BOOST_TEST(pod.stop() == 128 + SIGKILL);
    auto lock = staging_lock::acquire(ws.staging, self_pid(), "next", {});
    BOOST_TEST(insomnia::open<test_registry>(ws.staging).holder()->pod_name == "next");
}

BOOST_AUTO_TEST_SUITE_END()
