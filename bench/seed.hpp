// bench/seed.hpp — the seed as a contender (issue 17): where the release
// build of seedio (algocline's own Rust code, tests/interop/rust, module
// bench.rs) is, or why there is none, and a client for its `serve` verb.
//
// The seed's figures come only from the seed's own code paths (lock,
// load_or_default, add/remove/find/scan_and_gc, save); seedio times each
// request itself, from reading it to the operation's return, so the pipe
// round trip to this process is not in the figure. When the seed could not
// be built (no cargo or crates at configure time), `seed_unavailable()` says
// why and the benchmarks print it loudly instead of dropping the column.
#pragma once

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <string>
#include <utility>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace procreg_bench {

/// The release seedio program, or "" when the seed could not be built.
inline std::string seed_program() {
#ifdef PROCREG_SEEDIO_RELEASE
    if (const char* over = std::getenv("PROCREG_BENCH_SEEDIO"); over && *over) return over;
    return PROCREG_SEEDIO_RELEASE;
#else
    return {};
#endif
}

/// Why the seed is missing from this run ("" when it is there).
inline std::string seed_unavailable() {
#ifdef PROCREG_SEEDIO_UNAVAILABLE
    return std::string("seedio was not built: ") + PROCREG_SEEDIO_UNAVAILABLE;
#else
    const std::string program = seed_program();
    if (program.empty()) return "seedio was not configured";
    if (::access(program.c_str(), X_OK) != 0) return program + " is not there (build target procreg_seedio_release)";
    return {};
#endif
}

/// Prints the missing seed as a banner nobody can miss.
inline void shout_seed_unavailable(const std::string& why) {
    const std::string line(78, '!');
    for (std::ostream* out : {&std::cout, &std::cerr}) {
        *out << "\n" << line << "\n!! THE SEED CONTENDER IS MISSING: " << why
             << "\n!! seed_us is null in every row of this run; install cargo and the librust-*-dev crates"
                "\n!! (./run deps) and reconfigure.\n"
             << line << "\n\n";
        out->flush();
    }
}

/// One `seedio bench serve <registry.json>` process: a request a line on its
/// stdin, `ok <µs> <count>` or `err <message>` a line on its stdout.
class seed_server {
public:
    seed_server(const std::string& program, const std::filesystem::path& registry_json) {
        int to[2], from[2];
        if (::pipe2(to, O_CLOEXEC) != 0 || ::pipe2(from, O_CLOEXEC) != 0) {
            throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
        }
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
        if (pid_ == 0) {
            ::dup2(to[0], 0);
            ::dup2(from[1], 1);
            const std::string path = registry_json.string();
            ::execl(program.c_str(), program.c_str(), "bench", "serve", path.c_str(), static_cast<char*>(nullptr));
            std::fprintf(stderr, "exec %s: %s\n", program.c_str(), std::strerror(errno));
            ::_exit(127);
        }
        ::close(to[0]);
        ::close(from[1]);
        in_ = ::fdopen(to[1], "w");
        out_ = ::fdopen(from[0], "r");
        if (!in_ || !out_) throw std::runtime_error("fdopen");
    }
    seed_server(const seed_server&) = delete;
    seed_server& operator=(const seed_server&) = delete;
    ~seed_server() {
        if (in_) std::fclose(in_);  // EOF on its stdin: seedio returns
        if (out_) std::fclose(out_);
        int status = 0;
        if (pid_ > 0) ::waitpid(pid_, &status, 0);
    }

    /// Sends one request; returns (µs the seed measured, count it answered).
    std::pair<double, std::size_t> request(const std::string& line) {
        if (std::fprintf(in_, "%s\n", line.c_str()) < 0 || std::fflush(in_) != 0) {
            throw std::runtime_error("seed: cannot send '" + line + "' (seedio exited?)");
        }
        char buf[4096];
        if (!std::fgets(buf, sizeof buf, out_)) throw std::runtime_error("seed: no answer to '" + line + "'");
        double us = 0;
        unsigned long long count = 0;
        if (std::sscanf(buf, "ok %lf %llu", &us, &count) != 2) {
            std::string answer(buf);
            if (!answer.empty() && answer.back() == '\n') answer.pop_back();
            throw std::runtime_error("seed: '" + line + "' answered: " + answer);
        }
        return {us, static_cast<std::size_t>(count)};
    }

private:
    pid_t pid_ = -1;
    std::FILE* in_ = nullptr;
    std::FILE* out_ = nullptr;
};

}  // namespace procreg_bench
