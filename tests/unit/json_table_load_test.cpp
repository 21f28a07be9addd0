// json_table's direct load (issue 17): a table file read without a JSON tree
// of the whole — plain records in the pretty format straight from their
// bytes, every other part parsed strictly on its own, unchanged records
// moved over from the state kept of the previous version — must accept
// exactly the files the general load (one strict JSON tree) accepts, refuse
// the others with the very same error, give the same records, and save
// byte for byte what the seed's pretty format writes.
#define BOOST_TEST_MODULE procreg json_table direct load
#include <boost/test/unit_test.hpp>

#include <procreg/presets/algocline.hpp>
#include <procreg/storage/json_table.hpp>

#include "support/algocline_texts.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <optional>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using procreg::algocline::pool_session;
using procreg::storage::json_table;
using procreg_test::temp_dir;
using procreg_test::pretty;
using procreg_test::session;
using procreg_test::table_of;
namespace impl = procreg::detail::json_table_impl;

namespace {

json_table::options table_options(const fs::path& file) {
    json_table::options opts;
    opts.file = file;
    opts.array_key = "sessions";
    opts.durable = false;
    return opts;
}

// What a fresh storage gives for `text`: the records, or the error's errc and what().
struct outcome {
    std::vector<procreg::stored_record<pool_session>> rows;
    std::optional<procreg::errc> code;
    std::string what;
};

outcome load_through_storage(const fs::path& file, const std::string& text, std::size_t max_depth = 32) {
    procreg_test::write_text(file, text);
    auto opts = table_options(file);
    opts.max_depth = max_depth;
    json_table table(opts);
    outcome out;
    try {
        auto s = table.begin<pool_session>();
        s.for_each([&](const procreg::stored_record<pool_session>& r) { out.rows.push_back(r); });
    } catch (const procreg::error& e) {
        out.code = static_cast<procreg::errc>(e.code().value());
        out.what = e.what();
    }
    return out;
}

// The general load alone (one JSON tree of the whole file), as earlier versions read.
outcome load_generally(const fs::path& file, const std::string& text, std::size_t max_depth = 32) {
    impl::table_state<pool_session> state;
    state.bytes = text;
    outcome out;
    try {
        impl::load_generally(state, "sessions", max_depth, file);
        for (const auto& s : state.slots) out.rows.push_back(*s.record);
    } catch (const procreg::error& e) {
        out.code = static_cast<procreg::errc>(e.code().value());
        out.what = e.what();
    }
    return out;
}

bool same_values(const std::vector<procreg::stored_record<pool_session>>& a,
                 const std::vector<procreg::stored_record<pool_session>>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (!(a[i].value == b[i].value)) return false;
        // What a save writes for each: equal, whether or not the object was kept.
        if (procreg::detail::merge_over(a[i].json, a[i].value) != procreg::detail::merge_over(b[i].json, b[i].value)) {
            return false;
        }
    }
    return true;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(plain_reader)

// The reader takes exactly what the pretty writer writes, escapes and
// extreme integers included, and decodes the same value.
BOOST_AUTO_TEST_CASE(reads_back_what_the_pretty_writer_writes) {
    const pool_session odd{std::string("q\"b\\s\n\t\x01\x1f/\x7f\b\f\r", 14), 4294967295u, "", "x", "y"};
    for (const pool_session& r : {session("a"), session("", 0), odd}) {
        const std::string text = pretty(r) + ",";
        std::size_t at = 0;
        pool_session read;
        BOOST_TEST_REQUIRE(impl::read_canonical(std::string_view(text), at, read));
        BOOST_TEST(at == text.size() - 1);
        BOOST_TEST((read == r));
    }
}

// Any other spelling is not taken (it is then parsed strictly and encoded afresh).
BOOST_AUTO_TEST_CASE(refuses_every_other_spelling) {
    const std::string good = pretty(session("a", 12));
    const auto with = [&](const std::string& from, const std::string& to) {
        std::string t = good;
        const auto at = t.find(from);
        BOOST_REQUIRE(at != std::string::npos);
        return t.replace(at, from.size(), to);
    };
    const std::vector<std::string> others = {
        with("\"a\"", "\"\\u0061\""),              // an escape the serializer does not write
        with("/run/s.sock", "\\/run/s.sock"),        // `\/`
        with("\"a\"", "\"\\u001F\""),              // upper-case hex
        with("\"a\"", "\"\\u000a\""),              // \u000a where the serializer writes \n
        with("\"a\"", "\"\xc3\xa9\""),             // non-ASCII: left to the strict parser (UTF-8 check)
        with("12", "012"), with("12", "12.0"), with("12", "1.2e1"), with("12", "-12"),
        with("\"pid\": 12", "\"pid\": -0"),
        with(": ", ":"), with(",\n", " ,\n"), with("\n    }", "\n  }"), with("{\n", "{ \n"),
        with("\"sid\": \"a\",\n      \"pid\": 12", "\"pid\": 12,\n      \"sid\": \"a\""),  // members out of order
        with("\n    }", ",\n      \"extra\": 1\n    }"),                                  // an unknown member
        with("\"sid\": \"a\",\n      ", ""),                                                // a missing member
        with("\"a\"", "\"a\x01\""),                                                        // a raw control byte
        good.substr(0, good.size() - 1),                                                    // cut short
    };
    for (const std::string& text : others) {
        std::size_t at = 0;
        pool_session read;
        BOOST_TEST(!impl::read_canonical(std::string_view(text), at, read), text);
    }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(strictness)

// Every file below is refused by the storage with the error the general
// load gives — the same errc, path and words — and every accepted one gives
// the same records.
BOOST_AUTO_TEST_CASE(the_direct_load_accepts_and_refuses_as_the_general_load_does) {
    temp_dir dir;
    const fs::path file = dir.path() / "registry.json";
    const std::string a = pretty(session("a")), b = pretty(session("b"));
    std::string dup_member = a;
    dup_member.insert(dup_member.find("\n    }"), ",\n      \"pid\": 2");
    std::string deep = "1";
    for (int i = 0; i < 40; ++i) deep = "[" + deep + "]";
    std::string extra = b;
    extra.insert(extra.find("\n    }"), ",\n      \"extra\": {\"k\": [1, 2.5, null]}");
    const std::vector<std::pair<std::string, bool>> files = {
        {table_of({a, b}), true},
        {table_of({}), true},
        {"{}", true},
        {" \n{\"other\": {\"x\": [1]}, \"sessions\": [" + a + "]} \n", true},
        {table_of({a, extra}), true},
        {table_of({a, b}, "  \"s\\u0065ssions\": 1,\n"), false},  // an escaped top-level key: which is it?
        {table_of({a, b}, "  \"k\\u0065y\": 1,\n"), true},
        {table_of({a, a}), false},                                   // one key twice
        {table_of({dup_member}), false},                             // a member twice in a record
        {table_of({a}, "  \"x\": 1,\n  \"x\": 2,\n"), false},        // a top-level member twice
        {table_of({a}, "", ",\n  \"sessions\": []"), false},         // the records member twice
        {table_of({a}, "  \"deep\": " + deep + ",\n"), false},      // past max_depth
        {table_of({a}, "  \"big\": 1e400,\n"), false},              // a number out of range
        {table_of({a}, "  \"tiny\": 1e-400,\n"), true},
        {table_of({a, "{\"sid\": \"c\", \"pid\": 1e400}"}), false},
        {table_of({a}) + "x", false},                                // bytes after the top level
        {table_of({a}) + "{}", false},
        {"{\"sessions\": [" + a + ",]}", false},                     // a trailing comma
        {"{\"sessions\": [" + a + "", false},                        // cut short
        {"{\"sessions\": [" + a + "]", false},
        {"[" + a + "]", false},                                      // top level not an object
        {"{\"sessions\": {}}", false},                               // records not an array
        {"{\"sessions\": [1]}", false},                              // a record not an object
        {table_of({"{\"sid\": \"c\", \"pid\": \"1\", \"sock\": \"\", \"version\": \"\", \"created_at\": \"\"}"}),
         false},                                                      // a type error
        {table_of({"{\"sid\": \"c\"}"}), false},                     // missing fields
        {table_of({"{\"sid\": \"\xff\", \"pid\": 1, \"sock\": \"\", \"version\": \"\", \"created_at\": \"\"}"}),
         false},                                                      // not UTF-8
        {table_of({"{\"sid\": \"\xc3\xa9\", \"pid\": 1, \"sock\": \"\", \"version\": \"\", \"created_at\": \"\"}"}),
         true},
        {table_of({a}, "  \"bad\": \"\xc0\xaf\",\n"), false},        // an overlong encoding at the top level
        {table_of({a}, "  \"ctl\": \"\x01\",\n"), false},            // a raw control byte
        {"", false},
        {"\xef\xbb\xbf{}", false},                                    // a byte order mark
    };
    for (const auto& [text, accepted] : files) {
        const outcome direct = load_through_storage(file, text);
        const outcome general = load_generally(file, text);
        BOOST_TEST(!direct.code.has_value() == accepted, text << " -> " << direct.what);
        BOOST_TEST((direct.code == general.code), text);
        BOOST_TEST(direct.what == general.what, text);
        if (accepted) BOOST_TEST(same_values(direct.rows, general.rows), text);
    }
}

// The errors' words, as users and tests of earlier versions see them.
BOOST_AUTO_TEST_CASE(errors_name_the_path_and_the_cause) {
    temp_dir dir;
    const fs::path file = dir.path() / "registry.json";
    const std::string a = pretty(session("a"));
    std::string dup_member = a;
    dup_member.insert(dup_member.find("\n    }"), ",\n      \"pid\": 2");
    const outcome twice = load_through_storage(file, table_of({a, a}));
    BOOST_TEST((twice.code == procreg::errc::corrupted_file));
    BOOST_TEST(twice.what.find(file.string()) != std::string::npos, twice.what);
    BOOST_TEST(twice.what.find("sessions[1]: duplicate key \"a\"") != std::string::npos, twice.what);
    const outcome member = load_through_storage(file, table_of({dup_member}));
    BOOST_TEST(member.what.find("duplicate member \"pid\"") != std::string::npos, member.what);
    const outcome shallow = load_through_storage(file, table_of({a}), 2);
    BOOST_TEST((shallow.code == procreg::errc::corrupted_file));
    BOOST_TEST(shallow.what.find("too deep") != std::string::npos, shallow.what);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(another_writer)

// A registry object that kept its state finds a file another process
// changed in several places — records inserted, changed (same key) and
// erased, at the front, the middle and the end — and reads exactly what
// the file now holds (the unchanged records moved over from its stale
// state, the others read afresh), then saves the seed's format byte for byte.
BOOST_AUTO_TEST_CASE(a_stale_state_gives_exactly_the_new_file) {
    temp_dir dir;
    const fs::path file = dir.path() / "registry.json";
    auto opts = procreg::algocline::options(file);
    opts.durable = false;
    auto reg = procreg::algocline::open(opts);
    reg.transact([&](auto& tx) {
        for (int i = 0; i < 20; ++i) tx.insert(session("s" + std::to_string(i), 1));
    });
    BOOST_TEST_REQUIRE(reg.list().size() == 20u);  // keeps its state of that file
    std::vector<pool_session> expected;
    expected.push_back(session("new-front", 1));
    for (int i = 0; i < 20; ++i) {
        if (i == 0 || i == 7 || i == 8 || i == 19) continue;  // erased
        // 3 and 12 changed: 12 keeps its length (pid 1 -> 7), so only its bytes tell.
        expected.push_back(session("s" + std::to_string(i), i == 3 ? 4242 : i == 12 ? 7 : 1));
        if (i == 10) expected.push_back(session("new-middle", 1));
    }
    expected.push_back(session("new-end", 1));
    std::vector<std::string> texts;
    for (const auto& r : expected) texts.push_back(pretty(r));
    const pid_t writer = procreg_test::spawn([&] {
        procreg_test::write_text(file, table_of(texts));
        return 0;
    });
    BOOST_TEST_REQUIRE(procreg_test::wait_exit(writer) == 0);
    const auto rows = reg.list();
    BOOST_TEST_REQUIRE(rows.size() == expected.size());
    for (std::size_t i = 0; i < rows.size(); ++i) BOOST_TEST((rows[i].record == expected[i]), i);
    BOOST_TEST((reg.find("s3")->pid == 4242u));
    BOOST_TEST((reg.find("s12")->pid == 7u));
    BOOST_TEST(!reg.find("s0").has_value());
    reg.insert(session("last", 1));
    texts.push_back(pretty(session("last", 1)));
    BOOST_TEST(procreg_test::read_text(file) == table_of(texts));

    // Changes that keep every record's length: the file lines up with the
    // stale state record for record, and only the bytes tell what changed.
    expected.push_back(session("last", 1));
    expected[2].pid = 8;
    expected[9].pid = 9;
    texts.clear();
    for (const auto& r : expected) texts.push_back(pretty(r));
    const pid_t again = procreg_test::spawn([&] {
        procreg_test::write_text(file, table_of(texts));
        return 0;
    });
    BOOST_TEST_REQUIRE(procreg_test::wait_exit(again) == 0);
    const auto same_length = reg.list();
    BOOST_TEST_REQUIRE(same_length.size() == expected.size());
    for (std::size_t i = 0; i < same_length.size(); ++i) BOOST_TEST((same_length[i].record == expected[i]), i);
}

// A record the other writer rewrote in another spelling (same value) is
// read afresh, not moved over, and the save writes the pretty format.
BOOST_AUTO_TEST_CASE(a_record_respelled_is_read_afresh_and_saved_pretty) {
    temp_dir dir;
    const fs::path file = dir.path() / "registry.json";
    auto opts = procreg::algocline::options(file);
    opts.durable = false;
    auto reg = procreg::algocline::open(opts);
    reg.insert(session("a"));
    reg.insert(session("b"));
    BOOST_TEST_REQUIRE(reg.list().size() == 2u);
    const std::string compact_b =
        "{\"sid\":\"b\",\"pid\":1,\"sock\":\"/run/s.sock\",\"version\":\"0.30.0\",\"created_at\":"
        "\"2026-01-01T00:00:00Z\",\"later\":true}";
    procreg_test::write_text(file, table_of({pretty(session("a")), compact_b}));
    reg.insert(session("c"));
    std::string b_kept = pretty(session("b"));
    b_kept.insert(b_kept.find("\n    }"), ",\n      \"later\": true");
    BOOST_TEST(procreg_test::read_text(file) == table_of({pretty(session("a")), b_kept, pretty(session("c"))}));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(plain_writer)

// A new plain record is written by the plain encoder and proven by the
// plain reader (issue 17) instead of a JSON tree, pretty print and strict
// parse. It must write the bytes the tree path writes, accept exactly the
// records that path accepts (read_back), refuse the others with the same
// errc, and leave in the kept state what a fresh load of the file gives.
BOOST_AUTO_TEST_CASE(a_new_record_is_saved_and_refused_as_the_general_encoder_does) {
    const std::string big(300, 'z');
    const std::vector<pool_session> records = {
        session("a"),
        session("", 0),
        pool_session{std::string("q\"b\\s\n\t\x01\x1f/\x7f\b\f\r", 14), 4294967295u, "", "x", "y"},
        pool_session{"caf\xc3\xa9", 7, "/run/\xe2\x82\xac.sock", "v", "t"},  // UTF-8: not plain ASCII
        pool_session{"bad\xff", 7, "s", "v", "t"},                           // not UTF-8: refused
        pool_session{"big", 7, big, "v", "t"},                               // above a small size limit
    };
    for (const std::size_t max_file_bytes : {std::size_t{64} << 20, std::size_t{300}}) {
        for (const std::size_t max_depth : {std::size_t{32}, std::size_t{3}, std::size_t{2}}) {
            for (std::size_t i = 0; i < records.size(); ++i) {
                const pool_session& r = records[i];
                BOOST_TEST_CONTEXT("record " << i << ", max_file_bytes " << max_file_bytes << ", max_depth " << max_depth) {
                    // The general encoder: a JSON tree, pretty printed, read back.
                    std::string expected;
                    procreg::detail::pretty_print_into(expected, boost::json::value(procreg::detail::merge_over(boost::json::object(), r)), 2);
                    bool accepted = true;
                    try {
                        procreg::detail::read_back<pool_session>(
                            expected, impl::record_limits(max_depth, max_file_bytes, "sessions"));
                    } catch (const procreg::detail::decode_error&) {
                        accepted = false;
                    }
                    accepted = accepted && table_of({expected}).size() <= max_file_bytes;

                    temp_dir dir;
                    const fs::path file = dir.path() / "registry.json";
                    auto opts = table_options(file);
                    opts.max_file_bytes = max_file_bytes;
                    opts.max_depth = max_depth;
                    json_table table(opts);
                    std::optional<procreg::errc> code;
                    try {
                        auto s = table.begin<pool_session>();
                        (void)s.put(procreg::stored_record<pool_session>{r, {}});
                        s.commit();
                    } catch (const procreg::error& e) {
                        code = static_cast<procreg::errc>(e.code().value());
                    }
                    BOOST_TEST(!code == accepted);
                    if (!accepted) {
                        BOOST_TEST((code == procreg::errc::invalid_record));
                        BOOST_TEST(!fs::exists(file));
                        continue;
                    }
                    BOOST_TEST(procreg_test::read_text(file) == table_of({expected}));
                    // The kept state (this storage's next session) and a fresh load agree.
                    std::vector<procreg::stored_record<pool_session>> kept;
                    {
                        auto s = table.begin<pool_session>();
                        s.for_each([&](const procreg::stored_record<pool_session>& row) { kept.push_back(row); });
                    }
                    const outcome fresh = load_through_storage(file, procreg_test::read_text(file), max_depth);
                    BOOST_TEST_REQUIRE(!fresh.code);
                    BOOST_TEST(same_values(kept, fresh.rows));
                    BOOST_TEST_REQUIRE(kept.size() == 1u);
                    BOOST_TEST((kept[0].value == r));
                }
            }
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
