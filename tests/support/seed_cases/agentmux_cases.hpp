// tests/support/seed_cases/agentmux_cases.hpp — the AgentMux cases that hold on any storage.
//
// One body per case: tests/seed/agentmux_test.cpp runs them on the preset's
// record directory, tests/etcd/etcd_seed_test.cpp on etcd. They are the
// cases about records, not files: upsert's layout and merge, its refusal to
// overwrite what does not parse, several processes at once, a reader never
// seeing a torn value. A case takes a `Place`, where one registry lives:
//   reg                  a registry of agent records on the place
//   open()               a new registry object on the place (also in a forked child)
//   raw(id)              the stored bytes of record `id`, read without the
//                        registry (as the seed's binary or `cat` would); none when absent
//   write_raw(id, text)  stores `text` as record `id`, as a foreign writer would
//   where(id)            the path a skipped record is reported with
// Not here: retire / unretire / hard_delete / exists_anywhere (a storage
// with tombstones: etcd_store keeps none), the schema guard (record_files'
// option), permissions and temp files (files by nature).
#pragma once

#include <procreg/presets/agentmux.hpp>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace procreg_test::agentmux_cases {

using procreg::agentmux::agent_record;

inline agent_record record(const std::string& id, const std::string& display = "agent") {
    agent_record r = agent_record::make(id);
    r.data.display_name = display;
    r.data.working_dir = "/work/" + id;
    r.data.last_launched_at_ms = 1700000000000;
    return r;
}

template <class Place>
boost::json::object stored_json(Place& place, const std::string& id) {
    const std::optional<std::string> text = place.raw(id);
    BOOST_TEST_REQUIRE(text.has_value(), "record " << id << " is not stored");
    return boost::json::parse(*text).as_object();
}

template <class Place>
void upsert_new_record_writes_the_seed_layout(Place& place) {
    auto& reg = place.reg;
    const auto result = reg.upsert(record("a1", "reviewer"));
    BOOST_TEST((result.status == procreg::upsert_status::inserted));
    BOOST_TEST(!result.skipped);

    const boost::json::object json = stored_json(place, "a1");
    BOOST_TEST(json.at("schema_version").to_number<int>() == 1);
    const auto& data = json.at("data").as_object();
    BOOST_TEST(data.at("instance_id").as_string() == "a1");
    BOOST_TEST(data.at("display_name").as_string() == "reviewer");
    BOOST_TEST(data.at("last_launched_at_ms").to_number<std::int64_t>() == 1700000000000);
    BOOST_TEST(place.raw("a1")->back() == '\n');

    const auto found = reg.find("a1");
    BOOST_REQUIRE(found);
    BOOST_TEST((*found == record("a1", "reviewer")));

    auto changed = record("a1", "writer");
    BOOST_TEST((reg.upsert(changed).status == procreg::upsert_status::replaced));
    BOOST_TEST(reg.find("a1")->data.display_name.value() == "writer");
}

template <class Place>
void upsert_preserves_unknown_top_level_and_data_fields(Place& place) {
    auto& reg = place.reg;
    place.write_raw("a1", R"({
  "schema_version": 1,
  "future_top": {"flag": true, "list": [1, 2, 3]},
  "data": {
    "instance_id": "a1",
    "display_name": "old",
    "future_data": "keep me",
    "future_nested": {"deep": {"deeper": 42}}
  }
})");
    const auto result = reg.upsert(record("a1", "new"));
    BOOST_TEST((result.status == procreg::upsert_status::replaced));

    const boost::json::object json = stored_json(place, "a1");
    BOOST_TEST(json.at("schema_version").to_number<int>() == 1);
    BOOST_TEST(json.at("future_top").at("flag").as_bool());
    BOOST_TEST(json.at("future_top").at("list").as_array().size() == 3u);
    const auto& data = json.at("data").as_object();
    BOOST_TEST(data.at("display_name").as_string() == "new");
    BOOST_TEST(data.at("working_dir").as_string() == "/work/a1");
    BOOST_TEST(data.at("future_data").as_string() == "keep me");
    BOOST_TEST(data.at("future_nested").at("deep").at("deeper").to_number<int>() == 42);

    // And once more through modify(): still there.
    reg.transact([](auto& tx) {
        BOOST_TEST(tx.modify("a1", [](agent_record& r) { r.data.name = "claude"; }));
    });
    const boost::json::object again = stored_json(place, "a1");
    BOOST_TEST(again.at("data").at("future_data").as_string() == "keep me");
    BOOST_TEST(again.at("data").at("name").as_string() == "claude");
    BOOST_TEST(again.at("future_top").at("flag").as_bool());
}

template <class Place>
void upsert_refuses_to_overwrite_a_corrupt_file(Place& place) {
    auto& reg = place.reg;
    const std::string corrupt = "{\"schema_version\": 1, \"data\": {\"instance_id\": \"a1\"";  // truncated
    place.write_raw("a1", corrupt);
    const auto result = reg.upsert(record("a1"));
    BOOST_TEST((result.status == procreg::upsert_status::skipped));
    BOOST_REQUIRE(result.skipped);
    BOOST_TEST(result.skipped->path == place.where("a1"));
    BOOST_TEST(result.skipped->reason.find("parse") != std::string::npos);
    BOOST_TEST(place.raw("a1").value_or("<absent>") == corrupt);

    const std::string not_object = "[1, 2, 3]\n";
    place.write_raw("a2", not_object);
    BOOST_TEST((reg.upsert(record("a2")).status == procreg::upsert_status::skipped));
    BOOST_TEST(place.raw("a2").value_or("<absent>") == not_object);
}

template <class Place>
void several_processes_upserting_different_records_lose_nothing(Place& place) {
    auto& reg = place.reg;
    constexpr int processes = 6;
    constexpr int per_process = 25;
    // Everyone also rewrites one shared record, so the processes really collide.
    place.write_raw("shared", R"({"schema_version": 1, "keep": "me", "data": {"instance_id": "shared"}})");
    std::vector<pid_t> children;
    for (int p = 0; p < processes; ++p) {
        children.push_back(procreg_test::spawn([&, p] {
            auto mine = place.open();
            for (int i = 0; i < per_process; ++i) {
                const std::string id = "p" + std::to_string(p) + "-r" + std::to_string(i);
                if (mine.upsert(record(id, id)).status != procreg::upsert_status::inserted) return 1;
                if (mine.upsert(record("shared", id)).status != procreg::upsert_status::replaced) return 2;
            }
            return 0;
        }));
    }
    for (const pid_t child : children) BOOST_TEST(procreg_test::wait_exit(child) == 0);

    const auto listing = reg.list();
    BOOST_TEST(listing.size() == static_cast<std::size_t>(processes * per_process + 1));
    for (int p = 0; p < processes; ++p) {
        for (int i = 0; i < per_process; ++i) {
            const std::string id = "p" + std::to_string(p) + "-r" + std::to_string(i);
            const auto found = reg.find(id);
            BOOST_TEST_CONTEXT(id) {
                BOOST_REQUIRE(found);
                BOOST_TEST(found->data.display_name.value() == id);
            }
        }
    }
    BOOST_TEST(reg.transact([](auto& tx) { return tx.skipped_files().empty(); }));
    BOOST_TEST(stored_json(place, "shared").at("keep").as_string() == "me");
}

template <class Place>
void concurrent_upserts_of_one_record_are_never_torn(Place& place) {
    auto& reg = place.reg;
    constexpr int writers = 4;
    constexpr int rounds = 60;
    reg.upsert(record("hot"));
    std::vector<pid_t> children;
    for (int w = 0; w < writers; ++w) {
        children.push_back(procreg_test::spawn([&, w] {
            auto mine = place.open();
            // A large value so a torn write would be visible.
            const std::string payload(8192, static_cast<char>('a' + w));
            for (int i = 0; i < rounds; ++i) {
                if (mine.upsert(record("hot", payload)).status != procreg::upsert_status::replaced) return 1;
            }
            return 0;
        }));
    }
    // A reader that goes around the registry: every read, until the writers
    // are done, must be one complete version.
    procreg_test::temp_dir flags;
    const std::filesystem::path done = flags / "writers-done";
    const pid_t reader = procreg_test::spawn([&] {
        for (long i = 0; i < 1000000 && !std::filesystem::exists(done); ++i) {
            const std::optional<std::string> text = place.raw("hot");
            if (!text) return 3;  // a replace never leaves the record missing
            boost::system::error_code ec;
            const auto value = boost::json::parse(*text, ec);
            if (ec) return 4;
            const auto& name = value.at("data").at("display_name");
            if (!name.is_string()) return 5;
            const auto& s = name.get_string();
            if (s != "agent" && (s.size() != 8192 || std::count(s.begin(), s.end(), s[0]) != 8192)) return 6;
        }
        return 0;
    });
    for (const pid_t child : children) BOOST_TEST(procreg_test::wait_exit(child) == 0);
    procreg_test::write_text(done, "");
    BOOST_TEST(procreg_test::wait_exit(reader) == 0);

    const auto found = reg.find("hot");
    BOOST_REQUIRE(found);
    const std::string& final_name = found->data.display_name.value();
    BOOST_TEST(final_name.size() == 8192u);
    BOOST_TEST(std::count(final_name.begin(), final_name.end(), final_name[0]) == 8192);
    BOOST_TEST(reg.transact([](auto& tx) { return tx.skipped_files().empty(); }));
}

}  // namespace procreg_test::agentmux_cases
