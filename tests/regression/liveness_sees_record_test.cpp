// Regression (review of issue 17's json_table load): a liveness policy's
// `is_alive(pid, stored)` is shown the record as it is stored
// (docs/policy-liveness.md). The fast load reads a record in the pretty
// format straight into its struct and keeps no JSON object for it, so a
// policy that judges by a record field saw an empty object for exactly the
// seed's own format — and `reap` deleted live records. Each case writes the
// same record in the pretty and in the compact spelling and checks that
// list, reap and the watcher's first state agree with the policy.
#define BOOST_TEST_MODULE liveness_sees_record
#include <boost/test/unit_test.hpp>

#include <procreg/lock/flock_lock.hpp>
#include <procreg/presets/algocline.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/json_table.hpp>

#include "../support/temp_dir.hpp"

#include <boost/describe/class.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

namespace fs = std::filesystem;
using procreg::algocline::pool_session;
using procreg_test::temp_dir;

namespace {

// Alive while the stored record names a socket under /run: judged by a
// record field, not by the pid (a policy a user may well write).
struct socket_liveness {
    bool is_alive(std::uint64_t /*pid*/, const boost::json::object& stored) const {
        const auto* sock = stored.if_contains("sock");
        return sock && sock->is_string() && sock->as_string().subview().substr(0, 5) == "/run/";
    }
    void stamp_identity(std::uint64_t /*pid*/, boost::json::object& /*stored*/) const noexcept {}
};
using socket_registry =
    procreg::registry<pool_session, procreg::lock::flock_lock, procreg::storage::json_table, socket_liveness>;

const std::string pretty =
    "{\n  \"sessions\": [\n    {\n      \"sid\": \"live\",\n      \"pid\": 4000000000,\n      \"sock\": \"/run/a.sock\",\n"
    "      \"version\": \"1\",\n      \"created_at\": \"t\"\n    },\n    {\n      \"sid\": \"gone\",\n      \"pid\": 4000000000,\n"
    "      \"sock\": \"/tmp/b.sock\",\n      \"version\": \"1\",\n      \"created_at\": \"t\"\n    }\n  ]\n}";
const std::string compact =
    "{\"sessions\":[{\"sid\":\"live\",\"pid\":4000000000,\"sock\":\"/run/a.sock\",\"version\":\"1\",\"created_at\":\"t\"},"
    "{\"sid\":\"gone\",\"pid\":4000000000,\"sock\":\"/tmp/b.sock\",\"version\":\"1\",\"created_at\":\"t\"}]}";

socket_registry open_on(const fs::path& file, const std::string& text) {
    std::ofstream(file) << text;
    auto opts = procreg::algocline::options(file);
    opts.durable = false;
    return socket_registry{procreg::storage::json_table(opts)};
}

void check_spelling(const std::string& text) {
    temp_dir dir;
    auto registry = open_on(dir.path() / "registry.json", text);
    const auto listed = registry.list();
    BOOST_REQUIRE_EQUAL(listed.size(), 2u);
    for (const auto& row : listed) BOOST_TEST(row.alive == (row.record.sid == "live"), row.record.sid);
    const auto reaped = registry.reap();
    BOOST_REQUIRE_EQUAL(reaped.size(), 1u);
    BOOST_TEST(reaped[0].sid == "gone");
    const auto left = registry.list();
    BOOST_REQUIRE_EQUAL(left.size(), 1u);
    BOOST_TEST(left[0].record.sid == "live");
    BOOST_TEST(left[0].alive);
}

struct load_record {
    std::string name;
    std::uint32_t pid = 0;
    double load = 0;
};
BOOST_DESCRIBE_STRUCT(load_record, (), (name, pid, load))

}  // namespace

template <>
struct procreg::record_traits<load_record> {
    static std::string_view key(const load_record& r) noexcept { return r.name; }
    static std::uint32_t pid(const load_record& r) noexcept { return r.pid; }
};

BOOST_AUTO_TEST_CASE(a_policy_judging_by_a_field_sees_it_in_the_pretty_format) { check_spelling(pretty); }

BOOST_AUTO_TEST_CASE(a_policy_judging_by_a_field_sees_it_in_the_compact_format) { check_spelling(compact); }

BOOST_AUTO_TEST_CASE(a_policy_judging_by_a_field_sees_it_in_a_record_just_inserted) {
    temp_dir dir;
    auto registry = open_on(dir.path() / "registry.json", "{\"sessions\":[]}");
    const bool alive = registry.transact([](auto& tx) {
        const pool_session fresh{"new", 4000000000u, "/run/new.sock", "1", "t"};
        tx.insert(fresh);
        return tx.alive(fresh);
    });
    BOOST_TEST(alive);
}

// A caller's own record that no store could hold (a NaN) is still answered:
// `alive` returns what the policy says of what is stored, it does not throw.
BOOST_AUTO_TEST_CASE(a_record_no_store_could_hold_is_still_answered) {
    struct field_liveness {
        bool is_alive(std::uint64_t /*pid*/, const boost::json::object& stored) const { return !stored.contains("load"); }
        void stamp_identity(std::uint64_t /*pid*/, boost::json::object& /*stored*/) const noexcept {}
    };
    using load_registry =
        procreg::registry<load_record, procreg::lock::flock_lock, procreg::storage::json_table, field_liveness>;
    temp_dir dir;
    procreg::storage::json_table::options opts;
    opts.file = dir.path() / "loads.json";
    opts.array_key = "loads";
    opts.durable = false;
    load_registry registry{procreg::storage::json_table(opts)};
    const bool alive = registry.transact([](auto& tx) {
        return tx.alive(load_record{"nan", 4000000000u, std::numeric_limits<double>::quiet_NaN()});
    });
    BOOST_TEST(alive);  // nothing stored for it: the policy finds no "load"
}
