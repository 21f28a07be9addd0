// Hostile files, for every storage: what another local user, a confused
// program or a corrupt disk can put in a registry's place is refused with a
// clear error, and whatever it points at or holds is left untouched.
//
// Already proven elsewhere, not repeated here (docs/reliability.md lists them):
// json_table's symlinked registry file, lock file and directory, its
// group/world-writable directory, and its depth limit, oversized file, NUL
// bytes, wrong types and duplicate record keys (tests/unit/core_test.cpp);
// record_files' symlinked root (tests/unit/record_files_test.cpp); the
// named mutex's segment owner and mode (tests/policy/named_mutex_test.cpp).
//
// Built with PROCREG_FAULT_INJECTION only to reach the moment just before a
// temp file is created: the hook sees the name (sys::intercepted_name) and
// plants a symlink there, which no attacker could do by guessing (the name
// holds the pid, a counter and clock noise) — the strongest form of the
// attack. O_CREAT|O_EXCL|O_NOFOLLOW never follows it.
#define BOOST_TEST_MODULE hostile_files
#include <boost/test/unit_test.hpp>

#include <procreg/presets/agentmux.hpp>
#include <procreg/presets/algocline.hpp>
#include <procreg/presets/insomnia.hpp>
#include <procreg/presets/trusty.hpp>
#include <procreg/presets/yoi.hpp>
#include <procreg/lock/named_mutex_lock.hpp>

#include "../support/fault_injection.hpp"
#include "../support/process.hpp"
#include "../support/temp_dir.hpp"

#include <boost/json.hpp>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;
namespace sys = procreg::detail::sys;
using procreg_test::read_text;
using procreg_test::temp_dir;
using procreg_test::write_text;

namespace {

const std::uint32_t live_pid = static_cast<std::uint32_t>(::getpid());
const std::uint32_t gone_pid = static_cast<std::uint32_t>(procreg_test::dead_pid());
const std::string precious = "precious bytes that must never change\n";

// The code of the procreg::error `f` throws (none when it does not throw).
std::optional<procreg::errc> code_of(const std::function<void()>& f, std::string* what = nullptr) {
    try {
        f();
    } catch (const procreg::error& e) {
        if (what) *what = e.what();
        return static_cast<procreg::errc>(e.code().value());
    }
    return std::nullopt;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Names of the entries of `dir`, recursively, each with what it is
// (without hidden names such as temp files, when `hidden` is false).
std::string tree(const fs::path& dir, bool hidden = true) {
    std::vector<std::string> out;
    for (const auto& entry : fs::recursive_directory_iterator(dir)) {
        if (!hidden && entry.path().filename().string().front() == '.') continue;
        out.push_back(fs::relative(entry.path(), dir).string() + (entry.is_symlink() ? "@" : entry.is_directory() ? "/" : ""));
    }
    std::sort(out.begin(), out.end());
    std::string joined;
    for (const auto& name : out) joined += name + " ";
    return joined;
}

// ── planting a symlink at the temp file's name, just before it is created ──

struct planter {
    fs::path dir;            // the directory the temp file is made in
    fs::path victim;         // what the planted symlinks point at
    int plant = 0;           // how many temp names to plant at (-1: all)
    std::vector<fs::path> planted;

    static int before(sys::call c, void* self) {
        auto& me = *static_cast<planter*>(self);
        const char* name = sys::intercepted_name();
        if (c != sys::call::open || !name || !contains(name, ".tmp-")) return 0;
        if (me.plant == 0) return 0;
        if (me.plant > 0) --me.plant;
        const fs::path at = me.dir / name;
        if (::symlink(me.victim.c_str(), at.c_str()) == 0) me.planted.push_back(at);
        return 0;  // the real call runs, and meets the symlink
    }
};

// Runs `write` twice: with a symlink planted at its first temp name (it
// must pick another name and succeed), and at every temp name it tries (it
// must fail, having created nothing). The victim is never written, and
// every planted symlink is still a symlink to it or gone (swept).
void temp_name_symlinks_are_never_followed(const fs::path& dir, const std::function<void()>& write,
                                           const std::function<std::string()>& state) {
    const fs::path victim = dir.parent_path() / (dir.filename().string() + "-victim");
    write_text(victim, precious);
    for (const int plant : {1, -1}) {
        BOOST_TEST_CONTEXT((plant == 1 ? "symlink at the first temp name" : "symlink at every temp name")) {
            planter p{dir, victim, plant, {}};
            const std::string before = state();
            std::optional<procreg::errc> failed;
            std::string what;
            {
                procreg_test::faults::hook_guard planting(&planter::before, &p);
                failed = code_of(write, &what);
            }
            BOOST_TEST(!p.planted.empty(), "no temp file was created");
            BOOST_TEST(read_text(victim) == precious);
            for (const auto& link : p.planted) {
                const auto status = fs::symlink_status(link);
                BOOST_TEST((!fs::exists(status) || fs::is_symlink(status)), link.string());
            }
            if (plant == 1) {
                BOOST_TEST(!failed, what);
                BOOST_TEST(state() != before, "the write did not happen");
            } else {
                BOOST_TEST((failed == procreg::errc::io_failure), what);
                BOOST_TEST(contains(what, "temp"), what);
                BOOST_TEST(state() == before, "a failed write changed the registry");
            }
            for (const auto& link : p.planted) {
                std::error_code ignored;
                fs::remove(link, ignored);
            }
        }
    }
}

std::string file_or_absent(const fs::path& file) { return fs::exists(file) ? read_text(file) : "<absent>"; }

bool running_as_root() { return ::geteuid() == 0; }

// Makes `dir` another user's (uid/gid 65534, "nobody"), as root can.
void give_away(const fs::path& dir) { BOOST_TEST_REQUIRE(::chown(dir.c_str(), 65534, 65534) == 0); }

}  // namespace

// ─────────────────────────────────────────────────────────────────────────────
BOOST_AUTO_TEST_SUITE(symlinks)

BOOST_AUTO_TEST_CASE(json_table_temp_name) {
    temp_dir dir;
    const fs::path file = dir / "reg" / "registry.json";
    auto reg = procreg::algocline::open(file);
    reg.insert(procreg::algocline::pool_session::make("a", live_pid, "/run/a", "1"));
    int n = 0;
    temp_name_symlinks_are_never_followed(
        dir / "reg", [&] { reg.insert(procreg::algocline::pool_session::make("n" + std::to_string(n++), live_pid, "/s", "1")); },
        [&] { return read_text(file); });
}

BOOST_AUTO_TEST_CASE(record_files_temp_name) {
    temp_dir dir;
    auto reg = procreg::agentmux::open(dir / "reg");
    int n = 0;
    temp_name_symlinks_are_never_followed(
        dir / "reg", [&] { reg.upsert(procreg::agentmux::agent_record::make("agent-" + std::to_string(n++))); },
        [&] { return tree(dir / "reg", false); });
}

BOOST_AUTO_TEST_CASE(claim_file_temp_name_pid_text) {
    temp_dir dir;
    const fs::path lock = dir / "data" / "daemon.lock";
    fs::create_directories(lock.parent_path());
    temp_name_symlinks_are_never_followed(
        lock.parent_path(),
        [&] {
            auto guard = procreg::trusty::acquire_lock(lock);
            guard.dismiss();  // keep the claim: the state must show the write
        },
        [&] { return file_or_absent(lock); });
}

BOOST_AUTO_TEST_CASE(claim_file_temp_name_json) {
    temp_dir dir;
    const fs::path staging = dir / "ws" / "_staging";
    fs::create_directories(staging);
    write_text(procreg::insomnia::lock_file_path(staging),
               "{\"pid\": " + std::to_string(gone_pid) + ", \"pod_name\": \"ghost\", \"started_at\": \"x\", "
               "\"consumed_ids\": []}");
    temp_name_symlinks_are_never_followed(
        staging, [&] { (void)procreg::insomnia::staging_lock::acquire(staging, gone_pid, "pod", {}); },
        [&] { return file_or_absent(procreg::insomnia::lock_file_path(staging)); });
}

BOOST_AUTO_TEST_CASE(record_files_record_path) {
    temp_dir dir;
    const fs::path root = dir / "reg";
    auto reg = procreg::agentmux::open(root);
    const fs::path victim = dir / "victim.json";
    const std::string victim_bytes = R"({"schema_version": 1, "data": {"instance_id": "evil"}})";
    write_text(victim, victim_bytes);
    fs::create_symlink(victim, root / "evil.json");
    fs::create_symlink(victim, root / "retired" / "ghost.json");

    BOOST_TEST(!reg.find("evil"));
    const auto listing = reg.list_active();
    bool reported = false;
    for (const auto& s : listing.skipped) reported = reported || (s.path == root / "evil.json" && contains(s.reason, "symbolic link"));
    BOOST_TEST(reported);
    BOOST_TEST((reg.upsert(procreg::agentmux::agent_record::make("evil")).status == procreg::upsert_status::skipped));
    BOOST_TEST((code_of([&] { reg.insert(procreg::agentmux::agent_record::make("evil")); }) ==
                procreg::errc::unsupported_file));
    BOOST_TEST((reg.retire("evil").status == procreg::tombstone_status::skipped));
    BOOST_TEST(!reg.erase("evil"));
    BOOST_TEST(reg.reap().empty());
    BOOST_TEST((reg.unretire("ghost").status == procreg::tombstone_status::skipped));
    BOOST_TEST(read_text(victim) == victim_bytes);
    BOOST_TEST(fs::is_symlink(root / "evil.json"));
    BOOST_TEST(fs::is_symlink(root / "retired" / "ghost.json"));
    // hard_delete removes the links themselves, never what they point at.
    BOOST_TEST(reg.hard_delete("evil"));
    BOOST_TEST(reg.hard_delete("ghost"));
    BOOST_TEST(!fs::exists(fs::symlink_status(root / "evil.json")));
    BOOST_TEST(read_text(victim) == victim_bytes);
}

BOOST_AUTO_TEST_CASE(record_files_lock_and_retired_directory) {
    temp_dir dir;
    const fs::path root = dir / "reg";
    { auto reg = procreg::agentmux::open(root); }
    const fs::path victim = dir / "victim";
    write_text(victim, precious);
    fs::create_symlink(victim, root / ".registry.lock");
    auto reg = procreg::agentmux::open(root);
    BOOST_TEST((code_of([&] { reg.upsert(procreg::agentmux::agent_record::make("a")); }) == procreg::errc::unsafe_path));
    BOOST_TEST((code_of([&] { (void)reg.list_active(); }) == procreg::errc::unsafe_path));
    BOOST_TEST(read_text(victim) == precious);
    BOOST_TEST(!fs::exists(root / "a.json"));

    // The tombstone directory swapped for a symlink to elsewhere.
    const fs::path other = dir / "other";
    fs::create_directory(other, root);
    fs::permissions(other, fs::perms::owner_all);
    const fs::path root2 = dir / "reg2";
    fs::create_directory(root2);
    fs::permissions(root2, fs::perms::owner_all);
    fs::create_directory_symlink(other, root2 / "retired");
    std::string what;
    BOOST_TEST((code_of([&] { (void)procreg::agentmux::open(root2); }, &what) == procreg::errc::unsafe_path));
    BOOST_TEST(contains(what, "symbolic link"), what);
    BOOST_TEST(fs::is_empty(other));
}

BOOST_AUTO_TEST_CASE(claim_file_claim_lock_and_directory) {
    temp_dir dir;
    const fs::path data = dir / "data";
    fs::create_directories(data);
    fs::permissions(data, fs::perms::owner_all);
    const fs::path victim = dir / "victim";

    // The claim path: a symlink to a stale-looking pid file. Following it
    // would "take over" the victim and write our pid into it.
    write_text(victim, std::to_string(gone_pid) + "\n");
    fs::create_symlink(victim, data / "daemon.lock");
    std::string what;
    BOOST_TEST((code_of([&] { (void)procreg::trusty::acquire_lock(data / "daemon.lock"); }, &what) ==
                procreg::errc::unsafe_path));
    BOOST_TEST(contains(what, "symbolic link"), what);
    BOOST_TEST((code_of([&] { (void)procreg::trusty::read_lock_pid(data / "daemon.lock"); }) == procreg::errc::unsafe_path));
    BOOST_TEST(read_text(victim) == std::to_string(gone_pid) + "\n");
    BOOST_TEST(fs::is_symlink(data / "daemon.lock"));

    const fs::path staging = dir / "ws" / "_staging";
    fs::create_directories(staging);
    fs::permissions(staging, fs::perms::owner_all);
    fs::create_symlink(victim, procreg::insomnia::lock_file_path(staging));
    BOOST_TEST((code_of([&] { (void)procreg::insomnia::staging_lock::acquire(staging, live_pid, "pod", {}); }) ==
                procreg::errc::unsafe_path));
    BOOST_TEST(read_text(victim) == std::to_string(gone_pid) + "\n");

    // The registry lock beside the claim.
    fs::remove(data / "daemon.lock");
    fs::remove(data / ".daemon.lock.flock");
    write_text(victim, precious);
    fs::create_symlink(victim, data / ".daemon.lock.flock");
    BOOST_TEST((code_of([&] { (void)procreg::trusty::acquire_lock(data / "daemon.lock"); }) == procreg::errc::unsafe_path));
    BOOST_TEST(read_text(victim) == precious);
    BOOST_TEST(!fs::exists(data / "daemon.lock"));

    // The claim's directory.
    fs::create_directory_symlink(data, dir / "linked");
    BOOST_TEST((code_of([&] { (void)procreg::trusty::acquire_lock(dir / "linked" / "daemon.lock"); }) ==
                procreg::errc::unsafe_path));
    BOOST_TEST((code_of([&] { (void)procreg::trusty::read_lock_pid(dir / "linked" / "daemon.lock"); }) ==
                procreg::errc::unsafe_path));
}

BOOST_AUTO_TEST_CASE(named_mutex_segment) {
    // The named mutex's "lock file" is its shared-memory segment,
    // /dev/shm/procreg-<hash of the lock directory's identity>: a symlink
    // there is refused.
    temp_dir dir;
    fs::create_directory(dir / "reg");  // the segment is named after it: it must exist
    const fs::path lock_path = dir / "reg" / "registry.lock";
    const fs::path segment = fs::path("/dev/shm") / procreg::lock::named_mutex_lock::segment_name(lock_path);
    const fs::path victim = dir / "victim";
    write_text(victim, precious);
    fs::create_symlink(victim, segment);
    std::string what;
    BOOST_TEST((code_of([&] { procreg::lock::named_mutex_lock lock(lock_path); }, &what) == procreg::errc::unsafe_path));
    BOOST_TEST(contains(what, "symbolic link"), what);
    BOOST_TEST(read_text(victim) == precious);
    BOOST_TEST(fs::is_symlink(segment));
    fs::remove(segment);
}

BOOST_AUTO_TEST_SUITE_END()

// ─────────────────────────────────────────────────────────────────────────────
BOOST_AUTO_TEST_SUITE(directories)

// Each storage refuses a directory other users can write, and (as root) one
// owned by another user, naming the directory and the cause; the opt-out
// `directory_policy::allow_shared` accepts both.
struct storage_case {
    const char* name;
    // Opens the storage on `dir` (which exists) with `allow_shared`.
    std::function<void(const fs::path& dir, bool allow_shared)> open;
};

std::vector<storage_case> storages() {
    return {
        {"json_table",
         [](const fs::path& dir, bool shared) {
             auto opts = procreg::algocline::options(dir / "registry.json");
             opts.directory.allow_shared = shared;
             opts.directory.tighten_own = false;  // json_table's own rule (the algocline preset tightens)
             procreg::algocline::open(opts).insert(procreg::algocline::pool_session::make("a", live_pid, "/s", "1"));
         }},
        {"record_files root",
         [](const fs::path& dir, bool shared) {
             auto opts = procreg::agentmux::options(dir);
             opts.directory.allow_shared = shared;
             procreg::agentmux::open(opts).upsert(procreg::agentmux::agent_record::make("a"));
         }},
        {"claim_file",
         [](const fs::path& dir, bool shared) {
             auto opts = procreg::trusty::options(dir / "daemon.lock");
             opts.directory.allow_shared = shared;
             procreg::trusty::open(opts).acquire(procreg::trusty::daemon_lock_record{live_pid}).dismiss();
         }},
    };
}

void refused_then_allowed(const storage_case& s, const fs::path& dir, const std::string& cause) {
    BOOST_TEST_CONTEXT(s.name << ", " << cause) {
        std::string what;
        BOOST_TEST((code_of([&] { s.open(dir, false); }, &what) == procreg::errc::unsafe_path));
        BOOST_TEST(contains(what, dir.string()), what);
        BOOST_TEST(contains(what, cause), what);
        BOOST_TEST(fs::is_empty(dir), "something was written in a refused directory");
        BOOST_CHECK_NO_THROW(s.open(dir, true));
    }
}

BOOST_AUTO_TEST_CASE(writable_by_group_or_others_is_refused_unless_allowed) {
    temp_dir base;
    for (const auto& s : storages()) {
        for (const auto mode : {0777, 0770, 0702}) {
            const fs::path dir = base / (std::string(s.name).substr(0, 4) + std::to_string(mode));
            fs::create_directory(dir);
            ::chmod(dir.c_str(), static_cast<mode_t>(mode));
            refused_then_allowed(s, dir, "writable by group or others");
        }
    }
}

BOOST_AUTO_TEST_CASE(owned_by_another_user_is_refused_unless_allowed) {
    if (!running_as_root()) {
        BOOST_TEST_MESSAGE("not root: cannot give a directory to another user; skipped");
        return;
    }
    temp_dir base;
    for (const auto& s : storages()) {
        const fs::path dir = base / (std::string(s.name).substr(0, 4) + "-nobody");
        fs::create_directory(dir);
        ::chmod(dir.c_str(), 0700);
        give_away(dir);
        refused_then_allowed(s, dir, "owned by uid 65534");
    }
}

BOOST_AUTO_TEST_CASE(record_files_retired_directory_is_checked_too) {
    temp_dir base;
    const fs::path root = base / "reg";
    fs::create_directories(root / "retired");
    ::chmod(root.c_str(), 0700);
    ::chmod((root / "retired").c_str(), 0777);
    std::string what;
    BOOST_TEST((code_of([&] { (void)procreg::agentmux::open(root); }, &what) == procreg::errc::unsafe_path));
    BOOST_TEST(contains(what, (root / "retired").string()), what);
    if (running_as_root()) {
        ::chmod((root / "retired").c_str(), 0700);
        give_away(root / "retired");
        BOOST_TEST((code_of([&] { (void)procreg::agentmux::open(root); }, &what) == procreg::errc::unsafe_path));
        BOOST_TEST(contains(what, "owned by uid 65534"), what);
    }
}

BOOST_AUTO_TEST_CASE(claim_peek_without_the_lock_checks_the_directory) {
    temp_dir base;
    const fs::path dir = base / "data";
    fs::create_directory(dir);
    ::chmod(dir.c_str(), 0777);
    write_text(dir / "daemon.lock", "42\n");
    BOOST_TEST((code_of([&] { (void)procreg::trusty::read_lock_pid(dir / "daemon.lock"); }) == procreg::errc::unsafe_path));
}

BOOST_AUTO_TEST_SUITE_END()

// ─────────────────────────────────────────────────────────────────────────────
BOOST_AUTO_TEST_SUITE(keys)

const std::vector<std::string> hostile_keys = {
    "../escape", "..", ".", "", "a/b", "/etc/passwd", std::string("x\0y", 3), ".hidden", "-rf", "a b",
    "..\\x", std::string(129, 'k'), "\xc3\xa9t\xc3\xa9", "x\n{\"forged\": 1}",
};

// Under the strict pattern (record_files' default) every hostile key is
// refused; under record_key_rule::file_name (the AgentMux preset, whose seed
// accepts any file name) those that are safe file names are accepted
// (tests/seed/agentmux_test.cpp) and the rest refused the same way.
BOOST_AUTO_TEST_CASE(record_files_rejects_traversal_keys_in_every_operation) {
    for (const auto rule : {procreg::detail::record_key_rule::pattern, procreg::detail::record_key_rule::file_name}) {
        temp_dir dir;
        const fs::path root = dir / "in" / "reg";
        auto opts = procreg::agentmux::options(root);
        opts.key_rule = rule;
        auto reg = procreg::agentmux::open(opts);
        (void)reg.list_active();  // creates the lock file
        const std::string before = tree(dir.path());
        for (const auto& key : hostile_keys) {
            if (rule == procreg::detail::record_key_rule::file_name &&
                !procreg::detail::file_name_key_problem(key, opts.max_key_length)) {
                continue;
            }
            BOOST_TEST_CONTEXT("key " << procreg::detail::quote_record_key(key)) {
                const auto rec = procreg::agentmux::agent_record::make(key);
                const std::vector<std::pair<const char*, std::function<void()>>> ops = {
                    {"insert", [&] { reg.insert(rec); }},
                    {"upsert", [&] { reg.upsert(rec); }},
                    {"find", [&] { (void)reg.find(key); }},
                    {"erase", [&] { (void)reg.erase(key); }},
                    {"retire", [&] { (void)reg.retire(key); }},
                    {"unretire", [&] { (void)reg.unretire(key); }},
                    {"hard_delete", [&] { (void)reg.hard_delete(key); }},
                    {"exists", [&] { (void)reg.exists(key); }},
                    {"exists_anywhere", [&] { (void)reg.exists_anywhere(key); }},
                };
                for (const auto& [name, op] : ops) {
                    std::string what;
                    BOOST_TEST((code_of(op, &what) == procreg::errc::invalid_key), name << ": " << what);
                    BOOST_TEST(what.find('\n') == std::string::npos, name << ": the message carries a raw newline");
                }
            }
        }
        BOOST_TEST(tree(dir.path()) == before, "a hostile key created or removed a file");
    }
}

BOOST_AUTO_TEST_CASE(record_files_rejects_a_retired_dir_that_is_not_one_name) {
    temp_dir dir;
    for (const std::string bad : {"../out", "a/b", "..", ".", "", ".retired"}) {
        auto opts = procreg::agentmux::options(dir / "reg");
        opts.retired_dir = bad;
        BOOST_TEST((code_of([&] { (void)procreg::agentmux::open(opts); }) == procreg::errc::invalid_key), bad);
    }
    BOOST_TEST(!fs::exists(dir / "out"));
}

BOOST_AUTO_TEST_CASE(insomnia_consumed_ids_never_name_other_files) {
    // Each consumed id becomes <staging>/<id>.json at release: only UUIDs pass.
    temp_dir dir;
    const fs::path staging = dir / "ws" / "_staging";
    fs::create_directories(staging);
    write_text(dir / "ws" / "keep.json", precious);
    for (const std::string bad : {"../keep", "../../ws/keep", "/etc/passwd", "x", "0196a3b0-0000-7000-8000-00000000000/"}) {
        BOOST_TEST((code_of([&] { (void)procreg::insomnia::staging_lock::acquire(staging, live_pid, "pod", {bad}); }) ==
                    procreg::errc::invalid_key),
                   bad);
    }
    BOOST_TEST(read_text(dir / "ws" / "keep.json") == precious);
    BOOST_TEST(!fs::exists(procreg::insomnia::lock_file_path(staging)));
}

BOOST_AUTO_TEST_CASE(table_keys_are_never_file_names) {
    // json_table keys (algocline session ids, yoi pod names) are strings in
    // one file: a traversal key is stored as text and creates nothing.
    temp_dir dir;
    const fs::path pods = dir / "run" / "pods.json";
    auto reg = procreg::yoi::open(pods);
    reg.transact([](auto& tx) {
        procreg::yoi::register_pod(tx, "../../escape", live_pid, "/run/x.sock",
                                   {procreg::yoi::scope_rule::write("/src", true)}, "seg-1");
    });
    auto sessions = procreg::algocline::open(dir / "run" / "registry.json");
    sessions.insert(procreg::algocline::pool_session::make("../../escape2", live_pid, "/run/y.sock", "1"));
    BOOST_TEST(tree(dir.path()) == "run/ run/pods.json run/pods.lock run/registry.json run/registry.lock ");
    BOOST_TEST(reg.find("../../escape").has_value());
}

BOOST_AUTO_TEST_SUITE_END()

// ─────────────────────────────────────────────────────────────────────────────
BOOST_AUTO_TEST_SUITE(contents)

struct hostile {
    const char* what;       // the attack
    std::string bytes;      // the file
    const char* reason;     // a word the error must contain
};

std::string deep(int levels) { return std::string(static_cast<std::size_t>(levels), '[') + std::string(static_cast<std::size_t>(levels), ']'); }

// Puts each of `files` in the claim file's place and requires `acquire` to
// fail with corrupted_file, its message naming the cause and the file and
// carrying no raw newline from it, and the file to be left untouched.
void hostile_claims_are_clear_errors(const fs::path& file, const std::vector<hostile>& files,
                                     const std::function<void()>& acquire) {
    for (const auto& f : files) {
        BOOST_TEST_CONTEXT(f.what) {
            write_text(file, f.bytes);
            std::string what;
            BOOST_TEST((code_of(acquire, &what) == procreg::errc::corrupted_file));
            BOOST_TEST(contains(what, f.reason), what);
            BOOST_TEST(contains(what, file.string()), what);
            BOOST_TEST(what.find('\n') == std::string::npos, "file bytes reach the message raw: " << what);
            BOOST_TEST(read_text(file) == f.bytes);
        }
    }
}

BOOST_AUTO_TEST_CASE(json_table_duplicate_member_names_are_corruption) {
    // Boost.JSON alone would keep the last "pid" silently; serde (the seed)
    // refuses the file. procreg refuses it, naming the member.
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    const std::string text = R"({"sessions": [{"sid": "a", "pid": 1, "pid": )" + std::to_string(live_pid) +
                             R"(, "sock": "/s", "version": "1", "created_at": "x"}]})";
    write_text(file, text);
    auto reg = procreg::algocline::open(file);
    std::string what;
    BOOST_TEST((code_of([&] { (void)reg.list(); }, &what) == procreg::errc::corrupted_file));
    BOOST_TEST(contains(what, "duplicate member \"pid\""), what);
    BOOST_TEST((code_of([&] { reg.insert(procreg::algocline::pool_session::make("b", live_pid, "/s", "1")); }) ==
                procreg::errc::corrupted_file));
    BOOST_TEST(read_text(file) == text);
}

BOOST_AUTO_TEST_CASE(record_files_skips_hostile_files_and_never_rewrites_them) {
    temp_dir dir;
    const fs::path root = dir / "reg";
    auto opts = procreg::agentmux::options(root);
    opts.max_file_bytes = 4096;
    auto reg = procreg::agentmux::open(opts);
    const std::string ok = R"({"schema_version": 1, "data": {"instance_id": "%"}})";
    const auto with_id = [&](std::string text, const std::string& id) { return text.replace(text.find('%'), 1, id); };
    const std::vector<hostile> files = {
        {"deep", with_id(R"({"schema_version": 1, "data": {"instance_id": "%"}, "x": )", "deep") + deep(100) + "}", "too deep"},
        {"big", with_id(R"({"schema_version": 1, "data": {"instance_id": "%"}, "pad": ")", "big") + std::string(5000, 'x') + "\"}",
         "limit"},
        {"nul", std::string("{\"schema_version\": 1, \"data\": {\"instance_id\": \"nul\"}\0}", 49), "parse"},
        {"dup", R"({"schema_version": 1, "schema_version": 1, "data": {"instance_id": "dup"}})", "duplicate member"},
        {"dupin", R"({"schema_version": 1, "data": {"instance_id": "dupin", "instance_id": "other"}})", "duplicate member"},
        {"array", "[1, 2, 3]", "not a JSON object"},
        {"types", R"({"schema_version": 1, "data": {"instance_id": 42}})", "instance_id"},
        {"schema", R"({"schema_version": "1", "data": {"instance_id": "schema"}})", "schema_version"},
    };
    for (const auto& f : files) write_text(root / (std::string(f.what) + ".json"), f.bytes);
    write_text(root / "fine.json", with_id(ok, "fine"));

    const auto listing = reg.list_active();
    BOOST_TEST(listing.records.size() == 1u);
    for (const auto& f : files) {
        BOOST_TEST_CONTEXT(f.what) {
            const fs::path path = root / (std::string(f.what) + ".json");
            std::string reason;
            for (const auto& s : listing.skipped) {
                if (s.path == path) reason = s.reason;
            }
            BOOST_TEST(contains(reason, f.reason), "skip reason: \"" << reason << "\"");
            BOOST_TEST(!reg.find(f.what));
            BOOST_TEST(!reg.erase(f.what));
            BOOST_TEST(reg.exists(f.what));
            if (std::string(f.what) != "types") {
                // Protected: never overwritten (a parseable record of the
                // wrong shape is, as in the seed, merged over by upsert).
                BOOST_TEST((reg.upsert(procreg::agentmux::agent_record::make(f.what)).status ==
                            procreg::upsert_status::skipped));
            }
            BOOST_TEST(read_text(path) == f.bytes);
            // Retire and unretire move it as the seed does, bytes intact; a
            // file too large to read is never touched.
            const fs::path retired = root / "retired" / (std::string(f.what) + ".json");
            if (std::string(f.what) == "big") {
                BOOST_TEST((reg.retire(f.what).status == procreg::tombstone_status::skipped));
            } else {
                BOOST_TEST((reg.retire(f.what).status == procreg::tombstone_status::moved));
                BOOST_TEST(read_text(retired) == f.bytes);
                BOOST_TEST((reg.unretire(f.what).status == procreg::tombstone_status::moved));
            }
            BOOST_TEST(read_text(path) == f.bytes);
            BOOST_TEST(!fs::exists(retired));
        }
    }
}

// A claim file that is not a claim: with procreg's default
// (unparseable_claim::error) an error naming the cause, file untouched.
BOOST_AUTO_TEST_CASE(claim_file_json_hostile_contents_are_clear_errors) {
    temp_dir dir;
    const fs::path file = dir / "c" / "holder.lock";
    fs::create_directories(file.parent_path());
    procreg::storage::claim_file_options opts;
    opts.file = file;
    opts.max_file_bytes = 4096;
    using storage = procreg::insomnia::consolidation_storage;
    using registry = procreg::registry<procreg::insomnia::lock_record, procreg::lock::flock_lock, storage,
                                       procreg::liveness::kill_liveness>;
    const std::string pid = std::to_string(gone_pid);
    const std::vector<hostile> files = {
        {"deep", R"({"pid": )" + pid + R"(, "pod_name": "p", "started_at": "x", "consumed_ids": [], "x": )" + deep(100) + "}",
         "too deep"},
        {"big", R"({"pid": )" + pid + R"(, "pad": ")" + std::string(5000, 'x') + "\"}", "limit"},
        {"nul", std::string("{\"pid\": 1\0}", 11), "parse"},
        {"types", R"({"pid": "4242", "pod_name": "p", "started_at": "x", "consumed_ids": []})", "pid"},
        {"dup", R"({"pid": )" + pid + R"(, "pid": )" + std::to_string(live_pid) +
                    R"(, "pod_name": "p", "started_at": "x", "consumed_ids": []})",
         "duplicate member \"pid\""},
    };
    hostile_claims_are_clear_errors(file, files, [&] {
        auto claim = procreg::claim<registry, procreg::on_destroy::keep>(std::make_shared<registry>(storage(opts)),
                                                                         procreg::insomnia::claim_key);
        (void)claim.acquire(procreg::insomnia::lock_record{live_pid, "me", "now", {}});
    });
}

BOOST_AUTO_TEST_CASE(claim_file_pid_text_hostile_contents_are_clear_errors) {
    temp_dir dir;
    const fs::path file = dir / "c" / "daemon.lock";
    fs::create_directories(file.parent_path());
    procreg::storage::claim_file_options opts;
    opts.file = file;
    opts.max_file_bytes = 64;
    using registry = procreg::trusty::daemon_registry;
    const std::vector<hostile> files = {
        {"big", std::string(100, '7'), "limit"},
        {"nul", std::string("42\0\n", 4), "not a pid"},
        {"word", "abc\n", "not a pid"},
        {"negative", "-1\n", "not a pid"},
        {"huge", "99999999999999999999999\n", "out of range"},
        {"empty", "", "empty"},
        {"forged log line", "1\n2026-01-01 INFO daemon started as root\n", "not a pid: \"1\\x0a2026"},
    };
    hostile_claims_are_clear_errors(file, files, [&] {
        auto claim = procreg::trusty::daemon_claim(std::make_shared<registry>(procreg::trusty::lock_file_storage(opts)),
                                                   procreg::trusty::claim_key);
        (void)claim.acquire(procreg::trusty::daemon_lock_record{live_pid});
    });
}

BOOST_AUTO_TEST_CASE(the_seeds_unparseable_claims_are_stale_but_oversized_ones_are_refused) {
    // trusty and INSOMNIA treat an unparseable claim as stale (their seeds'
    // rule, reported via skipped_files()); a file above the size limit is
    // still refused unread, never taken over.
    temp_dir dir;
    const fs::path lock = dir / "data" / "daemon.lock";
    fs::create_directories(lock.parent_path());
    write_text(lock, "garbage\n");
    { auto guard = procreg::trusty::acquire_lock(lock); }  // taken over, then released by the guard
    BOOST_TEST(!fs::exists(lock));
    const std::string big((std::size_t{1} << 20) + 1, '1');
    write_text(lock, big);
    std::string what;
    BOOST_TEST((code_of([&] { (void)procreg::trusty::acquire_lock(lock); }, &what) == procreg::errc::corrupted_file));
    BOOST_TEST(contains(what, "limit"), what);
    BOOST_TEST(read_text(lock) == big);
}

BOOST_AUTO_TEST_SUITE_END()
