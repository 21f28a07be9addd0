// The AgentMux seed (`agentmux_srv/registry/store.rs`) as a procreg
// instantiation. The seed ships no tests of its own: every case here was
// written from the seed's code (upsert's merge and its refusals, retire /
// unretire / hard_delete, exists / exists_anywhere, list_active), plus the
// issue's checks (keys that are not file names, several processes at once,
// a newer schema's file surviving every operation). The cases about records
// rather than files have their bodies in support/seed_cases/agentmux_cases.hpp,
// which tests/etcd/etcd_seed_test.cpp runs on etcd too. What the seed imports
// from `schema.rs` is reconstructed, not copied: `MAX_SUPPORTED_SCHEMA`
// (1), the fields of `data` other than `instance_id` (`name`,
// `display_name`, `working_dir`, `last_launched_at_ms`) and `validate`
// (the instance id equals the file stem). Where the preset differs from
// the seed, docs/seeds.md lists it with the test that pins it.
#define BOOST_TEST_MODULE agentmux
#include <boost/test/unit_test.hpp>

#include <procreg/presets/agentmux.hpp>

#include "support/policy_matrix.hpp"
#include "support/process.hpp"
#include "support/seed_cases/agentmux_cases.hpp"
#include "support/temp_dir.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <vector>

// Boost.Test prints the operands of a failed comparison.
namespace procreg {
inline std::ostream& operator<<(std::ostream& out, upsert_status s) { return out << to_string(s); }
inline std::ostream& operator<<(std::ostream& out, tombstone_status s) { return out << to_string(s); }
}  // namespace procreg

namespace fs = std::filesystem;
namespace agentmux_cases = procreg_test::agentmux_cases;
using procreg::agentmux::agent_record;
using procreg_test::read_text;
using procreg_test::temp_dir;
using procreg_test::write_text;

using test_registry = procreg_test::under_test<procreg::agentmux::agent_registry>;

namespace {

struct fixture {
    temp_dir dir;
    fs::path root = dir / "agents" / "registry";
    test_registry reg = procreg::agentmux::open<test_registry>(root);

    fs::path active(const std::string& id) const { return root / (id + ".json"); }
    fs::path retired(const std::string& id) const { return root / "retired" / (id + ".json"); }

    static agent_record record(const std::string& id, const std::string& display = "agent") {
        return procreg_test::agentmux_cases::record(id, display);
    }

    // The place the shared cases (support/seed_cases/agentmux_cases.hpp) ask for.
    test_registry open() const { return procreg::agentmux::open<test_registry>(root); }
    std::optional<std::string> raw(const std::string& id) const {
        std::ifstream in(active(id), std::ios::binary);
        if (!in) return std::nullopt;
        return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    }
    void write_raw(const std::string& id, const std::string& text) const { write_text(active(id), text); }
    fs::path where(const std::string& id) const { return active(id); }
    bool list_active_skips_nothing() { return reg.list_active().skipped.empty(); }

    static boost::json::object parse(const fs::path& file) {
        return boost::json::parse(read_text(file)).as_object();
    }
};

// Every file under `root` with its bytes, to prove nothing was touched.
std::map<std::string, std::string> snapshot(const fs::path& root) {
    std::map<std::string, std::string> out;
    for (const auto& entry : fs::recursive_directory_iterator(root)) {
        const std::string rel = fs::relative(entry.path(), root).string();
        out[rel] = entry.is_regular_file() ? read_text(entry.path()) : std::string("<dir>");
    }
    return out;
}

std::set<std::string> ids(const std::vector<agent_record>& records) {
    std::set<std::string> out;
    for (const auto& r : records) out.insert(r.data.instance_id);
    return out;
}

const procreg::skipped_file* skipped_named(const std::vector<procreg::skipped_file>& skipped, const std::string& name) {
    for (const auto& s : skipped)
        if (s.path.filename() == name) return &s;
    return nullptr;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(agentmux, fixture)

BOOST_AUTO_TEST_CASE(open_creates_active_and_retired_directories_0700) {
    BOOST_TEST(fs::is_directory(root));
    BOOST_TEST(fs::is_directory(root / "retired"));
    BOOST_TEST(procreg_test::mode_of(root) == 0700u);
    BOOST_TEST(procreg_test::mode_of(root / "retired") == 0700u);
}

BOOST_AUTO_TEST_CASE(upsert_new_record_writes_the_seed_layout) {
    agentmux_cases::upsert_new_record_writes_the_seed_layout(*this);
    BOOST_TEST(procreg_test::mode_of(active("a1")) == 0600u);
}

BOOST_AUTO_TEST_CASE(upsert_preserves_unknown_top_level_and_data_fields) {
    agentmux_cases::upsert_preserves_unknown_top_level_and_data_fields(*this);
}

BOOST_AUTO_TEST_CASE(upsert_refuses_to_overwrite_a_higher_schema) {
    const std::string newer =
        R"({"schema_version": 2, "data": {"instance_id": "a1", "display_name": "from v2", "v2_only": 1}})";
    write_text(active("a1"), newer);
    const auto result = reg.upsert(record("a1", "from v1"));
    BOOST_TEST(result.status == procreg::upsert_status::skipped);
    BOOST_REQUIRE(result.skipped);
    BOOST_TEST(result.skipped->path == active("a1"));
    BOOST_TEST(result.skipped->reason.find("schema_version") != std::string::npos);
    BOOST_TEST(result.skipped->reason.find("2") != std::string::npos);
    BOOST_TEST(read_text(active("a1")) == newer);

    // insert cannot be silent either: it throws, naming the file.
    try {
        reg.transact([](auto& tx) { tx.erase("a1"); });  // not a record for this program: nothing to erase
        reg.insert(record("a1"));
        BOOST_FAIL("insert over a newer-schema file must fail");
    } catch (const procreg::error& e) {
        BOOST_TEST((e.code() == procreg::errc::unsupported_file));
        BOOST_TEST(e.path() == active("a1"));
        BOOST_TEST(e.key() == "a1");
    }
    BOOST_TEST(read_text(active("a1")) == newer);
}

BOOST_AUTO_TEST_CASE(upsert_refuses_to_overwrite_a_corrupt_file) {
    agentmux_cases::upsert_refuses_to_overwrite_a_corrupt_file(*this);
}

BOOST_AUTO_TEST_CASE(upsert_refuses_to_overwrite_a_file_without_schema_version) {
    const std::string unversioned = R"({"data": {"instance_id": "a1", "display_name": "who wrote me?"}})";
    write_text(active("a1"), unversioned);
    const auto result = reg.upsert(record("a1"));
    BOOST_TEST(result.status == procreg::upsert_status::skipped);
    BOOST_REQUIRE(result.skipped);
    BOOST_TEST(result.skipped->reason.find("schema_version") != std::string::npos);
    BOOST_TEST(read_text(active("a1")) == unversioned);

    // A schema_version that is not a non-negative integer is no better (the
    // seed's u32::try_from guard against wrap-around downgrades).
    for (const std::string bad : {R"({"schema_version": -1, "data": {"instance_id": "a2"}})",
                                  R"({"schema_version": "1", "data": {"instance_id": "a2"}})",
                                  R"({"schema_version": 1.5, "data": {"instance_id": "a2"}})",
                                  R"({"schema_version": 18446744073709551615, "data": {"instance_id": "a2"}})"}) {
        write_text(active("a2"), bad);
        BOOST_TEST((reg.upsert(record("a2")).status == procreg::upsert_status::skipped), bad);
        BOOST_TEST(read_text(active("a2")) == bad);
    }
}

BOOST_AUTO_TEST_CASE(retire_and_unretire_are_idempotent) {
    reg.upsert(record("a1"));
    const std::string bytes = read_text(active("a1"));

    BOOST_TEST((reg.retire("a1").status == procreg::tombstone_status::moved));
    BOOST_TEST(!fs::exists(active("a1")));
    BOOST_TEST(read_text(retired("a1")) == bytes);  // moved, not rewritten
    BOOST_TEST((reg.retire("a1").status == procreg::tombstone_status::unchanged));
    BOOST_TEST((reg.retire("never-existed").status == procreg::tombstone_status::unchanged));
    BOOST_TEST(!reg.find("a1"));
    BOOST_TEST(reg.list_active().records.empty());

    BOOST_TEST((reg.unretire("a1").status == procreg::tombstone_status::moved));
    BOOST_TEST(read_text(active("a1")) == bytes);
    BOOST_TEST(!fs::exists(retired("a1")));
    BOOST_TEST((reg.unretire("a1").status == procreg::tombstone_status::unchanged));
    BOOST_TEST((reg.unretire("never-existed").status == procreg::tombstone_status::unchanged));
    BOOST_TEST(reg.find("a1").has_value());

    // Both steps inside one transaction: nothing moves until commit, and
    // the end state is the composition.
    reg.transact([&](auto& tx) {
        BOOST_TEST((tx.retire("a1").status == procreg::tombstone_status::moved));
        BOOST_TEST(fs::exists(active("a1")));  // buffered
        BOOST_TEST(!tx.exists("a1"));
        BOOST_TEST(tx.exists_anywhere("a1"));
        BOOST_TEST((tx.unretire("a1").status == procreg::tombstone_status::moved));
        BOOST_TEST((tx.retire("a1").status == procreg::tombstone_status::moved));
    });
    BOOST_TEST(!fs::exists(active("a1")));
    BOOST_TEST(read_text(retired("a1")) == bytes);
}

// The seed's retire and unretire rename whatever file is there. So does the
// preset when the file is one it cannot read as a record (unparseable,
// without schema_version, of a newer schema, of another key): a move keeps
// its bytes, so nothing is lost, and the agent leaves (or rejoins) the list
// as the user asked. Symbolic links and other non-regular files are refused.
BOOST_AUTO_TEST_CASE(retire_and_unretire_move_files_this_program_cannot_read) {
    const std::map<std::string, std::string> files = {
        {"corrupt", "{ nope"},
        {"unversioned", R"({"data": {"instance_id": "unversioned"}})"},
        {"newer", R"({"schema_version": 9, "data": {"instance_id": "newer", "v9": true}})"},
        {"mismatch", R"({"schema_version": 1, "data": {"instance_id": "someone-else"}})"},
    };
    for (const auto& [id, bytes] : files) {
        BOOST_TEST_CONTEXT(id) {
            write_text(active(id), bytes);
            BOOST_TEST((reg.retire(id).status == procreg::tombstone_status::moved));
            BOOST_TEST(!fs::exists(active(id)));
            BOOST_TEST(read_text(retired(id)) == bytes);
            BOOST_TEST((reg.unretire(id).status == procreg::tombstone_status::moved));
            BOOST_TEST(read_text(active(id)) == bytes);
            BOOST_TEST(!fs::exists(retired(id)));
        }
    }
    fs::create_symlink(active("corrupt"), active("link"));
    const auto refused = reg.retire("link");
    BOOST_TEST((refused.status == procreg::tombstone_status::skipped));
    BOOST_TEST(fs::is_symlink(active("link")));
}

// A move never overwrites a file at its target that may be a newer
// program's record (unparseable, without schema_version, of a newer
// schema): that could lose it. The seed's rename would; this is the seed's
// own upsert rule applied to the target of a move.
BOOST_AUTO_TEST_CASE(a_move_never_overwrites_a_target_it_cannot_read) {
    const std::string newer = R"({"schema_version": 9, "data": {"instance_id": "a1"}})";
    reg.upsert(record("a1"));
    write_text(retired("a1"), newer);
    const auto retire = reg.retire("a1");
    BOOST_TEST((retire.status == procreg::tombstone_status::skipped));
    BOOST_TEST(retire.skipped->path == retired("a1"));
    BOOST_TEST(read_text(retired("a1")) == newer);
    BOOST_TEST(fs::exists(active("a1")));

    write_text(active("b1"), "{ nope");
    write_text(retired("b1"), R"({"schema_version": 1, "data": {"instance_id": "b1"}})");
    const auto unretire = reg.unretire("b1");
    BOOST_TEST((unretire.status == procreg::tombstone_status::skipped));
    BOOST_TEST(unretire.skipped->path == active("b1"));
    BOOST_TEST(read_text(active("b1")) == "{ nope");
}

BOOST_AUTO_TEST_CASE(hard_delete_drops_both_copies) {
    reg.upsert(record("a1", "first"));
    reg.retire("a1");
    reg.upsert(record("a1", "second"));  // an active copy again, beside the retired one
    BOOST_REQUIRE(fs::exists(active("a1")));
    BOOST_REQUIRE(fs::exists(retired("a1")));

    BOOST_TEST(reg.hard_delete("a1"));
    BOOST_TEST(!fs::exists(active("a1")));
    BOOST_TEST(!fs::exists(retired("a1")));
    BOOST_TEST(!reg.exists_anywhere("a1"));
    BOOST_TEST(!reg.hard_delete("a1"));  // idempotent
    BOOST_TEST(!reg.hard_delete("never-existed"));

    // Only-retired and only-active cases.
    reg.upsert(record("b"));
    reg.retire("b");
    BOOST_TEST(reg.hard_delete("b"));
    BOOST_TEST(!fs::exists(retired("b")));
    reg.upsert(record("c"));
    BOOST_TEST(reg.hard_delete("c"));
    BOOST_TEST(!fs::exists(active("c")));
    BOOST_TEST(fs::is_empty(root / "retired"));
}

BOOST_AUTO_TEST_CASE(exists_versus_exists_anywhere) {
    BOOST_TEST(!reg.exists("a1"));
    BOOST_TEST(!reg.exists_anywhere("a1"));
    reg.upsert(record("a1"));
    BOOST_TEST(reg.exists("a1"));
    BOOST_TEST(reg.exists_anywhere("a1"));
    reg.retire("a1");
    BOOST_TEST(!reg.exists("a1"));
    BOOST_TEST(reg.exists_anywhere("a1"));  // so a migration does not resurrect a forgotten agent

    // Like the seed, exists does not validate: an unreadable file exists.
    write_text(active("junk"), "not json");
    BOOST_TEST(reg.exists("junk"));
    BOOST_TEST(!reg.find("junk"));
}

BOOST_AUTO_TEST_CASE(list_active_skips_invalid_files_and_reports_each) {
    reg.upsert(record("good-1"));
    reg.upsert(record("good-2"));
    reg.upsert(record("gone"));
    reg.retire("gone");  // retired: not listed, not skipped
    write_text(active("corrupt"), "{ nope");
    write_text(active("mismatch"), R"({"schema_version": 1, "data": {"instance_id": "someone-else"}})");
    write_text(active("newer"), R"({"schema_version": 7, "data": {"instance_id": "newer"}})");
    write_text(active("unversioned"), R"({"data": {"instance_id": "unversioned"}})");
    write_text(active("no-data"), R"({"schema_version": 1})");
    write_text(root / "bad name.json", R"({"schema_version": 1, "data": {"instance_id": "bad name"}})");
    write_text(root / ".hidden.json", R"({"schema_version": 1, "data": {"instance_id": ".hidden"}})");
    // Not record files at all: passed over silently.
    write_text(root / "notes.txt", "hello");
    write_text(root / ".good-1.json.tmp-999999-1-2", "{");  // someone's temp file
    fs::create_directory(root / "dir.json");

    const auto listing = reg.list_active();
    // Names the seed lists are listed: a space, a leading dot.
    BOOST_TEST((ids(listing.records) == std::set<std::string>{"good-1", "good-2", "bad name", ".hidden"}));

    const auto expect = [&](const std::string& name, const std::string& word) {
        const auto* s = skipped_named(listing.skipped, name);
        BOOST_TEST_CONTEXT(name) {
            BOOST_REQUIRE(s != nullptr);
            BOOST_TEST(s->reason.find(word) != std::string::npos, s->reason);
        }
    };
    expect("corrupt.json", "parse");
    expect("mismatch.json", "someone-else");
    expect("newer.json", "above the highest");
    expect("unversioned.json", "schema_version");
    expect("no-data.json", "data");
    BOOST_TEST(listing.skipped.size() == 5u);

    // Nothing was repaired or removed by listing.
    BOOST_TEST(read_text(active("corrupt")) == "{ nope");
    BOOST_TEST(fs::exists(root / "notes.txt"));

    // The generic list() agrees, and every record is alive (no liveness).
    const auto rows = reg.list();
    BOOST_TEST(rows.size() == 4u);
    for (const auto& row : rows) BOOST_TEST(row.alive);
    BOOST_TEST(reg.reap().empty());
}

BOOST_AUTO_TEST_CASE(keys_that_are_not_file_names_are_rejected_before_touching_the_disk) {
    reg.upsert(record("a1"));
    write_text(dir / "agents" / "x.json", R"({"schema_version": 1, "data": {"instance_id": "x"}})");
    const auto before_root = snapshot(root);
    const auto before_parent = snapshot(dir.path());

    // Only what is unsafe as a file name: separators, NUL, "." and "..", a
    // name too long for its temp file, procreg's temp-file shape, the lock file.
    const std::size_t longest = procreg::agentmux::max_instance_id_length();
    const std::vector<std::string> bad = {"../x", "a/b", "", ".", "..", std::string("a\0b", 3),
                                          std::string(longest + 1, 'k'), "/abs", "x.json/../y",
                                          ".a.json.tmp-1-2-3"};
    for (const std::string& key : bad) {
        BOOST_TEST_CONTEXT("key " << procreg::detail::quote_record_key(key)) {
            const auto expect_invalid = [&](auto&& call) {
                try {
                    call();
                    BOOST_FAIL("accepted");
                } catch (const procreg::error& e) {
                    BOOST_TEST((e.code() == procreg::errc::invalid_key));
                    BOOST_TEST(e.key() == key);
                }
            };
            expect_invalid([&] { reg.upsert(record(key)); });
            expect_invalid([&] { reg.insert(record(key)); });
            expect_invalid([&] { reg.find(key); });
            expect_invalid([&] { reg.erase(key); });
            expect_invalid([&] { reg.retire(key); });
            expect_invalid([&] { reg.unretire(key); });
            expect_invalid([&] { reg.hard_delete(key); });
            expect_invalid([&] { reg.exists(key); });
            expect_invalid([&] { reg.exists_anywhere(key); });
            std::error_code ec;
            reg.upsert(record(key), ec);
            BOOST_TEST((ec == procreg::errc::invalid_key));
        }
    }
    BOOST_TEST((snapshot(root) == before_root));
    BOOST_TEST((snapshot(dir.path()) == before_parent));
    // The longest legal key works, its temp file name included, twice (insert, then merge).
    const std::string longest_key(longest, 'k');
    BOOST_TEST((reg.upsert(record(longest_key)).status == procreg::upsert_status::inserted));
    BOOST_TEST((reg.upsert(record(longest_key, "again")).status == procreg::upsert_status::replaced));
    BOOST_TEST(fs::exists(active(longest_key)));
}

// Every other name is accepted, as the seed accepts it: spaces, a leading
// dot or dash, backslashes, long names, non-ASCII, a name ending in ".json".
BOOST_AUTO_TEST_CASE(keys_the_seed_accepts_are_accepted) {
    BOOST_TEST(procreg::agentmux::max_instance_id_length() == 179u);  // 255 less ".json" and the 71-byte temp suffix
    const std::vector<std::string> keys = {"a b", ".hidden", "-rf", "a\\b", "..\\x", std::string(129, 'k'),
                                           "ünïcødé", "x.json", "registry", ".registry", "retired"};
    for (const std::string& key : keys) {
        BOOST_TEST_CONTEXT("key " << procreg::detail::quote_record_key(key)) {
            BOOST_TEST((reg.upsert(record(key)).status == procreg::upsert_status::inserted));
            BOOST_TEST(fs::exists(active(key)));
            BOOST_TEST(reg.find(key).has_value());
            BOOST_TEST((reg.retire(key).status == procreg::tombstone_status::moved));
            BOOST_TEST(fs::exists(retired(key)));
            BOOST_TEST((reg.unretire(key).status == procreg::tombstone_status::moved));
        }
    }
    const auto listing = reg.list_active();
    BOOST_TEST(listing.skipped.empty());
    BOOST_TEST(ids(listing.records) == std::set<std::string>(keys.begin(), keys.end()));
    for (const std::string& key : keys) BOOST_TEST(reg.hard_delete(key));
    BOOST_TEST(reg.list_active().records.empty());

    // A lock file that a key could name (a `.json` name in the root) is
    // refused when the registry opens, so no record can ever be the lock.
    auto opts = procreg::agentmux::options(dir / "other");
    opts.lock_file = dir / "other" / "lockname.json";
    try {
        auto other = procreg::agentmux::open<test_registry>(opts);
        other.upsert(record("lockname"));
        BOOST_FAIL("a lock file named like a record was accepted");
    } catch (const procreg::error& e) {
        BOOST_TEST((e.code() == procreg::errc::unsafe_path), e.what());
    }
    BOOST_TEST(!fs::exists(dir / "other" / "lockname.json"));
}

BOOST_AUTO_TEST_CASE(several_processes_upserting_different_records_lose_nothing) {
    agentmux_cases::several_processes_upserting_different_records_lose_nothing(*this);
    BOOST_TEST(list_active_skips_nothing());
    // No temp file left behind.
    for (const auto& entry : fs::directory_iterator(root))
        BOOST_TEST(entry.path().filename().string().find(".tmp-") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(concurrent_upserts_of_one_record_are_never_torn) {
    agentmux_cases::concurrent_upserts_of_one_record_are_never_torn(*this);
    BOOST_TEST(list_active_skips_nothing());
}

BOOST_AUTO_TEST_CASE(a_newer_schema_file_survives_every_operation_unchanged) {
    const std::string newer =
        "{\"schema_version\": 3, \"data\": {\"instance_id\": \"n\", \"display_name\": \"v3\", \"v3\": [1]}, "
        "\"v3_top\": true}";
    write_text(active("n"), newer);
    const std::string newer_retired = "{\"schema_version\": 9, \"data\": {\"instance_id\": \"r\"}}";
    write_text(retired("r"), newer_retired);
    reg.upsert(record("r"));  // a valid active copy of "r" beside the newer retired one
    const std::string r_active = read_text(active("r"));

    const auto unchanged = [&] {
        BOOST_TEST(read_text(active("n")) == newer);
        BOOST_TEST(read_text(retired("r")) == newer_retired);
        BOOST_TEST(read_text(active("r")) == r_active);
    };

    BOOST_TEST((reg.upsert(record("n")).status == procreg::upsert_status::skipped));
    unchanged();
    BOOST_CHECK_THROW(reg.insert(record("n")), procreg::error);
    unchanged();
    BOOST_TEST(!reg.find("n"));
    BOOST_TEST(!reg.erase("n"));  // not a record for this program
    unchanged();
    reg.transact([](auto& tx) { BOOST_TEST(!tx.modify("n", [](agent_record& r) { r.data.name = "x"; })); });
    unchanged();
    // Retire and unretire move it as the seed does: its bytes go and come back intact.
    BOOST_TEST((reg.retire("n").status == procreg::tombstone_status::moved));
    BOOST_TEST(read_text(retired("n")) == newer);
    BOOST_TEST((reg.unretire("n").status == procreg::tombstone_status::moved));
    unchanged();
    // Retiring "r" would overwrite the newer retired copy: refused.
    const auto retire_r = reg.retire("r");
    BOOST_TEST((retire_r.status == procreg::tombstone_status::skipped));
    BOOST_TEST(retire_r.skipped->path == retired("r"));
    unchanged();
    const auto listing = reg.list_active();
    BOOST_TEST(ids(listing.records) == std::set<std::string>{"r"});
    BOOST_TEST(skipped_named(listing.skipped, "n.json") != nullptr);
    unchanged();
    BOOST_TEST(reg.reap().empty());
    BOOST_TEST(reg.exists("n"));
    BOOST_TEST(reg.exists_anywhere("r"));
    unchanged();
    // A fresh process opening the registry (temp sweep) leaves it alone too.
    { auto other = procreg::agentmux::open<test_registry>(root); (void)other.list_active(); }
    unchanged();
    // Unretiring the newer retired "r" moves it over the active copy, which
    // this program can read (a valid record may be replaced, as by upsert):
    // the seed's rename. The newer file itself is intact.
    BOOST_TEST((reg.unretire("r").status == procreg::tombstone_status::moved));
    BOOST_TEST(read_text(active("r")) == newer_retired);
    BOOST_TEST(!fs::exists(retired("r")));
}

BOOST_AUTO_TEST_CASE(a_transaction_that_throws_writes_nothing) {
    reg.upsert(record("a1", "before"));
    const auto before = snapshot(root);
    BOOST_CHECK_THROW(reg.transact([](auto& tx) {
                          tx.upsert(record("a1", "after"));
                          tx.upsert(record("a2"));
                          tx.retire("a1");
                          tx.hard_delete("a1");
                          throw std::runtime_error("changed my mind");
                      }),
                      std::runtime_error);
    BOOST_TEST((snapshot(root) == before));
}

BOOST_AUTO_TEST_CASE(error_code_overloads_report_instead_of_throwing) {
    std::error_code ec;
    reg.upsert(record("a1"), ec);
    BOOST_TEST(!ec);
    const auto moved = reg.retire("a1", ec);
    BOOST_TEST(!ec);
    BOOST_TEST_REQUIRE(moved.has_value());
    BOOST_TEST((moved->status == procreg::tombstone_status::moved));
    const auto back = reg.unretire("a1", ec);
    BOOST_TEST_REQUIRE(back.has_value());
    BOOST_TEST((back->status == procreg::tombstone_status::moved));
    BOOST_TEST((reg.hard_delete("a1", ec) == true));
    BOOST_TEST(!ec);
    BOOST_TEST(!reg.retire("../x", ec).has_value());  // a failure is no outcome, not "unchanged"
    BOOST_TEST((ec == procreg::errc::invalid_key));
    BOOST_TEST(!reg.hard_delete("a/b", ec).has_value());
    BOOST_TEST((ec == procreg::errc::invalid_key));
}

BOOST_AUTO_TEST_SUITE_END()
