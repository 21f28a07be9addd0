// Regressions of issue 17 (the re-read path and liveness of many records):
// after another process's write, json_table keeps a record's bytes from
// the file only when they are exactly what encoding the record writes, and
// a list or reap that asks kill(2) once per distinct pid still gives every
// record its own owner's answer (zombies alive, the dead dead).
#define BOOST_TEST_MODULE procreg regression - re-read path and liveness of many records
#include <boost/test/unit_test.hpp>

#include <procreg/presets/algocline.hpp>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <csignal>
#include <map>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;
using procreg::algocline::pool_session;
using procreg_test::spawn;
using procreg_test::temp_dir;
using procreg_test::wait_exit;

namespace {

procreg::algocline::pool_registry open_table(const fs::path& file) {
    auto opts = procreg::algocline::options(file);
    opts.durable = false;
    return procreg::algocline::open(opts);
}

pool_session session(std::string sid, std::uint32_t pid) {
    return pool_session{std::move(sid), pid, "/run/s.sock", "0.30.0", "2026-01-01T00:00:00Z"};
}

}  // namespace

BOOST_AUTO_TEST_SUITE(reread)

// A file another writer left: one record in the pretty format (kept byte for
// byte), one compact with its keys out of order and an unknown member, one
// whose sid is spelled with an escape. A procreg process that finds it
// (not its own write: a fresh load) and inserts writes every record as the
// seed's pretty format does — the other two are encoded afresh, not copied.
BOOST_AUTO_TEST_CASE(records_not_in_the_pretty_format_are_encoded_afresh_after_another_writer) {
    temp_dir dir;
    const fs::path file = dir.path() / "registry.json";
    open_table(file).insert(session("seed", 1));  // creates the directory and the lock file
    procreg_test::write_text(file,
                             "{\"before\": 1, \"sessions\": [\n"
                             "    {\n"
                             "      \"sid\": \"a\",\n"
                             "      \"pid\": 1,\n"
                             "      \"sock\": \"/run/s.sock\",\n"
                             "      \"version\": \"0.30.0\",\n"
                             "      \"created_at\": \"2026-01-01T00:00:00Z\"\n"
                             "    },"
                             "{\"pid\":1,\"sid\":\"b\",\"extra\":{\"k\":[1,2]},\"sock\":\"/run/s.sock\",\"version\":"
                             "\"0.30.0\",\"created_at\":\"2026-01-01T00:00:00Z\"},\n"
                             "    {\n"
                             "      \"sid\": \"\\u0063\",\n"
                             "      \"pid\": 1,\n"
                             "      \"sock\": \"/run/s.sock\",\n"
                             "      \"version\": \"0.30.0\",\n"
                             "      \"created_at\": \"2026-01-01T00:00:00Z\"\n"
                             "    }], \"after\": [true]}");
    // Another process inserts, so the registry below finds a file it did not write.
    const pid_t writer = spawn([&] {
        open_table(file).insert(session("d", 1));
        return 0;
    });
    BOOST_TEST_REQUIRE(wait_exit(writer) == 0);
    auto reg = open_table(file);
    reg.insert(session("e", 1));
    const std::string record_tail =
        "      \"pid\": 1,\n"
        "      \"sock\": \"/run/s.sock\",\n"
        "      \"version\": \"0.30.0\",\n"
        "      \"created_at\": \"2026-01-01T00:00:00Z\"";
    const auto record = [&](const std::string& sid, const std::string& more = "") {
        return "    {\n      \"sid\": \"" + sid + "\",\n" + record_tail + more + "\n    }";
    };
    const std::string expected = "{\n  \"before\": 1,\n  \"sessions\": [\n" + record("a") + ",\n" +
                                 record("b", ",\n      \"extra\": {\n        \"k\": [\n          1,\n          2\n"
                                             "        ]\n      }") +
                                 ",\n" + record("c") + ",\n" + record("d") + ",\n" + record("e") +
                                 "\n  ],\n  \"after\": [\n    true\n  ]\n}";
    BOOST_TEST(procreg_test::read_text(file) == expected);
    // And what a fresh reader of that file sees is what was written.
    const auto rows = open_table(file).list();
    BOOST_TEST_REQUIRE(rows.size() == 5u);
    BOOST_TEST(rows[2].record.sid == "c");
}

// The writer that skips the JSON tree for plain described records writes
// what pretty-printing value_from's tree writes, escapes and extreme
// integers included: a loaded record is kept as found only on that equality.
BOOST_AUTO_TEST_CASE(plain_records_are_written_as_their_json_tree_is) {
    static_assert(procreg::detail::encodes_plainly<pool_session>::value);
    const pool_session odd{std::string("q\"b\\s\n\t\x01\x1f/\xc3\xa9\x7f", 13), 4294967295u, "", "\u2028",
                           "2026-01-01T00:00:00Z"};
    for (const pool_session& r : {session("a", 1), session("", 0), odd}) {
        for (const int indent : {0, 2}) {
            std::string tree;
            procreg::detail::pretty_print_into(tree, boost::json::value_from(r), indent);
            std::string plain;
            procreg::detail::append_plain_pretty(plain, r, indent);
            BOOST_TEST(plain == tree);
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(liveness_of_many)

// Records of three owners, interleaved: a live process, a zombie (kill(2)
// answers for it: alive, as the seed's kill(pid, 0) says) and a reaped one.
// Each owner is probed once per pass; every record must still carry its own
// owner's answer, and reap removes exactly the dead owner's records.
BOOST_AUTO_TEST_CASE(each_record_gets_its_owners_answer_when_owners_repeat) {
    temp_dir dir;
    const pid_t live = spawn([] {
        for (;;) ::pause();
        return 0;
    });
    const pid_t zombie = spawn([] { return 0; });
    const pid_t dead = procreg_test::dead_pid();
    // The zombie has exited once waitid sees it, but stays unreaped (WNOWAIT).
    siginfo_t info{};
    BOOST_TEST_REQUIRE(::waitid(P_PID, static_cast<id_t>(zombie), &info, WEXITED | WNOWAIT) == 0);

    auto reg = open_table(dir.path() / "registry.json");
    const std::map<pid_t, bool> owner_alive = {{live, true}, {zombie, true}, {dead, false}};
    for (int i = 0; i < 4; ++i) {
        for (const auto& [pid, alive] : owner_alive) {
            (void)alive;
            reg.insert(session("s" + std::to_string(pid) + "-" + std::to_string(i), static_cast<std::uint32_t>(pid)));
        }
    }
    const auto rows = reg.list();
    BOOST_TEST_REQUIRE(rows.size() == 12u);
    for (const auto& row : rows) {
        BOOST_TEST(row.alive == owner_alive.at(static_cast<pid_t>(row.record.pid)), "record " << row.record.sid);
    }
    const auto removed = reg.reap();
    BOOST_TEST(removed.size() == 4u);
    for (const auto& r : removed) BOOST_TEST(r.pid == static_cast<std::uint32_t>(dead));
    BOOST_TEST(reg.list().size() == 8u);

    ::kill(live, SIGKILL);
    wait_exit(live);
    wait_exit(zombie);
    // Now both are gone: one pass answers dead for all of their records.
    BOOST_TEST(reg.reap().size() == 8u);
    BOOST_TEST(reg.list().empty());
}

BOOST_AUTO_TEST_SUITE_END()
