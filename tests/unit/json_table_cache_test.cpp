// Unit tests of json_table's unchanged-file shortcut (json_table_options::
// reuse_unchanged): a transaction that finds the file it last read or wrote
// does not read it again; any other file (replaced by another registry
// object or process, edited in place, removed) is read afresh, even when it
// has the same size; a transaction that throws or fails to save never leaves
// a modified state behind; and a save that reuses the kept text of
// unchanged records writes byte for byte what a full re-encode writes.
// System calls are counted (and failed) through sys.hpp's seam.
#define BOOST_TEST_MODULE json_table_cache
#include <boost/test/unit_test.hpp>

#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/json_table.hpp>

#include "support/process.hpp"
#include "support/syscall_counter.hpp"
#include "support/temp_dir.hpp"

#include <boost/describe/class.hpp>
#include <boost/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;
namespace sys = procreg::detail::sys;
using procreg_test::read_text;
using procreg_test::temp_dir;
using procreg_test::write_text;

namespace cache_app {
/// A record with a field whose value can change without changing its size.
struct worker {
    std::string name;
    std::int64_t pid = 0;
    std::string state;
    std::optional<std::string> note;
};
BOOST_DESCRIBE_STRUCT(worker, (), (name, pid, state, note))
}  // namespace cache_app

namespace cache_app {
/// A record converted by hand-written tag_invoke that leaves `note` out
/// when it has none: its set of keys varies from one save to the next.
struct tagged {
    std::string name;
    std::int64_t pid = 0;
    std::optional<std::string> note;
};
inline void tag_invoke(boost::json::value_from_tag, boost::json::value& out, const tagged& t) {
    boost::json::object o;
    o["name"] = t.name;
    o["pid"] = t.pid;
    if (t.note) o["note"] = *t.note;
    out = std::move(o);
}
inline tagged tag_invoke(boost::json::value_to_tag<tagged>, const boost::json::value& v) {
    const auto& o = v.as_object();
    tagged t{boost::json::value_to<std::string>(o.at("name")), boost::json::value_to<std::int64_t>(o.at("pid")), {}};
    if (const auto* note = o.if_contains("note")) t.note = boost::json::value_to<std::string>(*note);
    return t;
}
}  // namespace cache_app

template <>
struct procreg::record_traits<cache_app::tagged> {
    static std::string_view key(const cache_app::tagged& t) { return t.name; }
    static std::int64_t pid(const cache_app::tagged& t) { return t.pid; }
};

template <>
struct procreg::record_traits<cache_app::worker> {
    static std::string_view key(const cache_app::worker& w) { return w.name; }
    static std::int64_t pid(const cache_app::worker& w) { return w.pid; }
};

namespace {

using cache_app::worker;
using procreg::storage::json_table;
using procreg::storage::json_table_options;
using registry = procreg::registry<worker, procreg::lock::flock_lock, json_table, procreg::liveness::kill_liveness>;

const std::int64_t live_pid = ::getpid();

using procreg_test::counting;
using procreg_test::syscall_counter;

worker make(const std::string& name, const std::string& state = "idle", std::optional<std::string> note = {}) {
    return worker{name, live_pid, state, std::move(note)};
}

struct fixture {
    temp_dir dir;
    fs::path file = dir / "table" / "registry.json";

    json_table_options options(bool reuse = true) const {
        json_table_options opts;
        opts.file = file;
        opts.array_key = "workers";
        opts.durable = false;  // the cache does not depend on fsync
        opts.reuse_unchanged = reuse;
        return opts;
    }
    registry open(bool reuse = true) const { return registry(json_table(options(reuse))); }

    // The file's text with worker "a"'s state "idle" made "busy": the same
    // size, so only identity and timestamps tell the change.
    std::string with_a_busy() const {
        std::string text = read_text(file);
        const auto at = text.find("\"idle\"");
        BOOST_REQUIRE(at != std::string::npos);
        return text.replace(at, 6, "\"busy\"");
    }

    // The file as the reference encoder writes it: parse and pretty-print
    // the whole object again (what the storage wrote before the shortcut).
    std::string full_reencode() const {
        return procreg::detail::pretty_print(boost::json::parse(read_text(file)));
    }

    // The file after a save by a registry object without the shortcut that
    // rewrites every record (an upsert of each, unchanged). It rewrites a
    // copy: the file under test stays the one its registry wrote, so that
    // registry's next transaction still starts from its kept table.
    std::string rewritten_without_cache() const {
        json_table_options opts = options(false);
        opts.file = dir / "plain" / "registry.json";
        registry plain{json_table(opts)};  // creates the copy's directory, 0700
        fs::copy_file(file, opts.file, fs::copy_options::overwrite_existing);
        plain.transact([](registry::transaction_type& tx) {
            for (const worker& w : tx.records()) tx.upsert(w);
        });
        return read_text(opts.file);
    }
};

// Replaces the file by rename with `text`, as any writer of the format does.
void replace_by_rename(const fs::path& file, const std::string& text) {
    const fs::path temp = file.parent_path() / ".foreign.tmp";
    write_text(temp, text);
    fs::rename(temp, file);
}

// Rewrites the file's bytes in place (same inode), as a careless editor would.
void rewrite_in_place(const fs::path& file, const std::string& text) {
    const int fd = ::open(file.c_str(), O_WRONLY);
    BOOST_REQUIRE(fd >= 0);
    BOOST_REQUIRE(::pwrite(fd, text.data(), text.size(), 0) == static_cast<ssize_t>(text.size()));
    BOOST_REQUIRE(::ftruncate(fd, static_cast<off_t>(text.size())) == 0);
    ::close(fd);
}

std::string state_of(registry& reg, const std::string& name) {
    const auto found = reg.find(name);
    return found ? found->state : std::string("<absent>");
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(json_table_cache, fixture)

BOOST_AUTO_TEST_CASE(unchanged_file_is_not_read_again) {
    auto reg = open();
    reg.insert(make("a"));
    reg.insert(make("b"));
    syscall_counter counter;
    {
        counting on(counter);
        BOOST_TEST(state_of(reg, "a") == "idle");
        BOOST_TEST(reg.list().size() == 2u);
        reg.insert(make("c"));
        BOOST_TEST(state_of(reg, "c") == "idle");
    }
    BOOST_TEST(counter[sys::call::read] == 0);  // never read: every transaction reused the kept table
    BOOST_TEST(counter[sys::call::fstat] >= 4);  // but each one checked the file's identity
    BOOST_TEST(counter[sys::call::rename] == 1);
}

BOOST_AUTO_TEST_CASE(without_the_option_every_transaction_reads) {
    auto reg = open(false);
    reg.insert(make("a"));
    syscall_counter counter;
    {
        counting on(counter);
        BOOST_TEST(state_of(reg, "a") == "idle");
        BOOST_TEST(state_of(reg, "a") == "idle");
    }
    BOOST_TEST(counter[sys::call::read] >= 2);
}

BOOST_AUTO_TEST_CASE(another_registry_object_replacing_the_file_is_seen_at_the_same_size) {
    auto mine = open();
    auto theirs = open();
    mine.insert(make("a", "idle"));
    const auto size = fs::file_size(file);
    // Each round: `mine` keeps the file it wrote; `theirs` replaces it twice
    // at once (same size, within one timestamp tick), so the second
    // replacement's inode could take the first file's number, freed in
    // between, as ext4 does — had `mine` not pinned it with a descriptor.
    // Only the pin makes "same inode number" mean "same file".
    const char* states[] = {"idle", "busy", "done", "gone"};
    for (int i = 0; i < 60; ++i) {
        const std::string kept = states[i % 4];
        const std::string first = states[(i + 1) % 4];
        const std::string second = states[(i + 2) % 4];
        mine.upsert(make("a", kept));
        BOOST_TEST(state_of(mine, "a") == kept);  // from the kept table
        theirs.upsert(make("a", first));
        theirs.upsert(make("a", second));
        BOOST_TEST(fs::file_size(file) == size);
        BOOST_TEST(state_of(mine, "a") == second);
    }
}

BOOST_AUTO_TEST_CASE(another_process_replacing_the_file_is_seen) {
    auto mine = open();
    mine.insert(make("a", "idle"));
    BOOST_TEST(state_of(mine, "a") == "idle");
    const pid_t child = procreg_test::spawn([&] {
        auto theirs = open();
        theirs.upsert(make("a", "busy"));
        return 0;
    });
    BOOST_TEST(procreg_test::wait_exit(child) == 0);
    BOOST_TEST(state_of(mine, "a") == "busy");
}

BOOST_AUTO_TEST_CASE(a_foreign_replace_with_the_same_size_is_seen) {
    auto mine = open();
    mine.insert(make("a", "idle"));
    BOOST_TEST(state_of(mine, "a") == "idle");
    const std::string text = with_a_busy();
    replace_by_rename(file, text);
    BOOST_TEST(state_of(mine, "a") == "busy");
}

BOOST_AUTO_TEST_CASE(an_in_place_rewrite_with_the_same_size_is_seen) {
    auto mine = open();
    mine.insert(make("a", "idle"));
    BOOST_TEST(state_of(mine, "a") == "idle");
    const std::string text = with_a_busy();
    // Same inode, same size: only mtime and ctime tell. They move in ticks
    // of the filesystem's clock (a few ms), so the rewrite waits out a tick;
    // a rewrite within the same tick is the documented residual risk.
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    rewrite_in_place(file, text);
    BOOST_TEST(state_of(mine, "a") == "busy");
}

BOOST_AUTO_TEST_CASE(a_removed_file_is_an_empty_table) {
    auto mine = open();
    mine.insert(make("a"));
    BOOST_TEST(mine.list().size() == 1u);
    fs::remove(file);
    BOOST_TEST(mine.list().empty());
    BOOST_TEST(!mine.find("a"));
}

BOOST_AUTO_TEST_CASE(a_file_corrupted_behind_our_back_is_an_error_not_the_kept_table) {
    auto mine = open();
    mine.insert(make("a"));
    BOOST_TEST(mine.list().size() == 1u);
    replace_by_rename(file, "{\"workers\": [ {\"name\": ");
    BOOST_CHECK_THROW(mine.list(), procreg::error);
    std::error_code ec;
    (void)mine.list(ec);
    BOOST_TEST((ec == procreg::errc::corrupted_file));
}

BOOST_AUTO_TEST_CASE(a_throwing_transaction_does_not_poison_the_kept_table) {
    auto reg = open();
    reg.insert(make("a"));
    const std::string before = read_text(file);
    BOOST_CHECK_THROW(reg.transact([](registry::transaction_type& tx) {
        tx.insert(make("b"));
        tx.erase("a");
        tx.modify("a", [](worker& w) { w.state = "x"; });
        throw std::runtime_error("changed my mind");
    }),
                      std::runtime_error);
    BOOST_TEST(read_text(file) == before);
    BOOST_TEST(!reg.find("b"));
    BOOST_TEST(state_of(reg, "a") == "idle");
    BOOST_TEST(reg.list().size() == 1u);
    reg.insert(make("c"));  // the next save starts from the file, not from the abandoned changes
    BOOST_TEST(!reg.find("b"));
    BOOST_TEST(reg.find("a").has_value());
    BOOST_TEST(read_text(file) == full_reencode());
}

BOOST_AUTO_TEST_CASE(a_failed_save_does_not_poison_the_kept_table) {
    auto reg = open();
    reg.insert(make("a"));
    BOOST_TEST(reg.list().size() == 1u);
    const std::string before = read_text(file);
    for (const sys::call failing : {sys::call::write, sys::call::rename, sys::call::close}) {
        syscall_counter counter;
        if (failing == sys::call::close) {
            counter.fail_first_after = std::make_pair(sys::call::close, sys::call::write);  // the temp file's close
        } else {
            counter.fail_nth[failing] = 1;  // the lock makes no write or rename
        }
        {
            counting on(counter);
            BOOST_CHECK_THROW(reg.insert(make("b")), procreg::error);
        }
        BOOST_TEST(read_text(file) == before);
        BOOST_TEST(!reg.find("b"));
        BOOST_TEST(reg.list().size() == 1u);
    }
    reg.insert(make("c"));
    BOOST_TEST(!reg.find("b"));
    BOOST_TEST(reg.list().size() == 2u);
}

BOOST_AUTO_TEST_CASE(a_failed_directory_fsync_after_the_rename_drops_the_kept_table) {
    json_table_options opts = options();
    opts.durable = true;
    registry reg{json_table(opts)};
    reg.insert(make("a"));
    syscall_counter counter;
    counter.fail_first_after = std::make_pair(sys::call::fsync, sys::call::rename);  // the directory's fsync
    {
        counting on(counter);
        BOOST_CHECK_THROW(reg.insert(make("b")), procreg::error);
    }
    // The change was undone (docs/errors.md): the old file is back under
    // the name, and the next transaction must read it rather than trust
    // either version it knew.
    BOOST_TEST(!reg.find("b").has_value());
    BOOST_TEST(reg.list().size() == 1u);
    reg.insert(make("b"));  // the retry is not refused as a duplicate
    BOOST_TEST(reg.list().size() == 2u);
}

BOOST_AUTO_TEST_CASE(a_failed_pin_only_costs_the_shortcut) {
    auto reg = open();
    reg.insert(make("a"));
    syscall_counter counter;
    counter.fail_first_after = std::make_pair(sys::call::open, sys::call::write);  // the temp file's duplicate
    {
        counting on(counter);
        reg.insert(make("b"));  // saved all the same
        BOOST_TEST(reg.list().size() == 2u);
    }
    BOOST_TEST(counter[sys::call::read] >= 1);  // nothing kept: read again
    BOOST_TEST(reg.list().size() == 2u);
}

BOOST_AUTO_TEST_CASE(saves_are_byte_identical_to_a_full_reencode) {
    // A file with keys the record type does not know, at the top level and
    // inside records, in an order the encoder would not choose.
    fs::create_directories(file.parent_path());
    ::chmod(file.parent_path().c_str(), 0700);
    write_text(file, R"({"format": 3, "workers": [
        {"pid": 1, "name": "w0", "state": "idle", "extra": {"z": 1, "a": [1, 2, {"k": null}]}},
        {"name": "w1", "pid": 1, "state": "busy", "note": "n\u00e9\"1\"", "more": 2.5}
      ], "trailer": {"x": true}})");
    auto reg = open();
    const auto check = [&](const std::string& step) {
        const std::string written = read_text(file);
        BOOST_TEST(written == full_reencode(), step << ": differs from a full pretty-print");
        BOOST_TEST(rewritten_without_cache() == written, step << ": differs from a full re-encode");
    };
    // After the first step (which reads the file) every step must start from
    // the kept table, so its save reuses the kept text of the records it
    // does not change: that reuse is what the checks compare.
    const auto step_from_kept_table = [&](const std::string& step, const auto& operation) {
        syscall_counter counter;
        {
            counting on(counter);
            operation();
        }
        BOOST_TEST(counter[sys::call::read] == 0, step << ": read the file instead of reusing the kept table");
        check(step);
    };
    reg.insert(make("w2", "idle", std::string("first")));
    check("insert");
    step_from_kept_table("upsert of a record with unknown keys",
                         [&] { reg.upsert(worker{"w0", 1, "busy", std::nullopt}); });
    step_from_kept_table("erase", [&] { BOOST_TEST(reg.erase("w1")); });
    step_from_kept_table("many inserts", [&] {
        for (int i = 3; i < 40; ++i) reg.insert(make("w" + std::to_string(i)));
    });
    step_from_kept_table("erase many, insert and modify in one transaction", [&] {
        reg.transact([](registry::transaction_type& tx) {
            for (int i = 3; i < 40; i += 2) tx.erase("w" + std::to_string(i));  // holes, compacted at the save
            tx.insert(make("late"));
            tx.modify("w4", [](worker& w) { w.note = "changed"; });
        });
    });
    step_from_kept_table("erase all", [&] {
        reg.transact([](registry::transaction_type& tx) {
            for (const worker& w : tx.records()) tx.erase(w.name);
        });
    });
    step_from_kept_table("insert into the emptied table", [&] { reg.insert(make("again")); });
    const auto parsed = boost::json::parse(read_text(file)).as_object();
    BOOST_TEST(parsed.at("format").as_int64() == 3);  // unknown top-level keys kept, in place
    BOOST_TEST(parsed.contains("trailer"));
}

BOOST_AUTO_TEST_CASE(a_file_without_the_array_gets_it_appended_as_before) {
    fs::create_directories(file.parent_path());
    ::chmod(file.parent_path().c_str(), 0700);
    write_text(file, R"({"owner": "someone"})");
    auto reg = open();
    reg.insert(make("a"));
    BOOST_TEST(read_text(file) == full_reencode());
    const auto parsed = boost::json::parse(read_text(file)).as_object();
    BOOST_TEST(parsed.begin()->key() == "owner");
    BOOST_TEST(parsed.at("workers").as_array().size() == 1u);
}

// A record written by this registry and changed again from the kept table
// is merged over what the file holds, exactly as after a fresh load: a key
// the record type no longer writes is kept (as any key it does not know),
// whether or not the shortcut served the table.
BOOST_AUTO_TEST_CASE(a_record_rewritten_from_the_kept_table_merges_over_the_file_as_a_fresh_load_does) {
    using tagged_registry = procreg::registry<cache_app::tagged, procreg::lock::flock_lock, json_table,
                                              procreg::liveness::kill_liveness>;
    const auto run = [&](bool reuse, const fs::path& path) {
        json_table_options opts = options(reuse);
        opts.file = path;
        tagged_registry reg{json_table(opts)};
        reg.insert(cache_app::tagged{"a", live_pid, std::string("written once")});
        syscall_counter counter;
        {
            counting on(counter);
            reg.upsert(cache_app::tagged{"a", live_pid, std::nullopt});  // leaves "note" out
        }
        BOOST_TEST((counter[sys::call::read] == 0) == reuse);  // the shortcut served it, or the file did
        return read_text(path);
    };
    const std::string cached = run(true, dir / "cached" / "registry.json");
    const std::string reloaded = run(false, dir / "reloaded" / "registry.json");
    BOOST_TEST(cached == reloaded);
    BOOST_TEST(boost::json::parse(cached).at("workers").at(0).at("note") == "written once");
}

BOOST_AUTO_TEST_CASE(reads_between_saves_see_every_record_after_holes) {
    auto reg = open();
    for (int i = 0; i < 10; ++i) reg.insert(make("w" + std::to_string(i)));
    reg.transact([](registry::transaction_type& tx) {
        tx.erase("w2");
        tx.erase("w5");
        BOOST_TEST(tx.size() == 8u);
        BOOST_TEST(!tx.find("w2"));
        BOOST_TEST(tx.find("w9") != nullptr);
        std::vector<std::string> names;
        tx.for_each([&](const worker& w) { names.push_back(w.name); });
        BOOST_TEST(names == (std::vector<std::string>{"w0", "w1", "w3", "w4", "w6", "w7", "w8", "w9"}),
                   boost::test_tools::per_element());
        tx.insert(make("w2"));  // re-added at the end, in file order
    });
    std::vector<std::string> names;
    for (const auto& row : reg.list()) names.push_back(row.record.name);
    BOOST_TEST(names == (std::vector<std::string>{"w0", "w1", "w3", "w4", "w6", "w7", "w8", "w9", "w2"}),
               boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()
