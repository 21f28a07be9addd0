// fuzz/fuzz_support.hpp — what every procreg libFuzzer harness shares.
//
// A harness writes the fuzz input to a real file in a private directory and
// runs procreg's real read path on it (the same descriptors, size checks and
// parser a registry uses). What a harness asserts, beyond "no crash and no
// sanitizer report":
// - the only exception that may escape procreg is `procreg::error`, with a
//   code that a file's contents can cause (`expect_error`);
// - a file that does not load is left byte for byte as it was;
// - what loads survives a save and a reload unchanged (checked per harness).
// A failed assertion prints what broke and aborts, which libFuzzer reports
// as a crash and saves the input.
//
// The directory (`procreg-fuzz-<pid>-XXXXXX`) is made once per process with
// mkdtemp (0700, so detail::open_directory accepts it) under
// $PROCREG_FUZZ_TMP, else /dev/shm (tmpfs keeps the executions per second
// up), else $TMPDIR or /tmp. It is removed at a normal exit, and otherwise
// by the next harness started there once this process is gone.
#pragma once

#include <procreg/error.hpp>

#include <boost/json.hpp>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

namespace procreg_fuzz {

/// Prints `what` and aborts: libFuzzer saves the input as a crash.
[[noreturn]] inline void fail(const std::string& what) {
    std::fprintf(stderr, "procreg fuzz assertion failed: %s\n", what.c_str());
    std::fflush(stderr);
    std::abort();
}

/// Aborts with the message `what` (an expression, evaluated only on
/// failure, so building it costs nothing per execution) unless `condition` holds.
#define PROCREG_FUZZ_CHECK(condition, what)      \
    do {                                          \
        if (!(condition)) ::procreg_fuzz::fail(what); \
    } while (0)

/// The process's private directory (created at the first call, removed at exit).
inline const std::filesystem::path& work_dir() {
    static const std::filesystem::path dir = [] {
        std::string base;
        if (const char* env = std::getenv("PROCREG_FUZZ_TMP"); env && *env) {
            base = env;
        } else if (::access("/dev/shm", W_OK | X_OK) == 0) {
            base = "/dev/shm";
        } else if (const char* tmp = std::getenv("TMPDIR"); tmp && *tmp) {
            base = tmp;
        } else {
            base = "/tmp";
        }
        // libFuzzer leaves with _Exit when its time is up, so atexit cleanup
        // does not run: remove the directories of harnesses that are gone.
        const std::string prefix = "procreg-fuzz-";
        std::error_code ignored;
        for (const auto& entry : std::filesystem::directory_iterator(base, ignored)) {
            const std::string name = entry.path().filename().string();
            if (name.compare(0, prefix.size(), prefix) != 0) continue;
            const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
            if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
                std::filesystem::remove_all(entry.path(), ignored);
            }
        }
        std::string pattern = base + "/" + prefix + std::to_string(::getpid()) + "-XXXXXX";
        if (!::mkdtemp(pattern.data())) fail("mkdtemp in " + base + " failed: " + std::strerror(errno));
        std::atexit([] {
            std::error_code ignored_at_exit;
            std::filesystem::remove_all(work_dir(), ignored_at_exit);
        });
        return std::filesystem::path(pattern);
    }();
    return dir;
}

/// A fresh 0700 subdirectory `name` of the work directory, emptied.
inline std::filesystem::path fresh_dir(const std::string& name) {
    const std::filesystem::path dir = work_dir() / name;
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
    if (::mkdir(dir.c_str(), 0700) != 0) fail("mkdir " + dir.string() + ": " + std::strerror(errno));
    return dir;
}

/// Replaces `path` with exactly `bytes` (mode 0600).
inline void write_file(const std::filesystem::path& path, std::string_view bytes) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) fail("open " + path.string() + ": " + std::strerror(errno));
    while (!bytes.empty()) {
        const ssize_t put = ::write(fd, bytes.data(), bytes.size());
        if (put <= 0) fail("write " + path.string() + ": " + std::strerror(errno));
        bytes.remove_prefix(static_cast<std::size_t>(put));
    }
    ::close(fd);
}

/// The contents of `path`, or nothing when it does not exist.
inline std::optional<std::string> read_file(const std::filesystem::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT) return std::nullopt;
        fail("open " + path.string() + ": " + std::strerror(errno));
    }
    std::string out;
    char buffer[8192];
    for (;;) {
        const ssize_t got = ::read(fd, buffer, sizeof buffer);
        if (got < 0) fail("read " + path.string() + ": " + std::strerror(errno));
        if (got == 0) break;
        out.append(buffer, static_cast<std::size_t>(got));
    }
    ::close(fd);
    return out;
}

/// Aborts unless `path` still holds exactly `bytes`.
inline void check_untouched(const std::filesystem::path& path, std::string_view bytes, const std::string& after) {
    const auto now = read_file(path);
    PROCREG_FUZZ_CHECK(now.has_value(), path.string() + " disappeared after " + after);
    PROCREG_FUZZ_CHECK(*now == bytes, path.string() + " was modified by " + after);
}

/// Aborts unless `e` has one of `allowed` (the codes a file's contents may cause here).
inline void expect_error(const procreg::error& e, std::initializer_list<procreg::errc> allowed, const char* step) {
    for (const auto code : allowed) {
        if (e.code() == code) return;
    }
    fail(std::string(step) + " threw an unexpected procreg::error: " + e.what());
}

/// Runs `body`, letting only `procreg::error` through to `on_error`;
/// anything else thrown is a finding.
template <class Body, class OnError>
void guarded(const char* step, Body&& body, OnError&& on_error) {
    try {
        body();
    } catch (const procreg::error& e) {
        on_error(e);
    } catch (const std::exception& e) {
        fail(std::string(step) + " threw something other than procreg::error: " + e.what());
    } catch (...) {
        fail(std::string(step) + " threw a non-standard exception");
    }
}

/// An `on_error` for `guarded` where no file contents may make `step` throw
/// (only an I/O failure could): any procreg::error is a finding.
inline auto no_error(const char* step) {
    return [step](const procreg::error& e) { fail(std::string(step) + " threw for a file's contents: " + e.what()); };
}

/// Two records are the same when they encode to the same JSON.
template <class Record>
bool same_record(const Record& a, const Record& b) {
    return boost::json::value_from(a) == boost::json::value_from(b);
}

/// The record as JSON text, for messages.
template <class Record>
std::string show(const Record& r) {
    return boost::json::serialize(boost::json::value_from(r));
}

}  // namespace procreg_fuzz
