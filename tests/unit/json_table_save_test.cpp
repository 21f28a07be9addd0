// json_table's save from the kept text (detail/json_table/save.hpp): a
// table is written from runs of the text it was read from or last wrote
// plus the records encoded since (one writev), and that text is then made
// in place into the file's new text. Whatever the state — read from the
// pretty layout or a compact one, with members around the records array,
// records erased, changed (longer or shorter) and added anywhere, commit
// after commit — the file written must be byte for byte the pretty print of
// the whole table (the seeds' format), the kept text exactly that file, and
// each record's span exactly its text in it.
#define BOOST_TEST_MODULE procreg json_table save from runs
#include <boost/test/unit_test.hpp>

#include <procreg/presets/algocline.hpp>
#include <procreg/storage/json_table.hpp>

#include "support/algocline_texts.hpp"

#include <algorithm>
#include <random>
#include <string>
#include <vector>

using procreg::algocline::pool_session;
namespace impl = procreg::detail::json_table_impl;
using state = impl::table_state<pool_session>;
using procreg_test::pretty;
using procreg_test::session;
using procreg_test::table_of;

namespace {

state loaded(const std::string& text) {
    state st;
    st.bytes = text;
    if (!impl::load_directly(st, "sessions", 32)) impl::load_generally(st, "sessions", 32, "t.json");
    return st;
}

// The table as detail::pretty_print writes the whole top-level object: what
// every save wrote before it was laid out in runs.
std::string reference_text(const state& st) {
    boost::json::object top = st.top;
    boost::json::array records;
    for (const auto& s : st.slots) {
        if (s.record) records.push_back(procreg::detail::merge_over(s.record->json, s.record->value));
    }
    top["sessions"] = std::move(records);
    std::string out;
    procreg::detail::pretty_print_into(out, top, 0);
    return out;
}

// Saves `st` as a commit does; returns the text written (the pieces in order).
std::string save(state& st) {
    st.compact();
    const auto limits = impl::record_limits(32, std::size_t{1} << 26, "sessions");
    std::string scratch;
    const auto layout = impl::lay_out(st, "sessions", [&](state::slot& s) { impl::encode_slot(st, s, limits, scratch, "t.json"); });
    std::string written;
    for (const auto& piece : layout.pieces) written += impl::piece_text(st, layout, piece);
    BOOST_TEST(written.size() == layout.size);
    auto prepared = impl::prepare_adoption(st, layout);
    impl::adopt_layout(st, layout, prepared);
    return written;
}

void check_saved(state& st) {
    const std::string want = reference_text(st);
    const std::string written = save(st);
    if (written != want) {
        std::size_t at = 0;
        while (at < written.size() && at < want.size() && written[at] == want[at]) ++at;
        BOOST_FAIL("the save wrote other bytes than the pretty table, from byte " << at << ": written \""
                   << written.substr(at > 40 ? at - 40 : 0, 120) << "\", pretty \"" << want.substr(at > 40 ? at - 40 : 0, 120)
                   << "\"");
    }
    BOOST_TEST_REQUIRE(st.bytes == written);
    BOOST_TEST(st.fresh.empty());
    for (const auto& s : st.slots) {
        BOOST_TEST_REQUIRE(s.verified);
        BOOST_TEST_REQUIRE(!s.in_fresh);
        std::string text;
        procreg::detail::pretty_print_into(text, boost::json::value(procreg::detail::merge_over(s.record->json, s.record->value)), 2);
        BOOST_TEST_REQUIRE(st.span(s) == text);
    }
    const state again = loaded(written);
    BOOST_TEST_REQUIRE(again.slots.size() == st.slots.size());
    for (std::size_t i = 0; i < st.slots.size(); ++i) BOOST_TEST((again.slots[i].record->value == st.slots[i].record->value));
}

void put(state& st, pool_session record) {
    const std::size_t at = st.find(record.sid);
    if (at == impl::key_index::npos) {
        st.slots.emplace_back().record.emplace(procreg::stored_record<pool_session>{std::move(record), {}});
        const std::size_t position = st.slots.size() - 1;
        st.index.insert(procreg::detail::key_of(st.slots[position].record->value), position, st.key_at());
    } else {
        st.slots[at].record->value = std::move(record);
        st.slots[at].forget_text();
    }
}

std::vector<std::string> starts() {
    std::vector<std::string> texts;
    for (int i = 0; i < 8; ++i) texts.push_back(pretty(session("s" + std::to_string(i), static_cast<std::uint32_t>(i + 1))));
    auto odd = texts;
    odd[3] = R"({"sid": "s3", "pid": 4, "sock": "/run/s.sock", "version": "0.30.0", "created_at": "2026-01-01T00:00:00Z", "extra": [1, {"x": null}]})";
    return {
        table_of(texts),
        table_of(texts, "  \"a\": {\"b\": [1, 2]},\n", ",\n  \"z\": \"]\""),
        table_of(odd),
        table_of({}),
        R"({"sessions":[{"sid":"a","pid":1,"sock":"/s","version":"1","created_at":"t"},{"sid":"b","pid":2,"sock":"/s","version":"1","created_at":"t"}],"x":1})",
        R"({"x": 1})",
    };
}

}  // namespace

BOOST_AUTO_TEST_SUITE(save_from_runs)

// Each kind of change on its own, from every starting layout.
BOOST_AUTO_TEST_CASE(each_change_writes_the_pretty_table_and_keeps_its_text) {
    for (const std::string& start : starts()) {
        state st = loaded(start);
        check_saved(st);  // unchanged: the first save normalises the layout
        put(st, session("added-end", 9));
        check_saved(st);
        if (st.slots.size() > 2) {
            st.erase_at(1);  // runs after it move left
            check_saved(st);
            auto longer = st.slots[0].record->value;
            longer.sock += "/a-much-longer-socket-path";  // runs after it move right
            put(st, longer);
            check_saved(st);
            auto shorter = st.slots[st.slots.size() / 2].record->value;
            shorter.sock = "/s";
            put(st, shorter);
            check_saved(st);
        }
        while (!st.slots.empty()) st.erase_at(st.slots.size() - 1), st.compact();
        check_saved(st);  // empty: "[]"
        put(st, session("again", 1));
        check_saved(st);
    }
}

// Random changes, commit after commit on one state.
BOOST_AUTO_TEST_CASE(random_changes_commit_after_commit) {
    std::mt19937 rng(6);
    const auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
    for (const std::string& start : starts()) {
        state st = loaded(start);
        for (int round = 0; round < 200; ++round) {
            const std::size_t changes = 1 + pick(4);
            for (std::size_t c = 0; c < changes; ++c) {
                const std::size_t live = st.index.size();
                switch (pick(4)) {
                    case 0:
                        put(st, session("r" + std::to_string(pick(40)), static_cast<std::uint32_t>(1 + pick(1000))));
                        break;
                    case 1:
                        if (live > 0) {
                            std::size_t at = pick(st.slots.size());
                            while (!st.slots[at].record) at = (at + 1) % st.slots.size();
                            st.erase_at(at);
                        }
                        break;
                    default:
                        if (live > 0) {
                            std::size_t at = pick(st.slots.size());
                            while (!st.slots[at].record) at = (at + 1) % st.slots.size();
                            auto changed = st.slots[at].record->value;
                            changed.sock = std::string(pick(2) ? pick(20) : pick(600), 'p');  // shorter or much longer: runs move both ways, past each other's places
                            put(st, changed);
                        }
                }
            }
            check_saved(st);
        }
    }
}

// A table that shrank does not keep buffers of its old size: after every
// record of a 3 MB table is erased and saved, the kept text's buffer and the
// buffer of encoded texts are small again.
BOOST_AUTO_TEST_CASE(a_table_that_shrank_keeps_no_large_buffer) {
    state st = loaded(table_of({}));
    for (int i = 0; i < 20000; ++i) put(st, session("k" + std::to_string(i), static_cast<std::uint32_t>(i + 1)));
    check_saved(st);
    BOOST_TEST_REQUIRE(st.bytes.size() > (std::size_t{2} << 20));
    while (!st.slots.empty()) st.erase_at(st.slots.size() - 1), st.compact();
    check_saved(st);
    BOOST_TEST(st.bytes.capacity() < (std::size_t{1} << 20));
    BOOST_TEST(st.fresh.capacity() <= (std::size_t{64} << 10));
}

// Runs of the kept text out of file order (no load or save makes them, but
// the adoption does not assume it): the text is made apart, and is exact.
BOOST_AUTO_TEST_CASE(runs_out_of_order_are_copied_apart) {
    std::vector<std::string> texts;
    for (int i = 0; i < 6; ++i) texts.push_back(pretty(session("s" + std::to_string(i), static_cast<std::uint32_t>(i + 1))));
    state st = loaded(table_of(texts));
    std::reverse(st.slots.begin(), st.slots.end());
    st.index.clear();
    for (std::size_t i = 0; i < st.slots.size(); ++i) {
        st.index.insert(procreg::detail::key_of(st.slots[i].record->value), i, st.key_at());
    }
    const std::string written = save(st);
    const std::vector<std::string> reversed(texts.rbegin(), texts.rend());
    BOOST_TEST((written == table_of(reversed)));
    BOOST_TEST((st.bytes == written));
    for (std::size_t i = 0; i < st.slots.size(); ++i) BOOST_TEST((st.span(st.slots[i]) == reversed[i]));
}

BOOST_AUTO_TEST_SUITE_END()
