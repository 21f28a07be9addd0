// tests/cli/tool_runner.hpp — runs the `procreg` program as a real process.
//
// The program's path comes from CMake (PROCREG_TOOL). stdout and stderr go
// to files in a private directory, so a large output cannot block the child
// on a full pipe while the test waits for it.
#pragma once

#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <boost/json.hpp>

#include <filesystem>
#include <stdexcept>
#include <string>
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

/// Runs `program args...` (stdin /dev/null) to completion.
inline run_result run_program(const std::string& program, const std::vector<std::string>& args) {
    procreg_test::temp_dir capture;
    const std::string out_path = (capture / "out").string();
    const std::string err_path = (capture / "err").string();
    const pid_t pid = procreg_test::spawn([&] {
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
    run_result result;
    result.code = procreg_test::wait_exit(pid);
    result.out = procreg_test::read_text(out_path);
    result.err = procreg_test::read_text(err_path);
    return result;
}

/// Runs `procreg args...` to completion.
inline run_result run_tool(const std::vector<std::string>& args) { return run_program(PROCREG_TOOL, args); }

/// The tool's stdout parsed as one JSON object (throws when it is not one).
inline boost::json::object json_of(const run_result& r) {
    boost::json::value parsed = boost::json::parse(r.out);
    if (!parsed.is_object()) throw std::runtime_error("not a JSON object: " + r.out);
    return parsed.as_object();
}

/// The number of lines in `text`.
inline std::size_t line_count(const std::string& text) {
    std::size_t n = 0;
    for (const char c : text) n += c == '\n';
    return n;
}

/// `records` of an `ls --json` result, by key.
inline const boost::json::object* record_with_key(const boost::json::object& ls, const std::string& key) {
    for (const auto& item : ls.at("records").as_array()) {
        if (item.as_object().at("key").as_string() == key) return &item.as_object();
    }
    return nullptr;
}

}  // namespace procreg_cli_test
