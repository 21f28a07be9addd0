// tests/support/temp_dir.hpp — a private temporary directory per test, removed afterwards.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

#include <sys/stat.h>
#include <unistd.h>

namespace procreg_test {

/// A fresh 0700 directory under $TMPDIR (or /tmp); removed with its contents on destruction.
class temp_dir {
public:
    temp_dir() {
        const char* base = std::getenv("TMPDIR");
        std::string pattern = std::string(base && *base ? base : "/tmp") + "/procreg-test-XXXXXX";
        if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
        path_ = pattern;
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    ~temp_dir() {
        remove_named_mutex_segments_under(path_);
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }

    /// Removes the shared-memory segments of named_mutex_lock registries
    /// whose lock path lies under `dir`. procreg never removes a segment by
    /// itself (see lock/named_mutex_lock.hpp); tests create thousands. The
    /// segment records its canonical lock path, so only this directory's
    /// segments are touched, even while other tests run in parallel.
    static void remove_named_mutex_segments_under(const std::filesystem::path& dir) noexcept {
        try {
            std::error_code ec;
            const std::string needle = dir.string() + "/";
            std::filesystem::directory_iterator it("/dev/shm", ec);
            for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
                const std::string name = it->path().filename().string();
                if (name.rfind("procreg-", 0) != 0 || !it->is_regular_file(ec)) continue;
                std::ifstream in(it->path(), std::ios::binary);
                const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
                std::error_code ignored;
                if (bytes.find(needle) != std::string::npos) std::filesystem::remove(it->path(), ignored);
            }
        } catch (...) {
            // cleanup is best effort; a leftover segment harms no test
        }
    }

    const std::filesystem::path& path() const noexcept { return path_; }
    std::filesystem::path operator/(const std::filesystem::path& rest) const { return path_ / rest; }

private:
    std::filesystem::path path_;
};

/// The whole contents of `path` (throws if it cannot be read).
inline std::string read_text(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path.string());
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// Writes `text` to `path`, replacing it.
inline void write_text(const std::filesystem::path& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write " + path.string());
    out << text;
}

/// Permission bits of `path` (& 0777).
inline unsigned mode_of(const std::filesystem::path& path) {
    struct ::stat st {};
    if (::stat(path.c_str(), &st) != 0) throw std::runtime_error("cannot stat " + path.string());
    return st.st_mode & 0777u;
}

}  // namespace procreg_test
