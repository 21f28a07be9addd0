// tests/cli/cli_test.cpp — the `procreg` tool (issue 19) on registries
// written by procreg, run as a real program: every subcommand, its exit
// codes, its JSON parsed back, hostile inputs, and a run against 8 writers.
// (The seeds' own Rust writers: tests/cli/cli_interop_test.cpp.)
// Also the library's dynamic_record, which the tool is built on.
#define BOOST_TEST_MODULE procreg_cli
#include <boost/test/unit_test.hpp>

#include "cli/tool_runner.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <procreg/dynamic_record.hpp>
#include <procreg/presets/agentmux.hpp>
#include <procreg/presets/algocline.hpp>
#include <procreg/lock/named_mutex_lock.hpp>
#include <procreg/presets/trusty.hpp>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;
namespace json = boost::json;
using procreg_cli_test::json_of;
using procreg_cli_test::line_count;
using procreg_cli_test::record_with_key;
using procreg_cli_test::run_tool;
using procreg_test::temp_dir;

namespace {

std::uint32_t self_pid() { return static_cast<std::uint32_t>(::getpid()); }

// registry.json with a live record "live" (this process), a dead one "dead",
// and an extra field the preset does not know on "live".
fs::path algocline_registry(const temp_dir& dir) {
    const fs::path file = dir / "registry.json";
    auto reg = procreg::algocline::open(file);
    reg.insert(procreg::algocline::pool_session::make("live", self_pid(), "/run/live.sock", "0.30.0"));
    reg.insert(procreg::algocline::pool_session::make("dead", static_cast<std::uint32_t>(procreg_test::dead_pid()),
                                                      "/run/dead.sock", "0.30.0"));
    json::object whole = json::parse(procreg_test::read_text(file)).as_object();
    whole["sessions"].as_array()[0].as_object()["extra"] = json::array{1, "two"};
    procreg_test::write_text(file, json::serialize(whole));
    return file;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(ls)

BOOST_AUTO_TEST_CASE(json_lists_every_record_with_liveness_and_every_field) {
    temp_dir dir;
    const fs::path file = algocline_registry(dir);
    const auto r = run_tool({"ls", "--json", file.string()});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    BOOST_TEST(line_count(r.out) == 1u);
    const json::object out = json_of(r);
    BOOST_TEST(out.at("format").as_string() == "json_table");
    BOOST_TEST(out.at("records").as_array().size() == 2u);
    const json::object* live = record_with_key(out, "live");
    const json::object* dead = record_with_key(out, "dead");
    BOOST_TEST_REQUIRE(live);
    BOOST_TEST_REQUIRE(dead);
    BOOST_TEST(live->at("pid").to_number<std::uint64_t>() == self_pid());
    BOOST_TEST(live->at("alive").as_bool());
    BOOST_TEST(live->at("status").as_string() == "alive");
    BOOST_TEST(!dead->at("alive").as_bool());
    BOOST_TEST(dead->at("status").as_string() == "dead");
    BOOST_TEST((live->at("fields").as_object().at("extra") == json::value(json::array{1, "two"})));
    BOOST_TEST(live->at("fields").as_object().at("sock").as_string() == "/run/live.sock");
}

BOOST_AUTO_TEST_CASE(filters_columns_and_tab_separated_output) {
    temp_dir dir;
    const fs::path file = algocline_registry(dir);
    auto r = run_tool({"ls", "--dead", "-o", "key,pid,sock", file.string()});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    // Not a terminal: a heading line and one tab-separated line per record.
    BOOST_TEST(r.out.find("KEY\tPID\tSOCK\n") == 0u);
    BOOST_TEST(line_count(r.out) == 2u);
    BOOST_TEST(r.out.find("dead\t") != std::string::npos);
    BOOST_TEST(r.out.find("/run/dead.sock\n") != std::string::npos);
    BOOST_TEST(r.out.find("\033") == std::string::npos);
    r = run_tool({"ls", "--alive", "-n", "--json", file.string()});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    const auto records = json_of(r).at("records").as_array();
    BOOST_TEST_REQUIRE(records.size() == 1u);
    BOOST_TEST(records[0].as_object().at("key").as_string() == "live");
}

BOOST_AUTO_TEST_CASE(owner_identity_is_honoured) {
    // This process is alive, but the record says its owner started at
    // another time: a reused pid, which pidfd_liveness judges dead.
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    procreg_test::write_text(file, "{\"sessions\":[{\"sid\":\"reused\",\"pid\":" + std::to_string(self_pid()) +
                                       ",\"procreg_start_time\":1}]}");
    const auto r = run_tool({"ls", "--json", file.string()});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    const json::object out = json_of(r);
    const json::object* reused = record_with_key(out, "reused");
    BOOST_TEST_REQUIRE(reused);
    BOOST_TEST(!reused->at("alive").as_bool());
}

BOOST_AUTO_TEST_CASE(record_directory_with_retired_and_skipped_files) {
    temp_dir dir;
    const fs::path root = dir / "agents";
    auto reg = procreg::agentmux::open(root);
    auto a = procreg::agentmux::agent_record::make("a1");
    a.data.display_name = "reviewer";
    reg.upsert(a);
    reg.upsert(procreg::agentmux::agent_record::make("a2"));
    reg.retire("a2");
    procreg_test::write_text(root / "a3.json", "{\"schema_version\":9,\"data\":{\"instance_id\":\"a3\"}}");
    const auto r = run_tool({"ls", "--json", "--preset", "agentmux", root.string()});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    const json::object out = json_of(r);
    BOOST_TEST(out.at("format").as_string() == "record_files");
    BOOST_TEST_REQUIRE(out.at("records").as_array().size() == 1u);
    const json::object* a1 = record_with_key(out, "a1");
    BOOST_TEST_REQUIRE(a1);
    BOOST_TEST(a1->at("pid").is_null());    // AgentMux records have no owner process
    BOOST_TEST(a1->at("alive").is_null());
    BOOST_TEST(a1->at("status").as_string() == "unknown");
    BOOST_TEST(a1->at("fields").at("data").at("display_name").as_string() == "reviewer");
    BOOST_TEST_REQUIRE(out.at("skipped").as_array().size() == 1u);
    BOOST_TEST(out.at("skipped").as_array()[0].at("path").as_string().find("a3.json") != json::string::npos);
    // Without the preset the directory is recognised and the key found by itself.
    const auto detected = run_tool({"ls", "--json", root.string()});
    BOOST_TEST_REQUIRE(detected.code == 0, detected.err);
    const json::object listed = json_of(detected);
    BOOST_TEST(record_with_key(listed, "a1"));
}

BOOST_AUTO_TEST_CASE(ambiguous_table_needs_array) {
    temp_dir dir;
    const fs::path file = dir / "two.json";
    procreg_test::write_text(file, "{\"workers\":[{\"id\":\"w\",\"pid\":1}],\"other\":[]}");
    const auto r = run_tool({"ls", file.string()});
    BOOST_TEST(r.code == 2);
    BOOST_TEST(r.err.find("--array") != std::string::npos);
    const auto ok = run_tool({"ls", "--json", "--array", "workers", file.string()});
    BOOST_TEST_REQUIRE(ok.code == 0, ok.err);
    const json::object listed = json_of(ok);
    BOOST_TEST(record_with_key(listed, "w"));
}

BOOST_AUTO_TEST_CASE(key_and_pid_fields_given_on_the_command_line) {
    temp_dir dir;
    const fs::path file = dir / "jobs.json";
    procreg_test::write_text(file, "{\"jobs\":[{\"meta\":{\"name\":\"j1\",\"owner\":" + std::to_string(self_pid()) +
                                       "}}]}");
    const auto r = run_tool({"ls", "--json", "--key", "meta.name", "--pid", "meta.owner", file.string()});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    const json::object out = json_of(r);
    const json::object* j1 = record_with_key(out, "j1");
    BOOST_TEST_REQUIRE(j1);
    BOOST_TEST(j1->at("alive").as_bool());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(verbs)

BOOST_AUTO_TEST_CASE(show_exit_codes) {
    temp_dir dir;
    const fs::path file = algocline_registry(dir);
    auto r = run_tool({"show", "--json", file.string(), "live"});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    BOOST_TEST(json_of(r).at("record").at("fields").at("extra").as_array().size() == 2u);
    r = run_tool({"show", file.string(), "absent"});
    BOOST_TEST(r.code == 1);
    BOOST_TEST(r.out.empty());
    BOOST_TEST(line_count(r.err) == 1u);
}

BOOST_AUTO_TEST_CASE(reap_removes_only_dead_records_and_keeps_unknown_fields) {
    temp_dir dir;
    const fs::path file = algocline_registry(dir);
    const std::string before = procreg_test::read_text(file);
    auto r = run_tool({"reap", "--dry-run", "--json", file.string()});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    BOOST_TEST(json_of(r).at("dry_run").as_bool());
    BOOST_TEST(json_of(r).at("removed").as_array().size() == 1u);
    BOOST_TEST(procreg_test::read_text(file) == before);  // a dry run writes nothing

    r = run_tool({"reap", "--json", file.string()});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    const auto removed = json_of(r).at("removed").as_array();
    BOOST_TEST_REQUIRE(removed.size() == 1u);
    BOOST_TEST(removed[0].at("key").as_string() == "dead");
    const json::object left = json::parse(procreg_test::read_text(file)).as_object();
    BOOST_TEST_REQUIRE(left.at("sessions").as_array().size() == 1u);
    BOOST_TEST(left.at("sessions").as_array()[0].at("sid").as_string() == "live");
    BOOST_TEST(left.at("sessions").as_array()[0].at("extra").as_array().size() == 2u);
    // The preset still reads what the tool wrote.
    BOOST_TEST(procreg::algocline::open(file).find("live").has_value());
}

BOOST_AUTO_TEST_CASE(rm_exit_codes) {
    temp_dir dir;
    const fs::path file = algocline_registry(dir);
    auto r = run_tool({"rm", file.string(), "live"});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    BOOST_TEST(!procreg::algocline::open(file).find("live").has_value());
    r = run_tool({"rm", file.string(), "live"});
    BOOST_TEST(r.code == 1);
}

BOOST_AUTO_TEST_CASE(ls_retired_lists_the_retired_records_of_a_record_directory) {
    temp_dir dir;
    const fs::path root = dir / "workers";
    fs::create_directories(root / "retired");
    const std::string live = std::to_string(self_pid());
    const std::string dead = std::to_string(procreg_test::dead_pid());
    procreg_test::write_text(root / "w1.json", "{\"id\":\"w1\",\"pid\":" + live + "}");
    procreg_test::write_text(root / "retired" / "w2.json", "{\"id\":\"w2\",\"pid\":" + dead + ",\"role\":\"b\"}");
    procreg_test::write_text(root / "retired" / "w3.json", "{\"id\":\"w3\",\"pid\":" + live + "}");
    auto r = run_tool({"ls", "--json", "--retired", root.string()});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    json::object out = json_of(r);
    BOOST_TEST(out.at("retired").as_bool());
    BOOST_TEST_REQUIRE(out.at("records").as_array().size() == 2u, r.out);
    BOOST_TEST(!record_with_key(out, "w1"));
    const json::object* w2 = record_with_key(out, "w2");
    BOOST_TEST_REQUIRE(w2);
    BOOST_TEST(w2->at("status").as_string() == "dead");
    BOOST_TEST(w2->at("fields").at("role").as_string() == "b");
    BOOST_TEST(record_with_key(out, "w3")->at("status").as_string() == "alive");
    r = run_tool({"ls", "--retired", "--dead", "-n", "-o", "key,status", root.string()});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    BOOST_TEST(r.out == "w2\tdead\n");
    r = run_tool({"ls", "--json", root.string()});  // without --retired: the active ones
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    out = json_of(r);
    BOOST_TEST(!out.at("retired").as_bool());
    BOOST_TEST_REQUIRE(out.at("records").as_array().size() == 1u);
    BOOST_TEST(record_with_key(out, "w1"));

    const fs::path file = algocline_registry(dir);
    r = run_tool({"ls", "--retired", file.string()});
    BOOST_TEST(r.code == 2);
    BOOST_TEST(r.err.find("retired") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(retire_and_unretire_only_where_the_storage_has_tombstones) {
    temp_dir dir;
    const fs::path root = dir / "agents";
    auto reg = procreg::agentmux::open(root);
    reg.upsert(procreg::agentmux::agent_record::make("a1"));
    auto r = run_tool({"retire", "--json", "--preset", "agentmux", root.string(), "a1"});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    BOOST_TEST(json_of(r).at("status").as_string() == "moved");
    BOOST_TEST(fs::exists(root / "retired" / "a1.json"));
    BOOST_TEST(!reg.exists("a1"));
    r = run_tool({"unretire", "--preset", "agentmux", root.string(), "a1"});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    BOOST_TEST(reg.exists("a1"));

    const fs::path file = algocline_registry(dir);
    const std::string before = procreg_test::read_text(file);
    r = run_tool({"retire", file.string(), "live"});
    BOOST_TEST(r.code == 2);
    BOOST_TEST(r.err.find("retired") != std::string::npos);
    BOOST_TEST(procreg_test::read_text(file) == before);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(claim)

BOOST_AUTO_TEST_CASE(held_stale_free_exit_codes) {
    temp_dir dir;
    const fs::path lock = dir / "daemon.lock";
    {
        auto held = procreg::trusty::acquire_lock(lock);
        const auto r = run_tool({"claim", "--json", lock.string()});
        BOOST_TEST_REQUIRE(r.code == 0, r.err);
        const json::object out = json_of(r);
        BOOST_TEST(out.at("state").as_string() == "held");
        BOOST_TEST(out.at("pid").to_number<std::uint64_t>() == self_pid());
        BOOST_TEST(out.at("alive").as_bool());
    }
    auto r = run_tool({"claim", lock.string()});
    BOOST_TEST(r.code == 3);  // the guard removed the file: free
    procreg_test::write_text(lock, std::to_string(procreg_test::dead_pid()) + "\n");
    r = run_tool({"claim", "--json", lock.string()});
    BOOST_TEST(r.code == 1);
    BOOST_TEST(json_of(r).at("state").as_string() == "stale");
    BOOST_TEST(!json_of(r).at("alive").as_bool());
    // A JSON claim (INSOMNIA's) whose holder is dead, arrays and all.
    const fs::path staging_lock = dir / ".consolidation.lock";
    procreg_test::write_text(staging_lock, "{\n  \"pid\": " + std::to_string(procreg_test::dead_pid()) +
                                               ",\n  \"pod_name\": \"p\",\n  \"consumed_ids\": []\n}");
    r = run_tool({"claim", "--json", staging_lock.string()});
    BOOST_TEST(r.code == 1, r.out << r.err);
    BOOST_TEST(json_of(r).at("format").as_string() == "claim_json");
    BOOST_TEST(json_of(r).at("fields").at("pod_name").as_string() == "p");
    // A claim that does not parse is stale, as the seeds say, with the reason.
    procreg_test::write_text(lock, "not a pid\n");
    r = run_tool({"claim", "--json", lock.string()});
    BOOST_TEST(r.code == 1, r.out << r.err);
    BOOST_TEST(json_of(r).at("state").as_string() == "stale");
    BOOST_TEST(!json_of(r).at("reason").is_null());
    procreg_test::write_text(staging_lock, "{\"pod_name\": \"p\"");
    r = run_tool({"claim", staging_lock.string()});
    BOOST_TEST(r.code == 1, r.out << r.err);
    // Not a claim file: a usage error.
    r = run_tool({"claim", algocline_registry(dir).string()});
    BOOST_TEST(r.code == 2);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(doctor)

BOOST_AUTO_TEST_CASE(clean_registry_exits_0) {
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    procreg::algocline::open(file).insert(
        procreg::algocline::pool_session::make("live", self_pid(), "/s", "1"));
    const auto r = run_tool({"doctor", "--json", file.string()});
    BOOST_TEST(r.code == 0, r.out << r.err);
    BOOST_TEST(json_of(r).at("clean").as_bool());
}

BOOST_AUTO_TEST_CASE(dead_records_temp_files_and_fix) {
    temp_dir dir;
    const fs::path file = algocline_registry(dir);
    // A temp file left by a writer that died mid-save.
    const fs::path temp = dir / (".registry.json.tmp-" + std::to_string(procreg_test::dead_pid()) + "-0-1");
    procreg_test::write_text(temp, "{");
    auto r = run_tool({"doctor", "--json", file.string()});
    BOOST_TEST(r.code == 1, r.out << r.err);
    bool saw_dead = false, saw_temp = false;
    const json::object found = json_of(r);
    for (const auto& p : found.at("problems").as_array()) {
        saw_dead = saw_dead || p.at("kind").as_string() == "dead_record";
        saw_temp = saw_temp || p.at("kind").as_string() == "temp_file";
    }
    BOOST_TEST(saw_dead);
    BOOST_TEST(saw_temp);
    BOOST_TEST(procreg::algocline::open(file).find("dead").has_value());  // reported, not removed

    r = run_tool({"doctor", "--fix", "--json", file.string()});
    BOOST_TEST(r.code == 0, r.out << r.err);
    const json::object fixed = json_of(r);
    BOOST_TEST(!fixed.at("problems").as_array().empty());
    for (const auto& p : fixed.at("problems").as_array()) BOOST_TEST(p.at("fixed").as_bool());
    BOOST_TEST(!procreg::algocline::open(file).find("dead").has_value());
    BOOST_TEST(procreg::algocline::open(file).find("live").has_value());
    BOOST_TEST(!fs::exists(temp));
    BOOST_TEST(run_tool({"doctor", file.string()}).code == 0);
}

BOOST_AUTO_TEST_CASE(seed_temp_files_reported_unless_held_open) {
    // Rust's tempfile crate names ".tmpXXXXXX"; yoi and trusty "<name>.tmp".
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    procreg::algocline::open(file).insert(procreg::algocline::pool_session::make("live", self_pid(), "/s", "1"));
    procreg_test::write_text(dir / ".tmpAb3x9Z", "{");
    procreg_test::write_text(dir / "registry.json.tmp", "{");
    procreg_test::write_text(dir / ".tmpInUse1", "{");
    const int in_use = ::open((dir / ".tmpInUse1").c_str(), O_RDONLY | O_CLOEXEC);  // a save in progress
    BOOST_TEST_REQUIRE(in_use >= 0);
    auto r = run_tool({"doctor", "--json", file.string()});
    BOOST_TEST(r.code == 1, r.out << r.err);
    std::vector<std::string> reported;
    const json::object found = json_of(r);
    for (const auto& p : found.at("problems").as_array()) {
        if (p.at("kind").as_string() == "temp_file") reported.emplace_back(p.at("path").as_string());
    }
    BOOST_TEST(reported.size() == 2u);
    for (const auto& path : reported) BOOST_TEST(path.find("InUse") == std::string::npos, path);
    r = run_tool({"doctor", "--fix", file.string()});
    BOOST_TEST(r.code == 0, r.out << r.err);
    BOOST_TEST(!fs::exists(dir / ".tmpAb3x9Z"));
    BOOST_TEST(!fs::exists(dir / "registry.json.tmp"));
    BOOST_TEST(fs::exists(dir / ".tmpInUse1"));
    ::close(in_use);
}

BOOST_AUTO_TEST_CASE(unparseable_file_and_odd_lock_file) {
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    procreg_test::write_text(file, "{\"sessions\": [");
    auto r = run_tool({"doctor", "--json", file.string()});
    BOOST_TEST(r.code == 1);
    BOOST_TEST(json_of(r).at("problems").as_array()[0].at("kind").as_string() == "unreadable");
    BOOST_TEST(json_of(r).at("problems").as_array()[0].at("detail").as_string().find("parse") !=
               json::string::npos);

    const fs::path good = dir / "sub" / "registry.json";
    procreg::algocline::open(good).insert(procreg::algocline::pool_session::make("live", self_pid(), "/s", "1"));
    fs::remove(dir / "sub" / "registry.lock");
    fs::create_directory(dir / "sub" / "registry.lock");
    r = run_tool({"doctor", "--fix", "--json", good.string()});
    BOOST_TEST(r.code == 1, r.out << r.err);
    bool saw = false;
    const json::object found = json_of(r);
    for (const auto& p : found.at("problems").as_array()) {
        if (p.at("kind").as_string() == "lock_not_regular") saw = !p.at("fixed").as_bool();
    }
    BOOST_TEST(saw);
}

BOOST_AUTO_TEST_CASE(unsafe_permissions) {
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    procreg::algocline::open(file).insert(procreg::algocline::pool_session::make("live", self_pid(), "/s", "1"));
    BOOST_TEST_REQUIRE(::chmod(file.c_str(), 0666) == 0);
    auto r = run_tool({"doctor", file.string()});
    BOOST_TEST(r.code == 1);
    BOOST_TEST(r.out.find("unsafe_permissions") != std::string::npos);
    r = run_tool({"doctor", "--fix", file.string()});
    BOOST_TEST(r.code == 0, r.out << r.err);
    BOOST_TEST(procreg_test::mode_of(file) == 0644u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(hostile)

BOOST_AUTO_TEST_CASE(symlinked_path_is_refused_and_nothing_changes) {
    temp_dir dir;
    const fs::path file = algocline_registry(dir);
    const fs::path link = dir / "link.json";
    fs::create_symlink(file, link);
    const std::string before = procreg_test::read_text(file);
    for (const char* verb : {"ls", "reap", "doctor"}) {
        const auto r = run_tool({verb, link.string()});
        BOOST_TEST(r.code != 0, verb);
        BOOST_TEST(line_count(r.err) + line_count(r.out) == 1u, verb << ": " << r.out << r.err);
        BOOST_TEST(r.err.find("symbolic link") + r.out.find("symbolic link") != 2 * std::string::npos);
    }
    BOOST_TEST(procreg_test::read_text(file) == before);
}

BOOST_AUTO_TEST_CASE(traversal_key_is_refused_and_nothing_changes) {
    temp_dir dir;
    const fs::path root = dir / "agents";
    procreg::agentmux::open(root).upsert(procreg::agentmux::agent_record::make("a1"));
    procreg_test::write_text(dir / "victim.json", "{}");
    for (const char* verb : {"rm", "retire", "unretire", "show"}) {
        const auto r = run_tool({verb, "--preset", "agentmux", root.string(), "../victim"});
        BOOST_TEST(r.code != 0, verb);
        BOOST_TEST(line_count(r.err) == 1u, verb << ": " << r.err);
    }
    BOOST_TEST(fs::exists(dir / "victim.json"));
    BOOST_TEST(fs::exists(root / "a1.json"));
}

BOOST_AUTO_TEST_CASE(huge_file_is_refused_unread) {
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    {
        std::ofstream out(file);
    }
    fs::resize_file(file, std::uintmax_t{65} << 20);  // sparse: larger than any registry may be
    const auto r = run_tool({"ls", file.string()});
    BOOST_TEST(r.code == 4);
    BOOST_TEST(line_count(r.err) == 1u, r.err);
    BOOST_TEST(r.err.find("bytes") != std::string::npos);
    BOOST_TEST(fs::file_size(file) == std::uintmax_t{65} << 20);
}

BOOST_AUTO_TEST_CASE(colour_only_on_a_terminal_and_never_with_NO_COLOR) {
    // script(1) gives the tool a terminal for its stdout.
    BOOST_TEST_REQUIRE(::access("/usr/bin/script", X_OK) == 0, "needs /usr/bin/script (util-linux)");
    temp_dir dir;
    const fs::path file = algocline_registry(dir);
    const std::string tool = PROCREG_TOOL;
    auto r = procreg_cli_test::run_program("/usr/bin/script",
                                           {"-qec", "env -u NO_COLOR " + tool + " ls " + file.string(), "/dev/null"});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    BOOST_TEST(r.out.find("\033[31mdead\033[0m") != std::string::npos, r.out);
    BOOST_TEST(r.out.find('\t') == std::string::npos);  // aligned, not tab-separated
    r = procreg_cli_test::run_program("/usr/bin/script",
                                      {"-qec", "env NO_COLOR=1 " + tool + " ls " + file.string(), "/dev/null"});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    BOOST_TEST(r.out.find('\033') == std::string::npos, r.out);
    BOOST_TEST(r.out.find("dead") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(escape_sequences_never_reach_the_output) {
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    procreg_test::write_text(file, "{\"sessions\":[{\"sid\":\"a\\u001b]0;pwned\\u0007\\nfake\",\"pid\":1,"
                                   "\"sock\":\"x\\ty\"}]}");
    const auto r = run_tool({"ls", file.string()});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    BOOST_TEST(r.out.find('\033') == std::string::npos);
    BOOST_TEST(r.out.find('\007') == std::string::npos);
    BOOST_TEST(line_count(r.out) == 2u);  // heading + one record: the newline is escaped
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(usage)

BOOST_AUTO_TEST_CASE(usage_errors_exit_2_and_help_everywhere) {
    BOOST_TEST(run_tool({}).code == 2);
    BOOST_TEST(run_tool({"ls"}).code == 2);
    BOOST_TEST(run_tool({"ls", "--preset", "nope", "/tmp"}).code == 2);
    BOOST_TEST(run_tool({"frobnicate"}).code == 2);
    BOOST_TEST(run_tool({"ls", "--alive", "--dead", "/tmp/x"}).code == 2);
    for (const char* verb : {"ls", "show", "reap", "rm", "retire", "unretire", "claim", "watch", "doctor"}) {
        const auto r = run_tool({verb, "--help"});
        BOOST_TEST(r.code == 0, verb);
        BOOST_TEST(r.out.find("Usage:") != std::string::npos, verb);
    }
}

BOOST_AUTO_TEST_CASE(missing_registry_is_an_error_not_an_empty_listing) {
    temp_dir dir;
    const auto r = run_tool({"ls", (dir / "absent.json").string()});
    BOOST_TEST(r.code == 4);
    BOOST_TEST(line_count(r.err) == 1u);
    BOOST_TEST(!fs::exists(dir / "absent.json"));
    BOOST_TEST(!fs::exists(dir / "absent.lock"));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(watch)

using procreg_cli_test::eventually;
using procreg_cli_test::json_lines;
using procreg_cli_test::pidfds_of;
using procreg_cli_test::running_program;
using procreg_cli_test::start_tool_into;

// Each change is made once the tool printed the event of the one before,
// so no two changes can be coalesced into one event.
BOOST_AUTO_TEST_CASE(prints_added_changed_and_removed_events_as_json_lines) {
    temp_dir dir;
    const fs::path file = algocline_registry(dir);  // "live" is this process: the tool pins it
    running_program tool;
    start_tool_into(tool, {"watch", "--json", "--count", "3", "--timeout", "30", file.string()});
    BOOST_TEST_REQUIRE(eventually([&] { return pidfds_of(tool.pid) >= 1; }), "the tool never pinned the live owner");
    const auto printed = [&](std::size_t n) {
        return eventually([&] { return line_count(procreg_test::read_text(tool.out_path())) >= n; });
    };
    auto reg = procreg::algocline::open(file);
    reg.insert(procreg::algocline::pool_session::make("new", self_pid(), "/n", "1"));
    BOOST_TEST_REQUIRE(printed(1));
    reg.upsert(procreg::algocline::pool_session::make("new", self_pid(), "/n2", "1"));
    BOOST_TEST_REQUIRE(printed(2));
    reg.erase("new");
    const auto r = procreg_cli_test::finish(tool);
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    const auto events = json_lines(r.out);
    BOOST_TEST_REQUIRE(events.size() == 3u, r.out);
    BOOST_TEST(events[0].at("event").as_string() == "added");
    BOOST_TEST(events[0].at("key").as_string() == "new");
    BOOST_TEST(events[0].at("alive").as_bool());
    BOOST_TEST(events[0].at("fields").at("sock").as_string() == "/n");
    BOOST_TEST(events[1].at("event").as_string() == "changed");
    BOOST_TEST(events[1].at("fields").at("sock").as_string() == "/n2");
    BOOST_TEST(events[2].at("event").as_string() == "removed");
    BOOST_TEST(events[2].at("key").as_string() == "new");
}

// Nothing writes the registry after the kill: only the pidfd can tell. The
// owner is not reaped before the tool reports it (a zombie is dead).
BOOST_AUTO_TEST_CASE(reports_owner_died_for_a_sigkilled_owner_without_any_write) {
    temp_dir dir;
    const fs::path file = algocline_registry(dir);
    const pid_t owner = procreg_test::spawn([] {
        for (;;) ::pause();
        return 0;
    });
    procreg::algocline::open(file).insert(
        procreg::algocline::pool_session::make("worker", static_cast<std::uint32_t>(owner), "/w", "1"));
    const std::string before = procreg_test::read_text(file);
    const auto written_at = fs::last_write_time(file);
    running_program tool;
    start_tool_into(tool, {"watch", "--count", "1", "--timeout", "30", file.string()});
    // Two live owners: this process ("live") and `owner` ("worker").
    const bool pinned = eventually([&] { return pidfds_of(tool.pid) >= 2; });
    ::kill(owner, SIGKILL);
    const auto r = procreg_cli_test::finish(tool);
    BOOST_TEST(procreg_test::wait_exit(owner) == 128 + SIGKILL);
    BOOST_TEST_REQUIRE(pinned, "the tool never pinned both live owners");
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    BOOST_TEST(r.out == "owner_died\tworker\t" + std::to_string(owner) + "\tdead\n");
    BOOST_TEST(procreg_test::read_text(file) == before);
    BOOST_TEST((fs::last_write_time(file) == written_at));
}

BOOST_AUTO_TEST_CASE(reports_retired_and_unretired_on_a_record_directory) {
    temp_dir dir;
    const fs::path root = dir / "workers";
    fs::create_directories(root / "retired");
    const std::string pid = std::to_string(self_pid());
    procreg_test::write_text(root / "w1.json", "{\"id\":\"w1\",\"pid\":" + pid + "}");
    procreg_test::write_text(root / "w2.json", "{\"id\":\"w2\",\"pid\":" + pid + ",\"role\":\"b\"}");
    running_program tool;
    start_tool_into(tool, {"watch", "--json", "--count", "2", "--timeout", "30", root.string()});
    BOOST_TEST_REQUIRE(eventually([&] { return pidfds_of(tool.pid) >= 1; }), "the tool never pinned the live owner");
    auto r = run_tool({"retire", root.string(), "w2"});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    BOOST_TEST_REQUIRE(eventually([&] { return line_count(procreg_test::read_text(tool.out_path())) >= 1; }));
    r = run_tool({"unretire", root.string(), "w2"});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    r = procreg_cli_test::finish(tool);
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    const auto events = json_lines(r.out);
    BOOST_TEST_REQUIRE(events.size() == 2u, r.out);
    BOOST_TEST(events[0].at("event").as_string() == "retired");
    BOOST_TEST(events[0].at("key").as_string() == "w2");
    BOOST_TEST(events[0].at("fields").at("role").as_string() == "b");
    BOOST_TEST(events[1].at("event").as_string() == "unretired");
    BOOST_TEST(events[1].at("key").as_string() == "w2");
    BOOST_TEST(events[1].at("alive").as_bool());
}

// AgentMux records have no pid: no owner to pin and none to report dead.
BOOST_AUTO_TEST_CASE(records_without_a_pid_never_report_owner_died) {
    temp_dir dir;
    const fs::path root = dir / "agents";
    procreg::agentmux::open(root).upsert(procreg::agentmux::agent_record::make("a1"));
    const auto r = run_tool({"watch", "--json", "--preset", "agentmux", "--timeout", "1", root.string()});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    BOOST_TEST(r.out == "");
}

BOOST_AUTO_TEST_CASE(an_interrupt_ends_the_watch_with_exit_0) {
    temp_dir dir;
    const fs::path file = algocline_registry(dir);
    running_program tool;
    start_tool_into(tool, {"watch", file.string()});
    const bool pinned = eventually([&] { return pidfds_of(tool.pid) >= 1; });
    ::kill(tool.pid, SIGINT);
    const auto r = procreg_cli_test::finish(tool);
    BOOST_TEST_REQUIRE(pinned, "the tool never pinned the live owner");
    BOOST_TEST(r.code == 0, r.err);
    BOOST_TEST(r.out == "");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(dynamic_record)

BOOST_AUTO_TEST_CASE(decodes_only_under_a_layout_and_keeps_every_field) {
    const json::value value = json::parse(R"({"data":{"instance_id":"x","n":1},"pid":7,"other":[1]})");
    BOOST_CHECK_THROW(json::value_to<procreg::dynamic_record>(value), procreg::detail::decode_error);
    procreg::dynamic_record::layout_scope scope({"data.instance_id", "pid"});
    const auto record = json::value_to<procreg::dynamic_record>(value);
    BOOST_TEST(record.key() == "x");
    BOOST_TEST(record.pid().value() == 7u);
    BOOST_TEST((json::value_from(record) == value));
    {
        procreg::dynamic_record::layout_scope inner({"missing", ""});
        BOOST_CHECK_THROW(json::value_to<procreg::dynamic_record>(value), procreg::detail::decode_error);
    }
    BOOST_TEST(json::value_to<procreg::dynamic_record>(value).key() == "x");  // the outer scope is back
    BOOST_CHECK_THROW(json::value_to<procreg::dynamic_record>(json::parse(R"({"data":{"instance_id":"x"},"pid":-1})")),
                      procreg::detail::decode_error);
}

BOOST_AUTO_TEST_CASE(a_registry_of_dynamic_records_reaps_and_keeps_unknown_fields) {
    temp_dir dir;
    const fs::path file = algocline_registry(dir);
    procreg::dynamic_record::layout_scope scope({"sid", "pid"});
    procreg::storage::json_table_options opts = procreg::algocline::options(file);
    procreg::registry<procreg::dynamic_record, procreg::lock::flock_lock, procreg::storage::json_table,
                      procreg::dynamic_liveness<>>
        reg{procreg::storage::json_table(opts)};
    const auto removed = reg.reap();
    BOOST_TEST_REQUIRE(removed.size() == 1u);
    BOOST_TEST(removed[0].key() == "dead");
    const auto live = procreg::algocline::open(file).find("live");
    BOOST_TEST_REQUIRE(live.has_value());
    BOOST_TEST(live->sock == "/run/live.sock");
    BOOST_TEST(procreg_test::read_text(file).find("\"extra\"") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(load)

BOOST_AUTO_TEST_CASE(tool_runs_while_8_processes_write_and_loses_nothing) {
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    procreg::algocline::open(file).insert(procreg::algocline::pool_session::make("seed", self_pid(), "/s", "1"));
    constexpr int writers = 8;
    constexpr int per_writer = 40;
    const std::uint32_t owner = self_pid();
    const auto dead = static_cast<std::uint32_t>(procreg_test::dead_pid());
    std::vector<pid_t> children;
    for (int w = 0; w < writers; ++w) {
        children.push_back(procreg_test::spawn([&, w] {
            auto reg = procreg::algocline::open(file);
            for (int n = 0; n < per_writer; ++n) {
                const std::string suffix = std::to_string(w) + "-" + std::to_string(n);
                reg.insert(procreg::algocline::pool_session::make("live-" + suffix, owner, "/s", "1"));
                reg.insert(procreg::algocline::pool_session::make("dead-" + suffix, dead, "/s", "1"));
            }
            return 0;
        }));
    }
    // The tool reaps, lists and repairs while they write.
    int runs = 0;
    const auto all_done = [&] {
        for (const pid_t child : children) {
            int status = 0;
            if (::waitpid(child, &status, WNOHANG) == 0) return false;
        }
        return true;
    };
    bool finished = false;
    while (!finished) {
        finished = all_done();
        const auto reap = run_tool({"reap", "--json", file.string()});
        BOOST_TEST_REQUIRE(reap.code == 0, reap.err);
        (void)json_of(reap);
        const auto ls = run_tool({"ls", "--json", file.string()});
        BOOST_TEST_REQUIRE(ls.code == 0, ls.err);
        (void)json_of(ls);
        ++runs;
    }
    BOOST_TEST(runs >= 1);
    const auto r = run_tool({"reap", file.string()});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    auto reg = procreg::algocline::open(file);
    const auto rows = reg.list();
    BOOST_TEST(rows.size() == std::size_t{writers * per_writer + 1});
    for (int w = 0; w < writers; ++w) {
        for (int n = 0; n < per_writer; ++n) {
            const std::string suffix = std::to_string(w) + "-" + std::to_string(n);
            BOOST_TEST(reg.find("live-" + suffix).has_value(), suffix);
            BOOST_TEST(!reg.find("dead-" + suffix).has_value(), suffix);
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(locking)

// The tool waits for the registry's own lock: a writer holding it inserts a
// dead record before committing, and `reap`, started while it holds the
// lock, must see (and remove) that record. Without the lock it would read
// the registry before the commit and remove nothing. Run for flock and for
// the named mutex.
void reap_waits_for_the_lock(bool named_mutex) {
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    using named = procreg::with_lock_t<procreg::algocline::pool_registry, procreg::lock::named_mutex_lock>;
    const auto open_and_insert = [&](const std::string& sid, std::uint32_t pid) {
        const auto session = procreg::algocline::pool_session::make(sid, pid, "/s", "1");
        if (named_mutex) {
            procreg::algocline::open<named>(file).insert(session);
        } else {
            procreg::algocline::open(file).insert(session);
        }
    };
    open_and_insert("live", self_pid());
    const auto dead = static_cast<std::uint32_t>(procreg_test::dead_pid());
    procreg_test::signal_pipe holding, go;
    const pid_t writer = procreg_test::spawn([&] {
        const auto steps = [&](auto& tx) {
            holding.notify();
            if (!go.wait(std::chrono::seconds(30))) throw std::runtime_error("no go");
            tx.insert(procreg::algocline::pool_session::make("dead", dead, "/s", "1"));
        };
        if (named_mutex) {
            procreg::algocline::open<named>(file).transact(steps);
        } else {
            procreg::algocline::open(file).transact(steps);
        }
        return 0;
    });
    BOOST_TEST_REQUIRE(holding.wait(std::chrono::seconds(30)));
    std::vector<std::string> args{"reap", "--json", file.string()};
    if (named_mutex) args.push_back("--named-mutex");
    procreg_test::temp_dir capture;
    const pid_t tool = procreg_test::spawn([&] {
        const auto r = run_tool(args);
        procreg_test::write_text(capture / "out", r.out);
        return r.code;
    });
    // Give an unlocked reader every chance to read before the commit.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    go.notify();
    BOOST_TEST(procreg_test::wait_exit(writer) == 0);
    BOOST_TEST_REQUIRE(procreg_test::wait_exit(tool) == 0);
    const json::object out = json::parse(procreg_test::read_text(capture / "out")).as_object();
    BOOST_TEST_REQUIRE(out.at("removed").as_array().size() == 1u);
    BOOST_TEST(out.at("removed").as_array()[0].at("key").as_string() == "dead");
}

BOOST_AUTO_TEST_CASE(reap_waits_for_flock) { reap_waits_for_the_lock(false); }

BOOST_AUTO_TEST_CASE(reap_waits_for_the_named_mutex_and_doctor_sees_its_segment) {
    reap_waits_for_the_lock(true);
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    using named = procreg::with_lock_t<procreg::algocline::pool_registry, procreg::lock::named_mutex_lock>;
    procreg::algocline::open<named>(file).insert(procreg::algocline::pool_session::make("live", self_pid(), "/s", "1"));
    const auto r = run_tool({"doctor", "--json", file.string()});
    BOOST_TEST(r.code == 1, r.out << r.err);
    bool saw = false;
    const json::object found = json_of(r);
    for (const auto& p : found.at("problems").as_array()) saw = saw || p.at("kind").as_string() == "named_mutex_segment";
    BOOST_TEST(saw);
    procreg::lock::named_mutex_lock::remove(dir / "registry.lock");
}

BOOST_AUTO_TEST_SUITE_END()
