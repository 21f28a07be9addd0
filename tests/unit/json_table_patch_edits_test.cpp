// json_table's patched re-read (detail/json_table/patch.hpp) against every
// edit of a file: each single byte deleted, inserted or replaced, random
// splices, and record-level edits of mixed layouts (compact, CRLF, members
// before and after the array, records the plain reader does not take, keys
// spelled with escapes, values the loads refuse). Each patch taken must give
// what a full load of the new file gives — top level, records, objects,
// spans, `verified`, index — and each refusal must leave the kept state as
// it was; a file the loads refuse is never patched in.
#define BOOST_TEST_MODULE procreg json_table patch edits
#include <boost/test/unit_test.hpp>

#include <procreg/presets/algocline.hpp>
#include <procreg/storage/json_table.hpp>

#include "support/algocline_texts.hpp"

#include <optional>
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

enum class how { direct, general, refused };

how full_load(const std::string& text, state& st) {
    st = state();
    st.bytes = text;
    if (impl::load_directly(st, "sessions", 32)) return how::direct;
    try {
        impl::load_generally(st, "sessions", 32, "t.json");
        return how::general;
    } catch (const procreg::error&) {
        return how::refused;
    }
}

// "" when equal, else what differs.
std::string diff(const state& got, const state& want, bool compare_verified = true) {
    if (got.bytes != want.bytes) return "bytes";
    if (boost::json::serialize(got.top) != boost::json::serialize(want.top))
        return "top " + boost::json::serialize(got.top) + " vs " + boost::json::serialize(want.top);
    if (got.slots.size() != want.slots.size()) return "slot count";
    if (got.index.size() != want.index.size()) return "index size";
    if (!got.fresh.empty()) return "fresh";
    for (std::size_t i = 0; i < got.slots.size(); ++i) {
        const auto& g = got.slots[i];
        const auto& w = want.slots[i];
        const std::string at = " at " + std::to_string(i);
        if (!g.record || !w.record) return "hole" + at;
        if (!(g.record->value == w.record->value)) return "value" + at;
        if (boost::json::serialize(g.record->json) != boost::json::serialize(w.record->json)) return "json" + at;
        if (g.offset != w.offset || g.length != w.length) return "span" + at;
        if (compare_verified && g.verified != w.verified) return "verified" + at;
        if (g.in_fresh) return "in_fresh" + at;
        if (got.find(procreg::detail::key_of(g.record->value)) != i) return "index" + at;
    }
    return "";
}

struct tally {
    std::size_t taken = 0, refused = 0, bad = 0;
};

// One (old, new) pair; reports any breach of the patch's contract.
void check_pair(const std::string& old_text, const std::string& new_text, tally& t, const char* what) {
    state kept;
    if (full_load(old_text, kept) == how::refused) return;
    state reference;
    full_load(old_text, reference);
    std::string bytes = new_text;
    const bool patched = impl::patch_stale(kept, bytes, 32);
    if (!patched) {
        ++t.refused;
        const std::string d = diff(kept, reference);
        if (!d.empty() || bytes != new_text) {
            ++t.bad;
            if (t.bad < 20) BOOST_ERROR(what << ": refused but kept state changed: " << d);
        }
        return;
    }
    ++t.taken;
    state fresh;
    const how h = full_load(new_text, fresh);
    std::string d;
    if (h == how::refused) d = "ACCEPTED A FILE THE LOADS REFUSE";
    else d = diff(kept, fresh);
    if (!d.empty()) {
        ++t.bad;
        if (t.bad < 20)
            BOOST_ERROR(what << " (fresh load " << (h == how::direct ? "direct" : h == how::general ? "general" : "refused")
                             << "): " << d << "\n--- old\n" << old_text << "\n--- new\n" << new_text);
    }
}

std::vector<std::string> bases() {
    std::vector<std::string> out;
    std::vector<std::string> texts;
    for (int i = 0; i < 3; ++i) texts.push_back(pretty(session("s" + std::to_string(i), i + 1)));
    out.push_back(table_of(texts));
    out.push_back(table_of(texts, "  \"a\": 1,\n", ",\n  \"z\": [1, 2]"));
    auto mixed = texts;
    mixed[1] = R"({"sid": "s1", "pid": 2, "sock": "/run/s.sock", "version": "0.30.0", "created_at": "2026-01-01T00:00:00Z", "x": {"y": 1}})";
    out.push_back(table_of(mixed, "", ",\n  \"z\": \"]\""));
    out.push_back(R"({"sessions":[{"sid":"a","pid":1,"sock":"/s","version":"1","created_at":"t"},{"sid":"b","pid":2,"sock":"/s","version":"1","created_at":"t"}],"x":1})");
    std::string crlf = table_of({texts[0], texts[1]});
    std::string c;
    for (char ch : crlf) {
        if (ch == '\n') c += '\r';
        c += ch;
    }
    out.push_back(c);
    return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(top_level_member_changed_with_same_length) {
    std::vector<std::string> texts;
    for (int i = 0; i < 3; ++i) texts.push_back(pretty(session("s" + std::to_string(i), i + 1)));
    tally t;
    check_pair(table_of(texts, "  \"a\": 1,\n"), table_of(texts, "  \"a\": 2,\n"), t, "member before");
    check_pair(table_of(texts, "", ",\n  \"z\": 1"), table_of(texts, "", ",\n  \"z\": 2"), t, "member after");
    BOOST_TEST_MESSAGE("taken " << t.taken << " refused " << t.refused << " bad " << t.bad);
    BOOST_TEST(t.bad == 0u);
}

BOOST_AUTO_TEST_CASE(every_single_byte_edit) {
    const std::string alphabet = " ,{}[]\":0129\\\n\r\txa\x80";
    std::size_t total_bad = 0;
    for (const std::string& base : bases()) {
        tally t;
        for (std::size_t at = 0; at <= base.size(); ++at) {
            if (at < base.size()) {
                std::string del = base;
                del.erase(at, 1);
                check_pair(base, del, t, "delete");
            }
            for (char c : alphabet) {
                std::string ins = base;
                ins.insert(at, 1, c);
                check_pair(base, ins, t, "insert");
                if (at < base.size() && base[at] != c) {
                    std::string rep = base;
                    rep[at] = c;
                    check_pair(base, rep, t, "replace");
                }
            }
        }
        BOOST_TEST_MESSAGE("base of " << base.size() << " bytes: taken " << t.taken << " refused " << t.refused
                                      << " bad " << t.bad);
        total_bad += t.bad;
    }
    BOOST_TEST(total_bad == 0u);
}

BOOST_AUTO_TEST_CASE(random_splices) {
    std::mt19937 rng(5);
    const auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
    std::size_t total_bad = 0;
    for (const std::string& base : bases()) {
        tally t;
        for (int round = 0; round < 20000; ++round) {
            std::string next = base;
            const std::size_t edits = 1 + pick(2);
            for (std::size_t e = 0; e < edits; ++e) {
                const std::size_t from = pick(next.size() + 1);
                const std::size_t len = pick(std::min<std::size_t>(next.size() - from, 200) + 1);
                const std::size_t src = pick(base.size() + 1);
                const std::size_t slen = pick(std::min<std::size_t>(base.size() - src, 200) + 1);
                next.replace(from, len, base.substr(src, slen));
            }
            check_pair(base, next, t, "splice");
        }
        BOOST_TEST_MESSAGE("splices of " << base.size() << " bytes: taken " << t.taken << " refused " << t.refused
                                         << " bad " << t.bad);
        total_bad += t.bad;
    }
    BOOST_TEST(total_bad == 0u);
}

namespace {

std::string rec_text(std::mt19937& rng, const std::string& key, int pid) {
    switch (rng() % 12) {
        case 0: return R"({"sid": ")" + key + R"(", "pid": )" + std::to_string(pid) +
                       R"(, "sock": "/s", "version": "1", "created_at": "t"})";
        case 1: return R"({"pid": )" + std::to_string(pid) + R"(,"sid":")" + key +
                       R"(","sock":"/s","version":"1","created_at":"t","extra":[1,{"d":null}]})";
        case 2: return R"({"sid": ")" + key + R"(", "pid": 1e999, "sock": "/s", "version": "1", "created_at": "t"})";
        case 3: return R"({"sid": ")" + key + R"(", "sid": "q", "pid": 1, "sock": "/s", "version": "1", "created_at": "t"})";
        case 4: return R"({"sid": ")" + key + "\xff" + R"(", "pid": 1, "sock": "/s", "version": "1", "created_at": "t"})";
        case 5: return R"({"sid": ")" + key + R"(", "pid": "x", "sock": "/s", "version": "1", "created_at": "t"})";
        case 6: return R"({"sid": ")" + key + R"(", "pid": 1, "sock": "/s", "version": "1", "created_at": "t", "n": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]})";
        case 7: {  // the key spelled with an escape
            std::string k;
            for (char c : key) k += (c == 's' ? std::string("\\u0073") : std::string(1, c));
            return R"({"sid": ")" + k + R"(", "pid": 1, "sock": "/s", "version": "1", "created_at": "t"})";
        }
        default: return pretty(session(key, static_cast<std::uint32_t>(pid)));
    }
}

const char* const separators[] = {",\n    ", ",", " , ", "\n,\n", ",\r\n    "};

std::string file_of(const std::vector<std::pair<std::string, std::string>>& recs, const std::string& open,
                    const std::string& close, const std::string& around) {
    std::string out = "{\n  \"a\": " + around + ",\n  \"sessions\": [" + open;
    for (std::size_t i = 0; i < recs.size(); ++i) {
        if (i) out += recs[i].second;
        out += recs[i].first;
    }
    return out + close + "],\n  \"z\": " + around + "\n}";
}

}  // namespace

BOOST_AUTO_TEST_CASE(record_level_edits_of_mixed_layouts) {
    std::mt19937 rng(99);
    const auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
    tally t;
    std::size_t base_refused = 0;
    const char* const opens[] = {"\n    ", "", " "};
    const char* const closes[] = {"\n  ", "", "\n"};
    for (int round = 0; round < 40000; ++round) {
        std::vector<std::pair<std::string, std::string>> recs;
        const std::size_t n = 1 + pick(6);
        for (std::size_t i = 0; i < n; ++i) {
            std::string key = "s" + std::to_string(pick(8));
            recs.emplace_back(rng() % 3 ? pretty(session(key, static_cast<std::uint32_t>(1 + pick(9)))) : rec_text(rng, key, 1 + static_cast<int>(pick(9))),
                              separators[pick(2) ? 0 : pick(5)]);
        }
        const std::string open = opens[pick(3)], close = closes[pick(3)];
        const std::string around = pick(2) ? "1" : "[1, 2]";
        const std::string old_text = file_of(recs, open, close, around);
        state probe;
        if (full_load(old_text, probe) == how::refused) {
            ++base_refused;
            continue;
        }
        auto next = recs;
        std::string nopen = open, nclose = close, naround = around;
        const std::size_t edits = 1 + pick(3);
        for (std::size_t e = 0; e < edits; ++e) {
            const std::size_t op = pick(8);
            std::string key = "s" + std::to_string(pick(10));
            std::pair<std::string, std::string> r{rng() % 2 ? pretty(session(key, static_cast<std::uint32_t>(1 + pick(9)))) : rec_text(rng, key, 1 + static_cast<int>(pick(9))),
                                                  separators[pick(5)]};
            if (op == 0 || next.empty()) next.insert(next.begin() + static_cast<std::ptrdiff_t>(pick(next.size() + 1)), r);
            else if (op == 1) next.erase(next.begin() + static_cast<std::ptrdiff_t>(pick(next.size())));
            else if (op == 2) next[pick(next.size())] = r;
            else if (op == 3) std::swap(next[pick(next.size())], next[pick(next.size())]);
            else if (op == 4) next[pick(next.size())].second = separators[pick(5)];
            else if (op == 5) nopen = opens[pick(3)];
            else if (op == 6) nclose = closes[pick(3)];
            else if (pick(4) == 0) naround = pick(2) ? "2" : "[1, 3]";
            else next.clear();
        }
        check_pair(old_text, file_of(next, nopen, nclose, naround), t, "record-level");
    }
    BOOST_TEST_MESSAGE("record-level: taken " << t.taken << " refused " << t.refused << " bad " << t.bad
                                              << " (old refused " << base_refused << ")");
    BOOST_TEST(t.bad == 0u);
}

// A kept state a commit made (adopt_layout) holds every record verified:
// its text is exactly its encoding, the commit wrote it so. A record with a
// member its type does not know is not verified by a fresh load of the same
// bytes (the load cannot tell without encoding it); a patch carries the
// kept flag over, as the direct load's carry-over and the unchanged-file
// shortcut do. Everything else is what the fresh load gives.
BOOST_AUTO_TEST_CASE(a_kept_state_from_a_commit_keeps_its_verified_texts) {
    std::vector<std::string> texts;
    for (int i = 0; i < 4; ++i) texts.push_back(pretty(session("s" + std::to_string(i), i + 1)));
    texts[1] = R"({"sid": "s1", "pid": 2, "sock": "/run/s.sock", "version": "0.30.0", "created_at": "2026-01-01T00:00:00Z", "extra": 1})";
    state st;
    BOOST_TEST_REQUIRE((full_load(table_of(texts), st) == how::direct));
    BOOST_TEST(!st.slots[1].verified);
    // A session changes s3 and commits.
    st.slots[3].record->value.pid = 99;
    st.slots[3].forget_text();
    const auto limits = impl::record_limits(32, 1 << 20, "sessions");
    std::string scratch;
    const auto layout = impl::lay_out(st, "sessions", [&](state::slot& s) { impl::encode_slot(st, s, limits, scratch, "t.json"); });
    auto prepared = impl::prepare_adoption(st, layout);
    impl::adopt_layout(st, layout, prepared);
    BOOST_TEST(st.slots[1].verified);
    // Another writer changes s0 (pid 1 -> 7).
    std::string next = st.bytes;
    next.replace(next.find("\"pid\": 1,"), 9, "\"pid\": 7,");
    state kept = st;
    std::string bytes = next;
    BOOST_TEST_REQUIRE(impl::patch_stale(kept, bytes, 32));
    state fresh;
    BOOST_TEST_REQUIRE((full_load(next, fresh) == how::direct));
    BOOST_TEST(diff(kept, fresh, false) == "");
    BOOST_TEST(kept.slots[1].verified);
    BOOST_TEST(!fresh.slots[1].verified);
    BOOST_TEST(kept.slots[0].record->value.pid == 7u);
}
