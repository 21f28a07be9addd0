// Regression (issue 14, item 5): one file that cannot be opened must not
// break a registry. In record_files, a Unix socket named `x.json` (open
// fails ENXIO) or a mode-000 file of another user (EACCES) is skipped and
// reported like an unparseable file, and every operation on other keys
// works; a non-regular file at a json_table's table or a claim's file is
// `errc::unsafe_path` (docs/errors.md), not an I/O failure.
#define BOOST_TEST_MODULE unreadable_files
#include <boost/test/unit_test.hpp>

#include <procreg/presets/agentmux.hpp>
#include <procreg/presets/algocline.hpp>
#include <procreg/presets/trusty.hpp>

#include "../support/process.hpp"
#include "../support/temp_dir.hpp"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace fs = std::filesystem;
using procreg_test::temp_dir;
using procreg_test::write_text;

namespace {

constexpr uid_t nobody = 65534;

// Binds a Unix socket at `path` (a socket file stays after the close).
void make_socket(const fs::path& path) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    BOOST_TEST_REQUIRE(fd >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    BOOST_TEST_REQUIRE(path.string().size() < sizeof addr.sun_path);
    std::strcpy(addr.sun_path, path.c_str());
    const int bound = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    ::close(fd);
    BOOST_TEST_REQUIRE(bound == 0, "bind " << path << ": " << std::strerror(errno));
}

// The code of the procreg::error `f` throws; nothing when it does not throw.
// Anything else escaping fails the test.
std::optional<procreg::errc> code_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const procreg::error& e) {
        return static_cast<procreg::errc>(e.code().value());
    }
    return std::nullopt;
}

// In a child process, the checks of `body` report with this; a failure
// prints and makes the child exit non-zero.
struct child_checks {
    int failures = 0;
    void expect(bool ok, const std::string& what) {
        if (ok) return;
        ++failures;
        std::fprintf(stderr, "child check failed: %s\n", what.c_str());
    }
};

// Every operation of the AgentMux registry at `root` beside the unreadable
// `x.json`: other keys work, x is skipped (listed with a reason), nothing
// throws but the refusals that concern x itself. Runs in the caller's
// process and credentials.
void exercise_beside_unreadable_x(const fs::path& root, child_checks& check) {
    namespace agentmux = procreg::agentmux;
    auto opts = agentmux::options(root);
    opts.durable = false;
    auto reg = agentmux::open(opts);
    const auto listing = reg.list_active();
    check.expect(listing.records.size() == 2, "list_active lists a and b (" +
                                                   std::to_string(listing.records.size()) + " records)");
    bool x_reported = false;
    for (const auto& s : listing.skipped) x_reported = x_reported || s.path.filename() == "x.json";
    check.expect(x_reported, "list_active reports x.json as skipped");
    check.expect(!reg.find("x").has_value(), "find(x) is empty");
    check.expect(reg.find("a").has_value(), "find(a) finds a");
    auto a = agentmux::agent_record::make("a");
    a.data.name = "changed";
    check.expect(reg.upsert(a).status == procreg::upsert_status::replaced, "upsert(a) replaces");
    check.expect(reg.find("a")->data.name == std::optional<std::string>("changed"), "a was rewritten");
    reg.insert(agentmux::agent_record::make("c"));
    check.expect(reg.find("c").has_value(), "insert(c) works");
    check.expect(reg.upsert(agentmux::agent_record::make("x")).status == procreg::upsert_status::skipped,
                 "upsert(x) is refused, reported as skipped");
    const auto insert_x = code_of([&] { reg.insert(agentmux::agent_record::make("x")); });
    check.expect(insert_x && *insert_x != procreg::errc::io_failure,
                 "insert(x) is refused with a procreg::error that is not io_failure");
    check.expect(reg.list().size() == 3, "list() gives a, b, c");
    check.expect(reg.exists("x"), "exists(x): the file is there");
    check.expect(reg.hard_delete("x"), "hard_delete(x) removes the file");
    check.expect(!reg.exists("x"), "x is gone");
    check.expect(reg.hard_delete("b"), "hard_delete(b) works");
    check.expect(reg.list_active().skipped.empty(), "nothing is skipped any more");
}

void seed_a_and_b(const fs::path& root) {
    namespace agentmux = procreg::agentmux;
    auto opts = agentmux::options(root);
    opts.durable = false;
    auto reg = agentmux::open(opts);
    reg.insert(agentmux::agent_record::make("a"));
    reg.insert(agentmux::agent_record::make("b"));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(record_files_unreadable)

BOOST_AUTO_TEST_CASE(a_socket_named_like_a_record_is_skipped_and_other_keys_work) {
    temp_dir dir;
    const fs::path root = dir / "agents";
    seed_a_and_b(root);
    make_socket(root / "x.json");
    child_checks check;
    try {
        exercise_beside_unreadable_x(root, check);
    } catch (const std::exception& e) {
        BOOST_FAIL(std::string("an operation threw: ") + e.what());
    }
    BOOST_TEST(check.failures == 0);
}

BOOST_AUTO_TEST_CASE(a_mode_000_file_of_another_user_is_skipped_and_other_keys_work) {
    BOOST_TEST_REQUIRE(::geteuid() == 0u, "this test needs root: it makes a file another user cannot read");
    temp_dir dir;
    // The registry belongs to `nobody`; root plants an unreadable x.json in it.
    const fs::path home = dir / "home";
    fs::create_directory(home);
    BOOST_TEST_REQUIRE(::chown(home.c_str(), nobody, nobody) == 0);
    BOOST_TEST_REQUIRE(::chmod(dir.path().c_str(), 0711) == 0);  // nobody may pass through
    const fs::path root = home / "agents";
    const auto as_nobody = [&](const std::function<void(child_checks&)>& body) {
        return procreg_test::wait_exit(procreg_test::spawn([&] {
            if (::setgroups(0, nullptr) != 0 || ::setgid(nobody) != 0 || ::setuid(nobody) != 0) return 71;
            child_checks check;
            try {
                body(check);
            } catch (const std::exception& e) {
                std::fprintf(stderr, "child: an operation threw: %s\n", e.what());
                return 72;
            }
            return check.failures == 0 ? 0 : 73;
        }));
    };
    BOOST_TEST_REQUIRE(as_nobody([&](child_checks&) { seed_a_and_b(root); }) == 0);
    write_text(root / "x.json", "{\"schema_version\": 1, \"data\": {\"instance_id\": \"x\"}}\n");
    BOOST_TEST_REQUIRE(::chmod((root / "x.json").c_str(), 0) == 0);
    BOOST_TEST(as_nobody([&](child_checks& check) { exercise_beside_unreadable_x(root, check); }) == 0);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(single_file_storages)

BOOST_AUTO_TEST_CASE(a_socket_as_the_table_file_is_unsafe_path) {
    temp_dir dir;
    make_socket(dir / "registry.json");
    auto reg = procreg::algocline::open(dir / "registry.json");
    BOOST_TEST((code_of([&] { (void)reg.list(); }) == procreg::errc::unsafe_path));
    BOOST_TEST((code_of([&] { reg.insert(procreg::algocline::pool_session::make("s", 1, "/s", "1")); }) ==
                procreg::errc::unsafe_path));
}

BOOST_AUTO_TEST_CASE(a_socket_as_the_claim_file_is_unsafe_path) {
    temp_dir dir;
    make_socket(dir / "daemon.lock");
    BOOST_TEST((code_of([&] { (void)procreg::trusty::acquire_lock(dir / "daemon.lock"); }) ==
                procreg::errc::unsafe_path));
    BOOST_TEST((code_of([&] { (void)procreg::trusty::read_lock_pid(dir / "daemon.lock"); }) ==
                procreg::errc::unsafe_path));
}

BOOST_AUTO_TEST_SUITE_END()
