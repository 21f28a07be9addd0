// Issue 14, items 1-3: nothing a writer does can make a registry unreadable.
//
// Every reader refuses a file above its byte limit or nested past its depth
// limit. A write that would produce such a file must be refused before
// anything is written (`errc::invalid_record`, naming the key), so the
// registry stays readable by a fresh process and the writer goes on:
// - json_table: the limits apply to the whole file, which wraps the records
//   in `{"<array>": [...]}` (two more levels, and every record's bytes);
// - record_files: to each record's file;
// - claim_file: to the claim as the configured options read it back, or
//   a live holder's claim reads as unparseable, so stale, and a second
//   process takes it over (two holders).
// "A fresh process" is a forked child that opens the registry itself.
#define BOOST_TEST_MODULE write_limits
#include <boost/test/unit_test.hpp>

#include <procreg/presets/agentmux.hpp>
#include <procreg/presets/algocline.hpp>
#include <procreg/presets/insomnia.hpp>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <boost/describe/class.hpp>
#include <boost/json.hpp>

#include <csignal>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

namespace fs = std::filesystem;
using procreg_test::read_text;
using procreg_test::spawn;
using procreg_test::temp_dir;
using procreg_test::wait_exit;
using procreg_test::write_text;

BOOST_TEST_DONT_PRINT_LOG_VALUE(procreg::upsert_status)
BOOST_TEST_DONT_PRINT_LOG_VALUE(procreg::release_status)
BOOST_TEST_DONT_PRINT_LOG_VALUE(std::optional<procreg::errc>)

namespace write_limits {

// A record with a free-form JSON member, to nest as deep as a test needs.
struct deep_session {
    std::string sid;
    std::uint32_t pid = 0;
    boost::json::value extra;
};
BOOST_DESCRIBE_STRUCT(deep_session, (), (sid, pid, extra))

}  // namespace write_limits

template <>
struct procreg::record_traits<write_limits::deep_session> {
    static std::string_view key(const write_limits::deep_session& s) noexcept { return s.sid; }
    static std::uint32_t pid(const write_limits::deep_session& s) noexcept { return s.pid; }
};

namespace {

using deep_registry = procreg::registry<write_limits::deep_session, procreg::lock::flock_lock,
                                        procreg::storage::json_table, procreg::liveness::kill_liveness>;

const std::uint32_t self_pid = static_cast<std::uint32_t>(::getpid());

// The code of the procreg::error `f` throws; fails the test when it throws
// nothing or something else.
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

// `depth` arrays nested in each other: [[...[]...]].
boost::json::value nested_arrays(std::size_t depth) {
    boost::json::value out = boost::json::array();
    for (std::size_t i = 1; i < depth; ++i) {
        boost::json::array outer;
        outer.push_back(std::move(out));
        out = std::move(outer);
    }
    return out;
}

// Runs `body` in a fresh process: true when it returned true there.
bool in_fresh_process(const std::function<bool()>& body) {
    return wait_exit(spawn([&] { return body() ? 0 : 1; })) == 0;
}

procreg::storage::json_table_options small_table(const temp_dir& dir, std::size_t max_bytes) {
    auto opts = procreg::algocline::options(dir / "registry.json");
    opts.durable = false;
    opts.max_file_bytes = max_bytes;
    return opts;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(json_table)

// Item 1: the table grows record by record until the next insert would
// take the file past max_file_bytes; that insert is refused, nothing is
// written, and both the writer and a fresh process read the table.
BOOST_AUTO_TEST_CASE(an_insert_that_would_exceed_the_file_limit_is_refused) {
    temp_dir dir;
    const std::size_t limit = 16 * 1024;
    auto reg = procreg::algocline::open(small_table(dir, limit));
    const std::string big(1000, 's');
    std::size_t stored = 0;
    std::optional<procreg::errc> refused;
    std::string message;
    for (int i = 0; i < 40 && !refused; ++i) {
        const std::string sid = "s" + std::to_string(i);
        refused = code_of([&] { reg.insert(procreg::algocline::pool_session::make(sid, self_pid, big, "1")); },
                          &message);
        if (!refused) ++stored;
    }
    BOOST_TEST_REQUIRE(refused.has_value(), "40 records of 1000 bytes never exceeded a 16 KiB table");
    BOOST_TEST(*refused == procreg::errc::invalid_record);
    BOOST_TEST(contains(message, "s" + std::to_string(stored)), message);
    BOOST_TEST(contains(message, std::to_string(limit)), message);
    const auto size = fs::file_size(dir / "registry.json");
    BOOST_TEST(size <= limit);
    BOOST_TEST(size + 1100 > limit, "refused although the record would have fitted: " << size);
    BOOST_TEST(stored > 10u);
    BOOST_TEST(reg.list().size() == stored);
    BOOST_TEST(in_fresh_process([&] {
        auto fresh = procreg::algocline::open(small_table(dir, limit));
        if (fresh.list().size() != stored || !fresh.erase("s0")) return false;
        fresh.insert(procreg::algocline::pool_session::make("small", self_pid, "/s", "1"));
        return fresh.list().size() == stored;
    }));
    BOOST_TEST(reg.list().size() == stored);
}

// Item 1: one record alone larger than the file limit.
BOOST_AUTO_TEST_CASE(a_record_larger_than_the_file_limit_is_refused) {
    temp_dir dir;
    auto reg = procreg::algocline::open(small_table(dir, 4096));
    reg.insert(procreg::algocline::pool_session::make("small", self_pid, "/s", "1"));
    const std::string before = read_text(dir / "registry.json");
    std::string message;
    BOOST_TEST(code_of([&] {
                   reg.upsert(procreg::algocline::pool_session::make("huge", self_pid, std::string(8192, 'x'), "1"));
               }, &message) == procreg::errc::invalid_record);
    BOOST_TEST(contains(message, "huge"), message);
    BOOST_TEST(read_text(dir / "registry.json") == before);
    BOOST_TEST(in_fresh_process([&] { return procreg::algocline::open(small_table(dir, 4096)).list().size() == 1; }));
}

// Item 2: the reader sees a record two levels down (top object, records
// array). With max_depth 32, a record 30 deep fits and 31 or 32 does not,
// although each of them alone parses.
BOOST_AUTO_TEST_CASE(depth_is_checked_as_the_file_nests_it) {
    temp_dir dir;
    auto opts = procreg::algocline::options(dir / "registry.json");
    opts.durable = false;
    deep_registry reg{procreg::storage::json_table(opts)};
    // The record object is one level, its `extra` arrays the rest.
    reg.insert(write_limits::deep_session{"fits", self_pid, nested_arrays(29)});
    const std::string before = read_text(dir / "registry.json");
    for (const std::size_t arrays : {30, 31}) {
        std::string message;
        BOOST_TEST(code_of([&] {
                       reg.insert(write_limits::deep_session{"deep" + std::to_string(arrays), self_pid,
                                                             nested_arrays(arrays)});
                   }, &message) == procreg::errc::invalid_record,
                   arrays);
        BOOST_TEST(contains(message, "deep" + std::to_string(arrays)), message);
        BOOST_TEST(read_text(dir / "registry.json") == before);
    }
    BOOST_TEST(in_fresh_process([&] {
        deep_registry fresh{procreg::storage::json_table(opts)};
        const auto rows = fresh.list();
        return rows.size() == 1 && rows[0].record.extra == nested_arrays(29);
    }));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(record_files)

// Item 1 (AgentMux, default 1 MiB limit): an upsert whose file would be
// larger than readers accept is refused; the record on disk stays as it
// was, listed, replaceable, erasable, by the writer and by a fresh process.
BOOST_AUTO_TEST_CASE(an_upsert_past_the_file_limit_is_refused) {
    temp_dir dir;
    auto opts = procreg::agentmux::options(dir / "registry");
    opts.durable = false;
    auto reg = procreg::agentmux::open(opts);
    auto agent = procreg::agentmux::agent_record::make("agent-1");
    agent.data.display_name = "small";
    BOOST_TEST(reg.upsert(agent).status == procreg::upsert_status::inserted);
    const std::string before = read_text(dir / "registry" / "agent-1.json");
    auto huge = agent;
    huge.data.display_name = std::string(std::size_t{1} << 20, 'n');
    std::string message;
    BOOST_TEST(code_of([&] { reg.upsert(huge); }, &message) == procreg::errc::invalid_record);
    BOOST_TEST(contains(message, "agent-1"), message);
    BOOST_TEST(contains(message, std::to_string(std::size_t{1} << 20)), message);
    BOOST_TEST((read_text(dir / "registry" / "agent-1.json") == before));  // (not printed: 1 MiB)
    auto fresh_huge = procreg::agentmux::agent_record::make("agent-2");
    fresh_huge.data.display_name = huge.data.display_name;
    BOOST_TEST(code_of([&] { reg.insert(fresh_huge); }) == procreg::errc::invalid_record);
    BOOST_TEST(!fs::exists(dir / "registry" / "agent-2.json"));
    BOOST_TEST(in_fresh_process([&] {
        auto fresh = procreg::agentmux::open(opts);
        const auto listing = fresh.list_active();
        if (listing.records.size() != 1 || !listing.skipped.empty()) return false;
        auto renamed = listing.records[0];
        renamed.data.display_name = "renamed";
        if (fresh.upsert(renamed).status != procreg::upsert_status::replaced) return false;
        return fresh.erase("agent-1");
    }));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(claim_file)

namespace {

std::vector<std::string> uuids(std::size_t n) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < n; ++i) {
        char text[48];  // 36 characters; room for what -Wformat-truncation counts for a size_t
        std::snprintf(text, sizeof text, "00000000-0000-4000-8000-%012zx", i);
        out.emplace_back(text);
    }
    return out;
}

}  // namespace

// Item 1 (INSOMNIA, default 1 MiB limit): a claim too big to read back is
// refused at acquire and nothing is written; the next acquire works.
BOOST_AUTO_TEST_CASE(a_claim_past_the_file_limit_is_refused_at_acquire) {
    temp_dir dir;
    const fs::path staging = dir / "_staging";
    std::string message;
    BOOST_TEST(code_of([&] { (void)procreg::insomnia::staging_lock::acquire(staging, self_pid, "pod-a", uuids(30000)); },
                       &message) == procreg::errc::invalid_record);
    BOOST_TEST(contains(message, std::to_string(std::size_t{1} << 20)), message);
    BOOST_TEST(!fs::exists(procreg::insomnia::lock_file_path(staging)));
    auto lock = procreg::insomnia::staging_lock::acquire(staging, self_pid, "pod-a", uuids(3));
    BOOST_TEST(procreg::insomnia::open(staging).holder().has_value());
    BOOST_TEST(lock.release_only() == procreg::release_status::released);
}

// Item 3: with max_depth 1 an INSOMNIA claim (an object holding an array)
// cannot be read back, so acquire refuses it: before the fix process A
// held a claim that process B read as unparseable, hence stale, and took.
// With max_depth 2 the claim fits: A holds it and B, live, gets in_use.
BOOST_AUTO_TEST_CASE(a_claim_too_deep_for_the_options_is_refused_and_never_two_holders) {
    temp_dir dir;
    for (const std::size_t depth : {1, 2}) {
        const fs::path staging = dir / ("depth" + std::to_string(depth)) / "_staging";
        auto opts = procreg::insomnia::options(staging);
        opts.max_depth = depth;
        opts.durable = false;
        procreg_test::signal_pipe ready;
        procreg_test::signal_pipe done;
        // A reports after its acquire (3: refused as too deep) and, if it
        // holds the claim, releases it once B has tried.
        const pid_t a = spawn([&] {
            const procreg::insomnia::lock_record record{static_cast<std::uint32_t>(::getpid()), "pod-a", "t", uuids(2)};
            std::error_code ec;
            auto held = procreg::insomnia::open(opts).acquire(record, ec);
            ready.notify();
            if (!held) return ec == procreg::errc::invalid_record ? 3 : 4;
            (void)done.wait(std::chrono::seconds(30));
            return held->release() == procreg::release_status::released ? 0 : 5;
        });
        BOOST_TEST_REQUIRE(ready.wait(std::chrono::seconds(30)), "process A did not report");
        const procreg::insomnia::lock_record mine{self_pid, "pod-b", "t", {}};
        std::error_code ec;
        auto second = procreg::insomnia::open(opts).acquire(mine, ec);
        done.notify();
        const int a_status = wait_exit(a);
        if (depth == 1) {
            BOOST_TEST(a_status == 3, "A: a claim too deep for max_depth 1 was not refused (exit " << a_status << ")");
            // B's claim, without ids, is still an object holding an array.
            BOOST_TEST(ec == procreg::errc::invalid_record, ec.message());
            BOOST_TEST(!fs::exists(procreg::insomnia::lock_file_path(staging)));
        } else {
            BOOST_TEST(!second.has_value(), "two holders");
            BOOST_TEST(ec == procreg::errc::in_use, ec.message());
            BOOST_TEST(a_status == 0);
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
