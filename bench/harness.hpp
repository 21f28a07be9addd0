// bench/harness.hpp — timing, media and output helpers for procreg_bench.
//
// A plain harness rather than Google Benchmark: every operation here is a
// whole transaction (lock, read, write, rename, unlock) whose cost ranges
// from microseconds to a fraction of a second, the state must be set up
// between timed calls (a record to reap, a key to erase), and the numbers
// of three implementations must come from the same run. So each figure is
// the median of a bounded number of timed calls, with untimed set-up steps
// between them.
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

namespace procreg_bench {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

/// Seconds since `start`, as a double.
inline double seconds_since(clock_type::time_point start) {
    return std::chrono::duration<double>(clock_type::now() - start).count();
}

/// How long and how often one figure is measured.
struct sampling {
    int min_reps = 5;       ///< at least this many timed calls
    int max_reps = 400;     ///< at most this many
    double budget_s = 0.2;  ///< stop after this much wall time once min_reps are done
};

/// Times `timed()` repeatedly, calling `setup()` (untimed) before each call,
/// and returns the median in microseconds. One untimed warm-up call first.
inline double median_us(const sampling& how, const std::function<void()>& setup,
                        const std::function<void()>& timed, int* reps_out = nullptr) {
    if (setup) setup();
    timed();  // warm-up: first-touch page faults, cold caches
    std::vector<double> samples;
    const auto start = clock_type::now();
    while (static_cast<int>(samples.size()) < how.max_reps) {
        if (static_cast<int>(samples.size()) >= how.min_reps && seconds_since(start) > how.budget_s) break;
        if (setup) setup();
        const auto t0 = clock_type::now();
        timed();
        samples.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
    }
    std::sort(samples.begin(), samples.end());
    if (reps_out) *reps_out = static_cast<int>(samples.size());
    const std::size_t mid = samples.size() / 2;
    return samples.size() % 2 ? samples[mid] : (samples[mid - 1] + samples[mid]) / 2;
}

/// Where one medium's files go.
struct medium {
    std::string name;  ///< "tmpfs" or "disk"
    fs::path dir;      ///< a private directory created for this run
    bool durable;      ///< fsync on (disk) or off (tmpfs)
    std::string fs_type;
};

/// The filesystem type of `path` ("tmpfs", "ext4", ... or the magic in hex).
inline std::string filesystem_type(const fs::path& path) {
    struct ::statfs st {};
    if (::statfs(path.c_str(), &st) != 0) return "unknown";
    switch (static_cast<unsigned long>(st.f_type)) {
    case 0x01021994UL: return "tmpfs";
    case 0xEF53UL: return "ext4";
    case 0x58465342UL: return "xfs";
    case 0x9123683EUL: return "btrfs";
    case 0x794c7630UL: return "overlayfs";
    case 0x6969UL: return "nfs";
    case 0x2FC12FC1UL: return "zfs";
    case 0x65735546UL: return "fuse";
    default: {
        char buf[32];
        std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(st.f_type));
        return buf;
    }
    }
}

/// mkdtemp under `parent` (created when missing), mode 0700.
inline fs::path make_private_dir(const fs::path& parent, const std::string& stem) {
    fs::create_directories(parent);
    std::string pattern = (parent / (stem + "-XXXXXX")).string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp " + pattern + ": " + std::strerror(errno));
    ::chmod(pattern.c_str(), 0700);
    return pattern;
}

/// The first line of `path` matching `prefix`, without the prefix (trimmed).
inline std::string first_line_value(const fs::path& path, const std::string& prefix) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
        if (line.compare(0, prefix.size(), prefix) == 0) {
            std::string value = line.substr(prefix.size());
            const auto colon = value.find(':');
            if (colon != std::string::npos) value = value.substr(colon + 1);
            const auto first = value.find_first_not_of(" \t");
            return first == std::string::npos ? std::string() : value.substr(first);
        }
    }
    return {};
}

/// A short description of the machine: nproc, CPU model, kernel.
struct machine_info {
    long cpus = 0;
    std::string cpu_model;
    std::string kernel;
    std::string memory;
};

inline machine_info describe_machine() {
    machine_info out;
    out.cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
    out.cpu_model = first_line_value("/proc/cpuinfo", "model name");
    struct ::utsname u {};
    if (::uname(&u) == 0) out.kernel = std::string(u.sysname) + " " + u.release + " " + u.machine;
    out.memory = first_line_value("/proc/meminfo", "MemTotal");
    return out;
}

/// JSON string literal for `s` (ASCII text only in this program).
inline std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (const char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

/// A number with a few significant digits, or null.
inline std::string json_number(std::optional<double> value) {
    if (!value) return "null";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.6g", *value);
    return buf;
}

/// A figure for a Markdown cell: "12.3", "1234", or "—".
inline std::string cell(std::optional<double> us) {
    if (!us) return "—";
    char buf[64];
    if (*us >= 1000) {
        std::snprintf(buf, sizeof buf, "%.0f", *us);
    } else if (*us >= 10) {
        std::snprintf(buf, sizeof buf, "%.1f", *us);
    } else {
        std::snprintf(buf, sizeof buf, "%.2f", *us);
    }
    return buf;
}

/// "1.23×" for a/b, or "—".
inline std::string ratio_cell(std::optional<double> a, std::optional<double> b) {
    if (!a || !b || *b <= 0) return "—";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f×", *a / *b);
    return buf;
}

}  // namespace procreg_bench
