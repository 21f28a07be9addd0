// Regressions for what fuzzing found (fuzz/, docs/reliability.md "Fuzzing").
//
// fuzz_json_table_algocline found that a table holding a number beyond the
// double range (`1e400`) loaded — Boost.JSON 1.81 reads it as infinity —
// and the next save wrote `Infinity`, which is not JSON: one transaction
// turned a readable registry into one that no longer parses. Now such a
// number is refused where it enters, in every storage: on reading it is a
// parse error (the file is corrupt, or skipped, or a stale claim, as each
// storage treats unparseable files), and the file is left untouched; on
// writing, a record holding an infinite or NaN double is refused and
// nothing is written.
//
// fuzz_record_files_agentmux found that an unknown numeric field changed at
// each rewrite: Boost.JSON 1.81 wrote 1.2844674407370955E20 and read that
// text back as 1.2844674407370957E20. Numbers with a fraction or exponent
// are now read with std::from_chars (correctly rounded), so a number
// procreg wrote reads back as the same double and a rewrite keeps it.
#define BOOST_TEST_MODULE fuzz_findings
#include <boost/test/unit_test.hpp>

#include <procreg/presets/agentmux.hpp>
#include <procreg/presets/algocline.hpp>
#include <procreg/presets/insomnia.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/json_table.hpp>

#include "../support/temp_dir.hpp"

#include <boost/describe/class.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

using procreg_test::read_text;
using procreg_test::temp_dir;
using procreg_test::write_text;

namespace fuzz_findings {

// A record with a floating-point field, to write a non-finite number.
struct sample {
    std::string name;
    std::uint32_t pid = 0;
    double load = 0;
};
BOOST_DESCRIBE_STRUCT(sample, (), (name, pid, load))

}  // namespace fuzz_findings

template <>
struct procreg::record_traits<fuzz_findings::sample> {
    static std::string_view key(const fuzz_findings::sample& s) noexcept { return s.name; }
    static std::uint32_t pid(const fuzz_findings::sample& s) noexcept { return s.pid; }
};

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

BOOST_AUTO_TEST_SUITE(number_out_of_range)

// The fuzzer's input, minimised: an unknown field holding 1e400.
BOOST_AUTO_TEST_CASE(json_table_refuses_it_and_leaves_the_file_untouched) {
    temp_dir dir;
    const auto file = dir / "registry.json";
    const std::string text =
        R"({"sessions":[{"sid":"a","pid":1,"sock":"/s","version":"9","created_at":"t","extra":{"n":[2,1e400]}}]})";
    write_text(file, text);
    auto reg = procreg::algocline::open(file);
    try {
        (void)reg.list();
        BOOST_FAIL("a table holding 1e400 loaded");
    } catch (const procreg::error& e) {
        BOOST_TEST((e.code() == procreg::errc::corrupted_file));
        BOOST_TEST(contains(e.what(), "number out of range at sessions[0].extra.n[1]"), e.what());
    }
    BOOST_CHECK_THROW(reg.insert(procreg::algocline::pool_session::make("b", 2, "/t", "1")), procreg::error);
    BOOST_TEST(read_text(file) == text);
}

BOOST_AUTO_TEST_CASE(negative_overflow_and_underflow) {
    temp_dir dir;
    const auto file = dir / "registry.json";
    write_text(file, R"({"sessions":[],"x":-1e999})");
    auto reg = procreg::algocline::open(file);
    BOOST_CHECK_THROW((void)reg.list(), procreg::error);
    // Underflow reads as 0, which is finite and written back as valid JSON.
    write_text(file, R"({"sessions":[],"x":1e-400})");
    reg.insert(procreg::algocline::pool_session::make("b", 2, "/t", "1"));
    BOOST_TEST(reg.list().size() == 1u);
}

BOOST_AUTO_TEST_CASE(record_files_skips_it_and_never_overwrites_it) {
    temp_dir dir;
    const auto root = dir / "registry";
    auto reg = procreg::agentmux::open(root);
    const auto file = root / "agent-1.json";
    const std::string text = R"({"schema_version":1,"data":{"instance_id":"agent-1"},"big":-1e400})";
    write_text(file, text);
    const auto listing = reg.list_active();
    BOOST_TEST(listing.records.empty());
    BOOST_TEST_REQUIRE(listing.skipped.size() == 1u);
    BOOST_TEST(contains(listing.skipped.front().reason, "number out of range at big"), listing.skipped.front().reason);
    const auto result = reg.upsert(procreg::agentmux::agent_record::make("agent-1"));
    BOOST_TEST((result.status == procreg::upsert_status::skipped));
    BOOST_TEST(read_text(file) == text);
}

BOOST_AUTO_TEST_CASE(a_claim_holding_it_is_unparseable) {
    temp_dir dir;
    const auto staging = dir / "_staging";
    auto opts = procreg::insomnia::options(staging);
    (void)procreg::insomnia::open(opts);  // creates the directory
    write_text(procreg::insomnia::lock_file_path(staging),
               R"({"pid":1,"pod_name":"p","started_at":"t","consumed_ids":[],"x":[1e999]})");
    const auto peeked = procreg::insomnia::consolidation_storage::peek<procreg::insomnia::lock_record>(opts);
    BOOST_TEST((peeked.state == procreg::storage::claim_state::unparseable));
    BOOST_TEST(contains(peeked.reason, "number out of range at x[0]"), peeked.reason);
}

BOOST_AUTO_TEST_CASE(a_record_holding_infinity_or_nan_is_not_written) {
    using registry = procreg::registry<fuzz_findings::sample, procreg::lock::flock_lock, procreg::storage::json_table>;
    temp_dir dir;
    procreg::storage::json_table_options opts;
    opts.file = dir / "t.json";
    registry reg{procreg::storage::json_table(opts)};
    reg.insert(fuzz_findings::sample{"ok", 1, 0.5});
    const std::string before = read_text(opts.file);
    for (const double bad : {std::numeric_limits<double>::infinity(), std::nan("")}) {
        try {
            reg.insert(fuzz_findings::sample{"bad", 2, bad});
            BOOST_FAIL("a non-finite number was written");
        } catch (const procreg::error& e) {
            BOOST_TEST(contains(e.what(), "load: the number is infinite or NaN"), e.what());
        }
        BOOST_TEST(read_text(opts.file) == before);
    }
    BOOST_TEST(reg.list().size() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(number_precision)

BOOST_AUTO_TEST_CASE(unknown_numbers_survive_rewrites_unchanged) {
    temp_dir dir;
    const auto file = dir / "registry.json";
    write_text(file, R"({"sessions":[],"x":1.2844674407370955E20,"y":128446744073709551616})");
    auto reg = procreg::algocline::open(file);
    reg.insert(procreg::algocline::pool_session::make("a", 1, "/s", "1"));
    const std::string once = read_text(file);
    BOOST_TEST(contains(once, "\"x\": 1.2844674407370955E20"), once);
    BOOST_TEST(contains(once, "\"y\": 1.2844674407370955E20"), once);
    reg.insert(procreg::algocline::pool_session::make("b", 2, "/t", "1"));
    reg.erase("b");
    BOOST_TEST(read_text(file) == once);
}

BOOST_AUTO_TEST_CASE(record_files_keeps_an_unknown_number_exactly) {
    temp_dir dir;
    const auto root = dir / "registry";
    auto reg = procreg::agentmux::open(root);
    write_text(root / "agent-1.json",
               R"({"schema_version":1,"data":{"instance_id":"agent-1"},"future_field":128446744073709551616})");
    auto rec = procreg::agentmux::agent_record::make("agent-1");
    BOOST_TEST((reg.upsert(rec).status == procreg::upsert_status::replaced));
    const std::string once = read_text(root / "agent-1.json");
    BOOST_TEST(contains(once, "\"future_field\": 1.2844674407370955E20"), once);
    rec.data.display_name = "again";
    BOOST_TEST((reg.upsert(rec).status == procreg::upsert_status::replaced));
    BOOST_TEST(contains(read_text(root / "agent-1.json"), "\"future_field\": 1.2844674407370955E20"));
}

BOOST_AUTO_TEST_SUITE_END()
