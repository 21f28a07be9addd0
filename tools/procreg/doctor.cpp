// tools/procreg/doctor.cpp — everything wrong that procreg can see.
//
// Invariant: `doctor` changes nothing without `--fix`, and with it repairs
// only what is provably safe, under the registry's own lock: records and
// claims whose owner is dead (the library's reap), temp files whose writer
// is dead, group/other write bits on the registry's own files. Everything
// else is reported as left, with what to do.
#include "commands.hpp"

#include "listing.hpp"
#include "open_registry.hpp"
#include "output.hpp"

#include <procreg/detail/file_io.hpp>
#include <procreg/detail/temp_files.hpp>
#include <procreg/error.hpp>
#include <procreg/lock/named_mutex_lock.hpp>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>

#include <sys/stat.h>
#include <unistd.h>

namespace procreg_cli {
namespace {

namespace fs = std::filesystem;

struct problem {
    std::string kind;    ///< snake_case: unreadable, skipped_file, dead_record, stale_claim, ...
    std::string path;
    std::string detail;
    bool fixed = false;
};

// A temp file a save left. procreg names its own ".<target>.tmp-<pid>-..."
// (detail/file_io.hpp), so its writer is known; the seeds' writers use
// Rust's tempfile crate (".tmpXXXXXX") or "<name>.tmp", whose writer is
// known only while it holds the file open.
struct temp_file {
    fs::path path;
    std::optional<pid_t> writer;  ///< procreg's own temp files
    bool held_open = false;       ///< another kind, open in some process: a save in progress
};

bool is_foreign_temp_name(const std::string& name) {
    const bool tempfile_crate = name.size() == 10 && name.compare(0, 4, ".tmp") == 0;
    const bool suffixed = name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0;
    return tempfile_crate || suffixed;
}

// Whether any process has the file (device, inode) open: /proc/<pid>/fd/*.
bool open_in_any_process(const struct ::stat& file) {
    std::error_code ec;
    for (fs::directory_iterator proc("/proc", ec), end; !ec && proc != end; proc.increment(ec)) {
        const std::string pid = proc->path().filename().string();
        if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
        std::error_code fd_ec;
        for (fs::directory_iterator fd(proc->path() / "fd", fd_ec); !fd_ec && fd != end; fd.increment(fd_ec)) {
            struct ::stat st {};
            if (::stat(fd->path().c_str(), &st) == 0 && st.st_dev == file.st_dev && st.st_ino == file.st_ino) {
                return true;
            }
        }
    }
    return false;
}

std::vector<temp_file> temp_files_in(const fs::path& dir) {
    std::vector<temp_file> out;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        const auto marker = name.find(".tmp-", 1);
        if (name.size() > 1 && name.front() == '.' && marker != std::string::npos) {
            out.push_back({it->path(), procreg::detail::temp_writer_pid(std::string_view(name).substr(marker + 5))});
            continue;
        }
        struct ::stat st {};
        if (!is_foreign_temp_name(name) || ::lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
        out.push_back({it->path(), std::nullopt, open_in_any_process(st)});
    }
    return out;
}

std::string octal_mode(mode_t mode) {
    char text[8];
    std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
    return text;
}

void check_mode(const fs::path& path, bool is_directory, bool fix, std::vector<problem>& found) {
    struct ::stat st {};
    if (::lstat(path.c_str(), &st) != 0) return;
    if (st.st_uid != ::geteuid()) {
        found.push_back({"unsafe_owner", path.string(),
                         "owned by uid " + std::to_string(st.st_uid) + ", not by uid " + std::to_string(::geteuid()) +
                             " running procreg (another user could replace the registry)"});
    }
    if ((st.st_mode & 022) != 0) {
        problem p{"unsafe_permissions", path.string(),
                  std::string(is_directory ? "directory" : "file") + " writable by group or others (mode " +
                      octal_mode(st.st_mode) + ")"};
        if (fix && !S_ISLNK(st.st_mode) && ::chmod(path.c_str(), st.st_mode & 07755) == 0) p.fixed = true;
        found.push_back(std::move(p));
    }
}

// Records, skipped files, dead owners: under the lock; with `fix`, the
// dead owners' records and the dead writers' `temps` are removed.
void check_records(const target& target_found, bool fix, bool claim,
                   const std::vector<std::pair<temp_file, std::size_t>>& temps, std::vector<problem>& found) {
    const target* t = &target_found;
    try {
        with_registry(*t, [&](auto& reg) {
            reg.transact([&](auto& tx) {
                for (const auto& s : skipped_in(tx)) {
                    found.push_back({claim ? "stale_claim" : "skipped_file", s.path.string(), s.reason});
                }
                std::vector<std::pair<std::string, std::size_t>> dead;  // key, index in `found`
                for (auto& item : tx.list()) {
                    if (!item.record.pid() || item.alive) continue;
                    dead.emplace_back(item.record.key(), found.size());
                    found.push_back({claim ? "stale_claim" : "dead_record", t->path.string(),
                                     (claim ? "claim held by dead pid " : "record " +
                                          procreg::detail::quote_untrusted(item.record.key()) + " owned by dead pid ") +
                                         std::to_string(*item.record.pid())});
                }
                if (fix) {
                    // Under the lock no save runs, so a dead writer's file is
                    // garbage. A claim's seed writers do not take the lock
                    // (trusty renames "daemon.lock.tmp" into place after
                    // closing it): their files are left.
                    for (const auto& [temp, index] : temps) {
                        if (temp.writer || !claim) (void)::unlink(temp.path.c_str());
                    }
                    // The library's reap, in this same transaction (committed when it returns).
                    for (const auto& [key, index] : dead) found[index].fixed = tx.erase(key);
                }
                return 0;
            });
            return 0;
        });
    } catch (const procreg::error& e) {
        found.push_back({"unreadable", t->path.string(), e.what()});
    }
}

void run_checks(const common_options& common, bool fix, std::optional<target>& t, std::vector<problem>& found) {
    try {
        t = resolve(common.target);
    } catch (const procreg::error& e) {
        found.push_back({e.code() == procreg::errc::unsafe_path ? "unsafe_path" : "unreadable",
                         common.target.path.string(), e.what()});
        return;
    }
    const bool directory = t->kind == format::record_files;
    const bool claim = t->kind == format::claim_pid || t->kind == format::claim_json;
    if (t->kind == format::etcd) {
        // No files: no lock file, modes, segments or temp files to look at.
        check_records(*t, fix, claim, {}, found);
        return;
    }
    const fs::path dir = directory ? t->path : (t->path.parent_path().empty() ? fs::path(".") : t->path.parent_path());

    // The lock file: a regular file, or nothing yet.
    struct ::stat st {};
    if (::lstat(t->lock.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
        found.push_back({"lock_not_regular", t->lock.string(),
                         S_ISLNK(st.st_mode) ? "the lock file is a symbolic link; remove it"
                                             : "the lock file is not a regular file; remove it"});
    }
    check_mode(dir, true, fix, found);
    if (!directory) check_mode(t->path, false, fix, found);

    // Named-mutex segments for this registry's lock path.
    try {
        const fs::path segment = fs::path("/dev/shm") / procreg::lock::named_mutex_lock::segment_name(t->lock);
        if (::lstat(segment.c_str(), &st) == 0) {
            found.push_back({"named_mutex_segment", segment.string(),
                             "a named-mutex segment for " + t->lock.string() +
                                 " is left; remove it only when no program uses the registry"});
        }
    } catch (const std::exception&) {
        // No canonical lock path: no segment can exist for it.
    }

    // Temp files, looked for before the registry is opened: opening it
    // removes those of dead writers, as every procreg program does.
    std::vector<std::pair<temp_file, std::size_t>> temps;  // with its index in `found`
    std::vector<fs::path> dirs{dir};
    if (directory) dirs.push_back(dir / "retired");
    for (const auto& d : dirs) {
        for (auto& temp : temp_files_in(d)) {
            const bool writer_alive =
                temp.held_open ||
                (temp.writer && procreg::liveness::pid_alive(static_cast<std::uint64_t>(*temp.writer)));
            if (writer_alive) continue;  // a save in progress, not a leftover
            temps.emplace_back(temp, found.size());
            found.push_back({"temp_file", temp.path.string(),
                             temp.writer ? "left by pid " + std::to_string(*temp.writer) + ", which is dead"
                                         : "left by a writer that is gone (no process has it open)"});
        }
    }

    check_records(*t, fix, claim, temps, found);
    for (const auto& [temp, index] : temps) {
        std::error_code ec;
        if (!fs::exists(fs::symlink_status(temp.path, ec))) found[index].fixed = true;
    }
}

}  // namespace

int cmd_doctor(const common_options& common, bool fix) {
    std::optional<target> t;
    std::vector<problem> found;
    run_checks(common, fix, t, found);
    // Without --fix every finding counts (even a temp file the storage's
    // own sweep removed on opening); with it, only what was left.
    bool left = !fix && !found.empty();
    for (const auto& p : found) left = left || (fix && !p.fixed);
    if (common.json) {
        boost::json::object out{{"path", common.target.path.string()},
                                {"format", t ? boost::json::value(to_string(t->kind)) : boost::json::value(nullptr)}};
        boost::json::array problems;
        for (const auto& p : found) {
            problems.push_back(
                boost::json::object{{"kind", p.kind}, {"path", p.path}, {"detail", p.detail}, {"fixed", p.fixed}});
        }
        out["problems"] = std::move(problems);
        out["clean"] = found.empty();
        print_json(out);
    } else {
        for (const auto& p : found) {
            std::cout << p.kind << '\t' << escape_cell(p.path) << '\t' << escape_cell(p.detail)
                      << (fix ? (p.fixed ? "\tfixed" : "\tleft") : "") << '\n';
        }
        if (found.empty()) std::cerr << "procreg: " << common.target.path.string() << ": no problems found\n";
    }
    return left ? exit_no : exit_ok;
}

}  // namespace procreg_cli
