// json_table's patched re-read (issue 17, detail/json_table/patch.hpp): a
// file that differs from the kept one in one stretch is read by patching
// the kept state. Whenever the patch is taken it must give exactly what a
// fresh load of the new file gives — the same records in the same order,
// the same spans, the same index — and whenever the new file is not a table
// (or a change lies outside the records array, or a key appears twice) it
// must refuse and leave the kept state as it was, so that the loads run and
// word the error.
#define BOOST_TEST_MODULE procreg json_table patched reread
#include <boost/test/unit_test.hpp>

#include <procreg/presets/algocline.hpp>
#include <procreg/storage/json_table.hpp>

#include "support/algocline_texts.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <optional>
#include <random>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using procreg::algocline::pool_session;
namespace impl = procreg::detail::json_table_impl;
using state = impl::table_state<pool_session>;
using procreg_test::pretty;
using procreg_test::session;
using procreg_test::table_of;

namespace {

std::vector<std::string> texts_of(const std::vector<pool_session>& records) {
    std::vector<std::string> out;
    for (const auto& r : records) out.push_back(pretty(r));
    return out;
}

std::vector<pool_session> numbered(int count) {
    std::vector<pool_session> out;
    for (int i = 0; i < count; ++i) out.push_back(session("s" + std::to_string(i), static_cast<std::uint32_t>(i + 1)));
    return out;
}

// The state a direct load of `text` gives; nothing when it gives up.
std::optional<state> loaded(const std::string& text) {
    state st;
    st.bytes = text;
    if (!impl::load_directly(st, "sessions", 32)) return std::nullopt;
    return st;
}

// Every record, span and index entry of `got` is that of `want`.
void check_same_state(const state& got, const state& want) {
    BOOST_TEST_REQUIRE(got.bytes == want.bytes);
    BOOST_TEST(boost::json::serialize(got.top) == boost::json::serialize(want.top));
    BOOST_TEST_REQUIRE(got.slots.size() == want.slots.size());
    BOOST_TEST_REQUIRE(got.index.size() == want.index.size());
    for (std::size_t i = 0; i < got.slots.size(); ++i) {
        const auto& g = got.slots[i];
        const auto& w = want.slots[i];
        BOOST_TEST_REQUIRE(g.record.has_value());
        BOOST_TEST((g.record->value == w.record->value), "record " << i);
        BOOST_TEST((procreg::detail::merge_over(g.record->json, g.record->value) ==
                    procreg::detail::merge_over(w.record->json, w.record->value)),
                   "record " << i);
        BOOST_TEST(g.offset == w.offset, "record " << i);
        BOOST_TEST(g.length == w.length, "record " << i);
        BOOST_TEST(g.verified == w.verified, "record " << i);
        BOOST_TEST(!g.in_fresh);
        BOOST_TEST(got.find(procreg::detail::key_of(g.record->value)) == i);
    }
}

// Patches the state of `before` with `after`: whether the patch was taken;
// when it was, the result is checked against a fresh load of `after`; when
// not, the kept state must be as it was.
bool patch_and_check(const std::string& before, const std::string& after) {
    std::optional<state> stale = loaded(before);
    BOOST_TEST_REQUIRE(stale.has_value());
    std::string bytes = after;
    if (!impl::patch_stale(*stale, bytes, 32)) {
        BOOST_TEST(bytes == after);
        check_same_state(*stale, *loaded(before));
        return false;
    }
    const std::optional<state> fresh = loaded(after);
    BOOST_TEST_REQUIRE(fresh.has_value(), "the patch took a file the direct load refuses");
    check_same_state(*stale, *fresh);
    return true;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(patched_reread)

// The changes one writer makes in one transaction — a record inserted,
// erased or changed at the front, in the middle or at the end — are patched
// in, and give what a fresh load gives.
BOOST_AUTO_TEST_CASE(one_change_anywhere_is_patched_exactly) {
    const auto base = numbered(12);
    const std::string before = table_of(texts_of(base));
    for (std::size_t at = 0; at <= base.size(); ++at) {
        auto inserted = base;
        inserted.insert(inserted.begin() + static_cast<std::ptrdiff_t>(at), session("new"));
        BOOST_TEST(patch_and_check(before, table_of(texts_of(inserted))), "insert at " << at);
    }
    for (std::size_t at = 0; at < base.size(); ++at) {
        auto erased = base;
        erased.erase(erased.begin() + static_cast<std::ptrdiff_t>(at));
        BOOST_TEST(patch_and_check(before, table_of(texts_of(erased))), "erase at " << at);
        auto changed = base;
        changed[at].pid = 77;  // the same length: only the bytes tell
        BOOST_TEST(patch_and_check(before, table_of(texts_of(changed))), "change at " << at);
        changed[at].sock += "/longer";
        BOOST_TEST(patch_and_check(before, table_of(texts_of(changed))), "longer at " << at);
    }
    BOOST_TEST(patch_and_check(before, before));  // the same bytes
    BOOST_TEST(patch_and_check(before, table_of({})));  // every record erased: an empty array
    auto two = base;
    two.erase(two.begin() + 3, two.begin() + 5);
    two.insert(two.begin() + 3, session("x"));
    BOOST_TEST(patch_and_check(before, table_of(texts_of(two))));
}

// A record written in another spelling (same value) is read through the
// strict parser, its object kept and its bytes not taken as its encoding,
// as the direct load reads it.
BOOST_AUTO_TEST_CASE(a_record_in_another_spelling_is_read_as_the_direct_load_reads_it) {
    auto texts = texts_of(numbered(5));
    const std::string before = table_of(texts);
    texts[2] = R"({"sid": "s2", "pid": 3, "sock": "/run/s.sock", "version": "0.30.0",
      "created_at": "2026-01-01T00:00:00Z", "extra": [1, {"deep": true}]})";
    BOOST_TEST(patch_and_check(before, table_of(texts)));
    std::optional<state> stale = loaded(before);
    std::string bytes = table_of(texts);
    BOOST_TEST_REQUIRE(impl::patch_stale(*stale, bytes, 32));
    BOOST_TEST(!stale->slots[2].verified);
    BOOST_TEST(stale->slots[2].record->json.contains("extra"));
}

// Files that are not tables, changes outside the records array, a key
// twice, too many records in one stretch: refused, the kept state as it
// was (patch_and_check asserts it).
BOOST_AUTO_TEST_CASE(anything_else_is_refused_and_the_kept_state_left_as_it_was) {
    const auto base = numbered(6);
    const auto texts = texts_of(base);
    const std::string before = table_of(texts);

    auto twice = texts;
    twice.insert(twice.begin() + 4, pretty(session("s0")));  // s0 is in the unchanged prefix
    BOOST_TEST(!patch_and_check(before, table_of(twice)));
    auto twice_inside = texts;
    twice_inside.insert(twice_inside.begin() + 3, {pretty(session("n")), pretty(session("n"))});
    BOOST_TEST(!patch_and_check(before, table_of(twice_inside)));

    // A stretch record repeating the key of the record just before the
    // stretch, or just after it.
    auto twice_before = texts;
    twice_before[3] = pretty(session("s2", 9));
    BOOST_TEST(!patch_and_check(before, table_of(twice_before)));
    auto twice_after = texts;
    twice_after[3] = pretty(session("s4", 9));
    BOOST_TEST(!patch_and_check(before, table_of(twice_after)));
    auto moved_key = texts;
    moved_key[3] = pretty(session("s3", 9));  // its own key: a change, taken
    BOOST_TEST(patch_and_check(before, table_of(moved_key)));

    std::string no_comma = before;
    no_comma.erase(no_comma.find(",\n    {", no_comma.find("\"s2\"")), 1);
    BOOST_TEST(!patch_and_check(before, no_comma));
    std::string trailing_comma = before;
    trailing_comma.insert(trailing_comma.rfind("\n  ]"), ",");
    BOOST_TEST(!patch_and_check(before, trailing_comma));
    std::string not_an_object = before;
    not_an_object.insert(not_an_object.rfind("\n  ]"), ",\n    7");
    BOOST_TEST(!patch_and_check(before, not_an_object));
    std::string truncated = before;
    truncated.erase(truncated.find("\"pid\"", truncated.find("\"s3\"")), 40);
    BOOST_TEST(!patch_and_check(before, truncated));
    std::string unclosed = before;
    unclosed.insert(unclosed.rfind("\n  ]"), ",\n    {\"sid\": \"u\"");
    BOOST_TEST(!patch_and_check(before, unclosed));

    BOOST_TEST(!patch_and_check(before, table_of(texts, "  \"version\": 2,\n")));  // outside the array
    // A member before or after the array changed, its length the same.
    const std::string with_members = table_of(texts, "  \"a\": 1,\n", ",\n  \"z\": 1");
    BOOST_TEST(!patch_and_check(with_members, table_of(texts, "  \"a\": 2,\n", ",\n  \"z\": 1")));
    BOOST_TEST(!patch_and_check(with_members, table_of(texts, "  \"a\": 1,\n", ",\n  \"z\": 2")));
    BOOST_TEST(!patch_and_check(before, before + " "));                             // after the top level

    auto many = base;
    for (int i = 0; i < static_cast<int>(impl::max_patched) + 1; ++i) many.push_back(session("m" + std::to_string(i)));
    BOOST_TEST(!patch_and_check(before, table_of(texts_of(many))));
    many.pop_back();
    BOOST_TEST(patch_and_check(before, table_of(texts_of(many))));  // max_patched records: taken
}

// Random edits of random tables — records inserted, erased and changed in
// one or several places, bytes flipped, removed or added anywhere — against
// a fresh load: a patch taken is always exact, and a file the loads refuse
// is never patched in.
BOOST_AUTO_TEST_CASE(random_edits_are_patched_exactly_or_refused) {
    std::mt19937 rng(20261206);
    const auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
    std::size_t taken = 0, refused = 0;
    for (int round = 0; round < 600; ++round) {
        const auto base = numbered(1 + static_cast<int>(pick(20)));
        const std::string before = table_of(texts_of(base));
        auto records = base;
        std::string after;
        const std::size_t edits = 1 + pick(3);
        for (std::size_t e = 0; e < edits; ++e) {
            switch (pick(3)) {
                case 0:
                    records.insert(records.begin() + static_cast<std::ptrdiff_t>(pick(records.size() + 1)),
                                   session("r" + std::to_string(round) + "-" + std::to_string(e)));
                    break;
                case 1:
                    if (!records.empty()) records.erase(records.begin() + static_cast<std::ptrdiff_t>(pick(records.size())));
                    break;
                default:
                    if (!records.empty()) records[pick(records.size())].version = std::to_string(rng() % 1000);
            }
        }
        after = table_of(texts_of(records));
        if (pick(3) == 0) {  // and a byte damaged somewhere
            const std::size_t at = pick(after.size());
            switch (pick(3)) {
                case 0: after[at] = static_cast<char>(" ,{}[]\":0a\\"[pick(11)]); break;
                case 1: after.erase(at, 1); break;
                default: after.insert(at, 1, static_cast<char>(",}\" "[pick(4)]));
            }
        }
        std::optional<state> stale = loaded(before);
        BOOST_TEST_REQUIRE(stale.has_value());
        std::string bytes = after;
        const bool patched = impl::patch_stale(*stale, bytes, 32);
        std::optional<state> fresh = loaded(after);
        if (patched) {
            ++taken;
            BOOST_TEST_REQUIRE(fresh.has_value(), "round " << round << ": patched a file the direct load refuses");
            check_same_state(*stale, *fresh);
        } else {
            ++refused;
            check_same_state(*stale, *loaded(before));
        }
        if (!fresh) {  // what the direct load gives up on, the general load must refuse: never patched in
            state general;
            general.bytes = after;
            bool general_ok = true;
            try {
                impl::load_generally(general, "sessions", 32, "t.json");
            } catch (const procreg::error&) {
                general_ok = false;
            }
            BOOST_TEST(!(patched && !general_ok), "round " << round);
        }
    }
    BOOST_TEST_MESSAGE("patched " << taken << ", refused " << refused);
    BOOST_TEST(taken > 300u);  // the random edits mostly change one stretch
    BOOST_TEST(refused > 50u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(patched_reread_through_storage)

// Two storage objects taking turns on one file, as two processes do: each
// transaction finds the other's write, and after every turn both read what
// a fresh storage reads.
BOOST_AUTO_TEST_CASE(two_writers_taking_turns_read_what_a_fresh_storage_reads) {
    procreg_test::temp_dir dir;
    const fs::path file = dir.path() / "registry.json";
    auto opts = procreg::algocline::options(file);
    opts.durable = false;
    auto first = procreg::algocline::open(opts);
    auto second = procreg::algocline::open(opts);
    std::mt19937 rng(17);
    std::vector<std::string> keys;
    for (int turn = 0; turn < 300; ++turn) {
        auto& reg = turn % 2 ? second : first;
        const std::string key = "k" + std::to_string(turn);
        if (keys.empty() || rng() % 3 != 0) {
            reg.insert(session(key, 1 + turn));
            keys.push_back(key);
        } else {
            const std::size_t at = rng() % keys.size();
            BOOST_TEST(reg.erase(keys[at]));
            keys.erase(keys.begin() + static_cast<std::ptrdiff_t>(at));
        }
        auto fresh = procreg::algocline::open(opts);
        const auto want = fresh.list();
        for (auto* r : {&first, &second}) {
            const auto got = r->list();
            BOOST_TEST_REQUIRE(got.size() == want.size(), "turn " << turn);
            for (std::size_t i = 0; i < got.size(); ++i) BOOST_TEST((got[i].record == want[i].record), "turn " << turn);
        }
        BOOST_TEST(want.size() == keys.size());
    }
}

BOOST_AUTO_TEST_SUITE_END()
