// tests/cli/tool_runner.hpp — runs the `procreg` program as a real process.
//
// The program's path comes from CMake (PROCREG_TOOL). stdout and stderr go
// to files in a private directory, so a large output cannot block the child
// on a full pipe while the test waits for it.
#pragma once

#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <boost/json.hpp>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#ifndef PROCREG_TOOL
#error "PROCREG_TOOL (the path of the procreg program) must be defined by the build"
#endif

namespace procreg_cli_test {

/// One finished run of the tool.
struct run_result {
    int code = -1;
    std::string out;
    std::string err;
};

/// A run of a program still going: its pid and where its output goes.
struct running_program {
    pid_t pid = -1;
    procreg_test::temp_dir capture;
    std::string out_path() const { return (capture / "out").string(); }
    std::string err_path() const { return (capture / "err").string(); }
};

/// Starts `program args...` (stdin /dev/null), stdout and stderr to files.
inline void start_program_into(running_program& run, const std::string& program,
                               const std::vector<std::string>& args) {
    const std::string out_path = run.out_path();
    const std::string err_path = run.err_path();
    run.pid = procreg_test::spawn([&] {
        const int in = ::open("/dev/null", O_RDONLY);
        const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (in < 0 || out < 0 || err < 0) return 71;
        ::dup2(in, 0);
        ::dup2(out, 1);
        ::dup2(err, 2);
        std::vector<std::string> storage{program};
        storage.insert(storage.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& arg : storage) argv.push_back(arg.data());
        argv.push_back(nullptr);
        ::execv(program.c_str(), argv.data());
        return 72;
    });
}

/// Waits for `run` to end and collects what it printed.
inline run_result finish(running_program& run) {
    run_result result;
    result.code = procreg_test::wait_exit(run.pid);
    result.out = procreg_test::read_text(run.out_path());
    result.err = procreg_test::read_text(run.err_path());
    return result;
}

/// Runs `program args...` (stdin /dev/null) to completion.
inline run_result run_program(const std::string& program, const std::vector<std::string>& args) {
    running_program run;
    start_program_into(run, program, args);
    return finish(run);
}

/// Runs `procreg args...` to completion.
inline run_result run_tool(const std::vector<std::string>& args) { return run_program(PROCREG_TOOL, args); }

/// Starts `procreg args...` without waiting for it (`finish` collects it).
inline void start_tool_into(running_program& run, const std::vector<std::string>& args) {
    start_program_into(run, PROCREG_TOOL, args);
}

/// The tool's stdout parsed as one JSON object (throws when it is not one).
inline boost::json::object json_of(const run_result& r) {
    boost::json::value parsed = boost::json::parse(r.out);
    if (!parsed.is_object()) throw std::runtime_error("not a JSON object: " + r.out);
    return parsed.as_object();
}

/// How many pidfds process `pid` holds. The tool's watcher opens one per
/// live owner right after its first read, so a count reached means the tool
/// has its starting point and sees every later change.
inline std::size_t pidfds_of(pid_t pid) {
    std::size_t n = 0;
    std::error_code ec;
    std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec);
    for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
        std::error_code link_ec;
        if (std::filesystem::read_symlink(it->path(), link_ec).string() == "anon_inode:[pidfd]") ++n;
    }
    return n;
}

/// Whether `holds()` becomes true within 30 s (checked every 5 ms).
template <class Predicate>
bool eventually(Predicate&& holds) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!holds()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
}

/// The number of lines in `text`.
inline std::size_t line_count(const std::string& text) {
    std::size_t n = 0;
    for (const char c : text) n += c == '\n';
    return n;
}

/// Every line of `text`, parsed as a JSON object (`watch --json`).
inline std::vector<boost::json::object> json_lines(const std::string& text) {
    std::vector<boost::json::object> out;
    std::size_t start = 0;
    for (std::size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
        out.push_back(boost::json::parse(text.substr(start, end - start)).as_object());
    }
    return out;
}

/// `records` of an `ls --json` result, by key.
inline const boost::json::object* record_with_key(const boost::json::object& ls, const std::string& key) {
    for (const auto& item : ls.at("records").as_array()) {
        if (item.as_object().at("key").as_string() == key) return &item.as_object();
    }
    return nullptr;
}

}  // namespace procreg_cli_test
