// Regression (issue 14, item 9): text read from a file reaches an error
// message only through detail::quote_untrusted, so a hostile file cannot
// forge log lines (docs/reliability.md) or slip a command into the "rm"
// trusty suggests. Each case plants a line break (and shell syntax) in a
// field a message quotes, provokes that message, and checks it is one line.
#define BOOST_TEST_MODULE message_escaping
#include <boost/test/unit_test.hpp>

#include <procreg/detail/json_strict_parse.hpp>
#include <procreg/presets/algocline.hpp>
#include <procreg/presets/trusty.hpp>
#include <procreg/presets/yoi.hpp>

#include "../../support/temp_dir.hpp"

#include <filesystem>
#include <functional>
#include <string>

#include <unistd.h>

namespace fs = std::filesystem;
namespace yoi = procreg::yoi;
using procreg_test::temp_dir;
using procreg_test::write_text;

namespace {

const std::string forged = "evil\n2026-01-01 INFO root login ok";
const std::string forged_json = "evil\\n2026-01-01 INFO root login ok";  // as written in a JSON string
const std::uint32_t self = static_cast<std::uint32_t>(::getpid());

// The message of the procreg::error `f` throws; fails the test when it throws none.
std::string message_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const procreg::error& e) {
        return e.what();
    }
    BOOST_FAIL("expected a procreg::error");
    return {};
}

bool one_line(const std::string& text) { return text.find_first_of("\n\r") == std::string::npos; }

// A yoi table holding one live pod whose name, socket, segment and scope
// target all carry a forged log line.
fs::path hostile_pods_json(const temp_dir& dir) {
    const fs::path file = dir / "pods.json";
    write_text(file, "{\"allocations\": [{\"pod_name\": \"" + forged_json + "\", \"pid\": " + std::to_string(self) +
                         ", \"socket\": \"/run/" + forged_json + "\", \"scope_allow\": [{\"target\": \"/src\", "
                         "\"permission\": \"write\", \"recursive\": true}], \"scope_deny\": [], "
                         "\"delegated_from\": null, \"segment_id\": \"seg-" + forged_json + "\"}]}");
    return file;
}

}  // namespace

BOOST_AUTO_TEST_CASE(yoi_write_conflict_names_the_hostile_pod_on_one_line) {
    temp_dir dir;
    auto reg = yoi::open(hostile_pods_json(dir));
    const std::string what = message_of([&] {
        reg.transact([&](auto& tx) {
            yoi::register_pod(tx, "good", self, "/run/good", {yoi::scope_rule::write("/src/core", true)}, "seg-good");
        });
    });
    BOOST_TEST(what.find("conflicts with pod") != std::string::npos, what);
    BOOST_TEST(one_line(what), what);
}

BOOST_AUTO_TEST_CASE(yoi_segment_conflict_names_the_hostile_pod_on_one_line) {
    temp_dir dir;
    auto reg = yoi::open(hostile_pods_json(dir));
    const std::string what = message_of([&] {
        reg.transact([&](auto& tx) {
            yoi::register_pod(tx, "good", self, "/run/good", {yoi::scope_rule::write("/elsewhere", true)},
                              "seg-" + forged);
        });
    });
    BOOST_TEST(what.find("is already held by pod") != std::string::npos, what);
    BOOST_TEST(one_line(what), what);
}

// Already quoted before this fix (commit b3889d1); kept as a guard.
BOOST_AUTO_TEST_CASE(an_insert_conflict_names_the_hostile_record_on_one_line) {
    temp_dir dir;
    write_text(dir / "registry.json", "{\"sessions\": [{\"sid\": \"" + forged_json + "\", \"pid\": " +
                                          std::to_string(self) + ", \"sock\": \"/s\", \"version\": \"1\", "
                                          "\"created_at\": \"2026-01-01T00:00:00Z\"}]}");
    auto reg = procreg::algocline::open(dir / "registry.json");
    const std::string what = message_of([&] {
        reg.insert(procreg::algocline::pool_session::make("new", self, "/s", "1"),
                   [](const auto&, const auto&) { return true; });
    });
    BOOST_TEST(one_line(what), what);
}

// The suggested command must be safe to paste: no line break, and nothing
// a shell expands inside double quotes.
BOOST_AUTO_TEST_CASE(trusty_rm_suggestion_quotes_the_path) {
    temp_dir dir;
    const fs::path data = dir / "data\n$(touch pwned)`id`";
    fs::create_directories(data);
    const fs::path lock = data / "daemon.lock";
    write_text(lock, "1\n");  // init: always alive
    BOOST_TEST_REQUIRE(::chmod(data.c_str(), 0700) == 0);
    const std::string what = message_of([&] { (void)procreg::trusty::acquire_lock(lock); });
    const auto rm = what.find("rm ");
    BOOST_TEST_REQUIRE(rm != std::string::npos, what);
    const std::string command = what.substr(rm);
    BOOST_TEST(one_line(command), command);
    BOOST_TEST(command.find("$(") == std::string::npos, command);
    BOOST_TEST(command.find('`') == std::string::npos, command);
    BOOST_TEST(one_line(what), what);
}

BOOST_AUTO_TEST_CASE(the_quoting_function_leaves_nothing_a_shell_or_a_terminal_acts_on) {
    const std::string quoted = procreg::detail::quote_untrusted("a\nb\r\x1b[31m$(x)`y`\"\\", 256);
    for (const char c : quoted) BOOST_TEST((static_cast<unsigned char>(c) >= 0x20 && c != 0x7f), quoted);
    BOOST_TEST(quoted.find('$') == std::string::npos);
    BOOST_TEST(quoted.find('`') == std::string::npos);
    BOOST_TEST(quoted.find('\n') == std::string::npos);
}
