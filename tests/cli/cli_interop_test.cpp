// tests/cli/cli_interop_test.cpp — the `procreg` tool on registries written
// by the seeds' own Rust code (`seedio`, tests/interop/rust), and the seeds
// reading what the tool left. Built when PROCREG_INTEROP is ON.
#define BOOST_TEST_MODULE procreg_cli_interop
#include <boost/test/unit_test.hpp>

#include "cli/tool_runner.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <filesystem>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#ifndef PROCREG_SEEDIO
#error "PROCREG_SEEDIO (the path of the seedio program) must be defined by the build"
#endif

namespace fs = std::filesystem;
namespace json = boost::json;
using procreg_cli_test::json_of;
using procreg_cli_test::record_with_key;
using procreg_cli_test::run_result;
using procreg_cli_test::run_tool;
using procreg_test::temp_dir;

namespace {

std::string self_pid() { return std::to_string(::getpid()); }
std::string dead_pid() { return std::to_string(procreg_test::dead_pid()); }

run_result seedio(const std::vector<std::string>& args) {
    run_result r = procreg_cli_test::run_program(PROCREG_SEEDIO, args);
    BOOST_TEST_REQUIRE(r.code == 0, "seedio failed: " << r.err);
    return r;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(seeds)

BOOST_AUTO_TEST_CASE(algocline_ls_and_reap_then_the_seed_reads_the_result) {
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    seedio({"algocline", "write", file.string(), "live", self_pid(), "/s/live.sock", "0.30.0"});
    seedio({"algocline", "write", file.string(), "dead", dead_pid(), "/s/dead.sock", "0.30.0"});
    auto r = run_tool({"ls", "--json", file.string()});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    const json::object listed = json_of(r);
    BOOST_TEST_REQUIRE(record_with_key(listed, "live"));
    BOOST_TEST(record_with_key(listed, "live")->at("alive").as_bool());
    BOOST_TEST(!record_with_key(listed, "dead")->at("alive").as_bool());
    BOOST_TEST(record_with_key(listed, "live")->at("fields").at("version").as_string() == "0.30.0");

    r = run_tool({"reap", "--preset", "algocline", "--json", file.string()});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    BOOST_TEST(json_of(r).at("removed").as_array().size() == 1u);
    const json::object dumped = json::parse(seedio({"algocline", "dump", file.string()}).out).as_object();
    BOOST_TEST_REQUIRE(dumped.at("sessions").as_array().size() == 1u);
    BOOST_TEST(dumped.at("sessions").as_array()[0].at("sid").as_string() == "live");
}

BOOST_AUTO_TEST_CASE(algocline_tool_runs_while_8_rust_writers_write_and_loses_nothing) {
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    seedio({"algocline", "write", file.string(), "seed", self_pid(), "/s/seed.sock", "0.30.0"});
    constexpr int writers = 8;
    constexpr int per_writer = 25;
    const std::string owner = self_pid();  // alive throughout (the writers exit: their pids die)
    std::vector<pid_t> children;
    for (int w = 0; w < writers; ++w) {
        children.push_back(procreg_test::spawn([&, w] {
            const auto r = procreg_cli_test::run_program(
                PROCREG_SEEDIO, {"algocline", "write-many", file.string(), "w" + std::to_string(w) + "-",
                                 std::to_string(per_writer), owner});
            return r.code;
        }));
    }
    bool finished = false;
    while (!finished) {
        finished = true;
        for (const pid_t child : children) finished = finished && ::waitpid(child, nullptr, WNOHANG) != 0;
        for (const char* verb : {"reap", "ls"}) {
            const auto r = run_tool({verb, "--json", file.string()});
            BOOST_TEST_REQUIRE(r.code == 0, verb << ": " << r.err);
            (void)json_of(r);
        }
    }
    const auto r = run_tool({"ls", "--json", file.string()});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    const json::object listed = json_of(r);
    BOOST_TEST(listed.at("records").as_array().size() == std::size_t{writers * per_writer + 1});
    for (int w = 0; w < writers; ++w) {
        for (int n = 0; n < per_writer; ++n) {
            const std::string sid = "w" + std::to_string(w) + "-" + std::to_string(n);
            BOOST_TEST(record_with_key(listed, sid), sid);
        }
    }
}

BOOST_AUTO_TEST_CASE(yoi_pods_listed_by_preset_and_by_detection) {
    temp_dir dir;
    const fs::path file = dir / "pods.json";
    seedio({"yoi", "write", file.string(),
            "{\"pod_name\":\"a\",\"pid\":" + self_pid() +
                ",\"socket\":\"/run/yoi/a.sock\",\"scope_allow\":[],\"scope_deny\":[],\"delegated_from\":null,"
                "\"segment_id\":\"0b6f6c0e-7f8a-4c55-9a0e-3c1d2b4a5f60\"}"});
    for (const std::vector<std::string>& extra : {std::vector<std::string>{"--preset", "yoi"},
                                                  std::vector<std::string>{}}) {
        std::vector<std::string> args{"ls", "--json"};
        args.insert(args.end(), extra.begin(), extra.end());
        args.push_back(file.string());
        const auto r = run_tool(args);
        BOOST_TEST_REQUIRE(r.code == 0, r.err);
        const json::object listed = json_of(r);
        const json::object* a = record_with_key(listed, "a");
        BOOST_TEST_REQUIRE(a);
        BOOST_TEST(a->at("alive").as_bool());
        BOOST_TEST(a->at("fields").at("socket").as_string() == "/run/yoi/a.sock");
    }
}

BOOST_AUTO_TEST_CASE(yoi_show_and_rm_then_the_seed_reads_the_result) {
    temp_dir dir;
    const fs::path file = dir / "pods.json";
    const std::pair<const char*, const char*> pods[] = {{"a", "0b6f6c0e-7f8a-4c55-9a0e-3c1d2b4a5f60"},
                                                        {"b", "5d1c3e2a-9b8f-47a6-8e0d-1f2a3b4c5d6e"}};
    for (const auto& [pod, segment] : pods) {
        seedio({"yoi", "write", file.string(),
                std::string("{\"pod_name\":\"") + pod + "\",\"pid\":" + self_pid() +
                    ",\"socket\":\"/run/yoi/x.sock\",\"scope_allow\":[],\"scope_deny\":[],"
                    "\"delegated_from\":null,\"segment_id\":\"" + segment + "\"}"});
    }
    auto r = run_tool({"show", "--json", file.string(), "b"});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    BOOST_TEST(json_of(r).at("record").at("fields").at("socket").as_string() == "/run/yoi/x.sock");
    r = run_tool({"rm", "--preset", "yoi", file.string(), "a"});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    BOOST_TEST(run_tool({"show", file.string(), "a"}).code == 1);
    const json::object dumped = json::parse(seedio({"yoi", "dump", file.string()}).out).as_object();
    BOOST_TEST_REQUIRE(dumped.at("allocations").as_array().size() == 1u);
    BOOST_TEST(dumped.at("allocations").as_array()[0].at("pod_name").as_string() == "b");
}

BOOST_AUTO_TEST_CASE(watch_sees_what_the_rust_writer_writes) {
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    seedio({"algocline", "write", file.string(), "first", self_pid(), "/s/1.sock", "0.30.0"});
    procreg_cli_test::running_program tool;
    procreg_cli_test::start_tool_into(tool, {"watch", "--json", "--count", "1", "--timeout", "30", file.string()});
    // The tool pins the owner of "first" (this process) once it has read the
    // starting state: from then on it sees every write.
    const bool pinned = procreg_cli_test::eventually([&] { return procreg_cli_test::pidfds_of(tool.pid) >= 1; });
    if (pinned) seedio({"algocline", "write", file.string(), "second", self_pid(), "/s/2.sock", "0.30.0"});
    const auto r = procreg_cli_test::finish(tool);
    BOOST_TEST_REQUIRE(pinned, "the tool never pinned the live owner");
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    const json::object event = json::parse(r.out).as_object();
    BOOST_TEST(event.at("event").as_string() == "added");
    BOOST_TEST(event.at("key").as_string() == "second");
    BOOST_TEST(event.at("alive").as_bool());
    BOOST_TEST(event.at("fields").at("sock").as_string() == "/s/2.sock");
}

BOOST_AUTO_TEST_CASE(agentmux_retire_then_the_seed_finds_it_retired) {
    temp_dir dir;
    const fs::path root = dir / "registry";
    seedio({"agentmux", "write", root.string(),
            "{\"schema_version\":1,\"data\":{\"instance_id\":\"agent-1\",\"display_name\":\"reviewer\"}}"});
    auto r = run_tool({"ls", "--json", root.string()});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    const json::object listed = json_of(r);
    BOOST_TEST_REQUIRE(record_with_key(listed, "agent-1"));
    BOOST_TEST(record_with_key(listed, "agent-1")->at("status").as_string() == "unknown");
    r = run_tool({"retire", "--preset", "agentmux", root.string(), "agent-1"});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    seedio({"agentmux", "exists", root.string(), "agent-1", "retired"});
    r = run_tool({"unretire", "--preset", "agentmux", root.string(), "agent-1"});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    seedio({"agentmux", "exists", root.string(), "agent-1", "active"});
}

BOOST_AUTO_TEST_CASE(trusty_claim_exit_codes_and_reap) {
    temp_dir dir;
    const fs::path lock = dir / "daemon.lock";
    BOOST_TEST(run_tool({"claim", lock.string()}).code == 3);
    seedio({"trusty", "write", lock.string(), self_pid()});
    BOOST_TEST(run_tool({"claim", lock.string()}).code == 0);
    seedio({"trusty", "write", lock.string(), dead_pid()});
    auto r = run_tool({"claim", "--json", "--preset", "trusty", lock.string()});
    BOOST_TEST(r.code == 1);
    BOOST_TEST(json_of(r).at("state").as_string() == "stale");
    r = run_tool({"reap", "--preset", "trusty", lock.string()});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    seedio({"trusty", "check", lock.string(), "none"});
    BOOST_TEST(run_tool({"claim", lock.string()}).code == 3);
}

BOOST_AUTO_TEST_CASE(insomnia_stale_claim_found_and_fixed_by_doctor) {
    temp_dir dir;
    seedio({"insomnia", "write", dir.path().string(), dead_pid(), "pod-x"});
    const fs::path lock = dir / "_staging" / ".consolidation.lock";
    auto r = run_tool({"claim", "--json", lock.string()});
    BOOST_TEST(r.code == 1, r.out << r.err);
    BOOST_TEST(json_of(r).at("fields").at("pod_name").as_string() == "pod-x");
    r = run_tool({"doctor", lock.string()});
    BOOST_TEST(r.code == 1);
    BOOST_TEST(r.out.find("stale_claim") != std::string::npos);
    r = run_tool({"doctor", "--fix", "--preset", "insomnia", lock.string()});
    BOOST_TEST(r.code == 0, r.out << r.err);
    seedio({"insomnia", "check", dir.path().string(), "none"});
}

BOOST_AUTO_TEST_SUITE_END()
