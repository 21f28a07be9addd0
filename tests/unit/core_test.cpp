// Unit tests of the registry core: the transaction model, custom record
// types, the conflict check, the reap hook, error reporting, and the
// json_table storage's handling of hostile or unexpected files.
#define BOOST_TEST_MODULE core
#include <boost/test/unit_test.hpp>

#include <procreg/procreg.hpp>

#include "../support/process.hpp"
#include "../support/temp_dir.hpp"

#include <boost/describe/class.hpp>
#include <boost/json.hpp>

#include <climits>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/stat.h>

using procreg_test::temp_dir;

// A record converted by hand-written tag_invoke, not BOOST_DESCRIBE_STRUCT,
// with a field the registry knows nothing about (`owner`).
namespace app {
struct worker {
    std::string name;
    long pid = 0;
    std::vector<std::string> owns;
};

void tag_invoke(boost::json::value_from_tag, boost::json::value& out, const worker& w) {
    boost::json::array owns;
    for (const auto& o : w.owns) owns.emplace_back(o);
    out = {{"name", w.name}, {"pid", w.pid}, {"owns", std::move(owns)}};
}

worker tag_invoke(boost::json::value_to_tag<worker>, const boost::json::value& v) {
    const auto& o = v.as_object();
    worker w;
    w.name = boost::json::value_to<std::string>(o.at("name"));
    w.pid = boost::json::value_to<long>(o.at("pid"));
    for (const auto& item : o.at("owns").as_array()) w.owns.push_back(boost::json::value_to<std::string>(item));
    return w;
}
}  // namespace app

// A described record with a map member and a described nested struct.
namespace app {
struct inner_part {
    std::string a;
};
BOOST_DESCRIBE_STRUCT(inner_part, (), (a))
struct labelled {
    std::string name;
    unsigned pid = 0;
    std::map<std::string, std::string> labels;
    inner_part inner;
};
BOOST_DESCRIBE_STRUCT(labelled, (), (name, pid, labels, inner))
}  // namespace app

template <>
struct procreg::record_traits<app::labelled> {
    static const std::string& key(const app::labelled& l) { return l.name; }
    static unsigned pid(const app::labelled& l) { return l.pid; }
};

template <>
struct procreg::record_traits<app::worker> {
    static const std::string& key(const app::worker& w) { return w.name; }
    static long pid(const app::worker& w) { return w.pid; }
};

namespace {

using worker_registry = procreg::registry<app::worker, procreg::lock::flock_lock, procreg::storage::json_table,
                                          procreg::liveness::callable_liveness>;

struct fixture {
    temp_dir dir;
    std::vector<long> dead_pids;

    procreg::storage::json_table_options options() const {
        procreg::storage::json_table_options opts;
        opts.file = dir / "workers.json";
        opts.array_key = "workers";
        return opts;
    }
    worker_registry open() {
        return worker_registry(procreg::storage::json_table(options()),
                               procreg::liveness::callable_liveness([this](std::uint64_t pid) {
                                   for (long dead : dead_pids)
                                       if (static_cast<std::uint64_t>(dead) == pid) return false;
                                   return true;
                               }));
    }
};

app::worker make(const std::string& name, long pid, std::vector<std::string> owns = {}) {
    return app::worker{name, pid, std::move(owns)};
}

bool shares_resource(const app::worker& a, const app::worker& b) {
    for (const auto& x : a.owns)
        for (const auto& y : b.owns)
            if (x == y) return true;
    return false;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(core, fixture)

BOOST_AUTO_TEST_CASE(custom_record_by_tag_invoke_round_trips) {
    auto reg = open();
    reg.insert(make("w1", 100, {"/run/w1.sock"}));
    const auto found = reg.find("w1");
    BOOST_TEST_REQUIRE(found.has_value());
    BOOST_TEST(found->pid == 100);
    BOOST_TEST(found->owns == std::vector<std::string>{"/run/w1.sock"});
    const auto on_disk = boost::json::parse(procreg_test::read_text(dir / "workers.json"));
    BOOST_TEST(on_disk.at("workers").as_array().size() == 1u);
}

BOOST_AUTO_TEST_CASE(insert_of_existing_key_is_duplicate_key) {
    auto reg = open();
    reg.insert(make("w1", 100));
    try {
        reg.insert(make("w1", 200));
        BOOST_FAIL("expected duplicate_key");
    } catch (const procreg::error& e) {
        BOOST_TEST(e.code() == procreg::errc::duplicate_key);
        BOOST_TEST(e.key() == "w1");
        BOOST_TEST(e.path() == dir / "workers.json");
    }
    std::error_code ec;
    reg.insert(make("w1", 300), ec);
    BOOST_TEST(ec == procreg::errc::duplicate_key);
    BOOST_TEST(reg.find("w1")->pid == 100);
}

BOOST_AUTO_TEST_CASE(conflict_check_names_the_live_competitor_and_ignores_dead_ones) {
    auto reg = open();
    reg.insert(make("holder", 100, {"session-7"}));
    reg.insert(make("ghost", 666, {"session-9"}));
    dead_pids.push_back(666);
    try {
        reg.insert(make("newcomer", 101, {"session-7"}), shares_resource);
        BOOST_FAIL("expected conflict");
    } catch (const procreg::error& e) {
        BOOST_TEST(e.code() == procreg::errc::conflict);
        BOOST_TEST(e.key() == "holder");
    }
    BOOST_TEST(!reg.find("newcomer"));
    // The only competitor for session-9 is dead: no conflict.
    reg.insert(make("heir", 102, {"session-9"}), shares_resource);
    BOOST_TEST(reg.find("heir").has_value());
}

BOOST_AUTO_TEST_CASE(a_throwing_transaction_writes_nothing) {
    auto reg = open();
    reg.insert(make("keep", 1));
    const std::string before = procreg_test::read_text(dir / "workers.json");
    BOOST_CHECK_THROW(reg.transact([](auto& tx) {
        tx.insert(make("lost", 2));
        tx.erase("keep");
        throw std::runtime_error("caller changed its mind");
    }),
                      std::runtime_error);
    BOOST_TEST(procreg_test::read_text(dir / "workers.json") == before);
    BOOST_TEST(reg.find("keep").has_value());
    BOOST_TEST(!reg.find("lost").has_value());
}

BOOST_AUTO_TEST_CASE(several_steps_in_one_transaction_and_modify) {
    auto reg = open();
    const auto count = reg.transact([](auto& tx) {
        tx.insert(make("a", 1));
        tx.insert(make("b", 2));
        BOOST_TEST(tx.modify("a", [](app::worker& w) { w.owns.push_back("lock:x"); }));
        BOOST_TEST(!tx.modify("missing", [](app::worker&) {}));
        return tx.size();
    });
    BOOST_TEST(count == 2u);
    BOOST_TEST(reg.find("a")->owns == std::vector<std::string>{"lock:x"});
    try {
        reg.transact([](auto& tx) { tx.modify("a", [](app::worker& w) { w.name = "renamed"; }); });
        BOOST_FAIL("expected invalid_key");
    } catch (const procreg::error& e) {
        BOOST_TEST(e.code() == procreg::errc::invalid_key);
    }
    BOOST_TEST(reg.find("a").has_value());
}

BOOST_AUTO_TEST_CASE(reap_hook_sees_each_removal_and_can_edit_survivors) {
    auto reg = open();
    reg.insert(make("parent", 10));
    reg.insert(make("child", 11, {"parent:parent"}));
    reg.insert(make("orphan-maker", 12));
    dead_pids = {10, 12};
    std::vector<std::string> seen;
    const auto removed = reg.reap([&](const app::worker& gone, auto& tx) {
        seen.push_back(gone.name);
        tx.for_each([&](const app::worker&) {});
        tx.modify("child", [&](app::worker& w) { w.owns.push_back("reparented-from:" + gone.name); });
    });
    BOOST_TEST(removed.size() == 2u);
    BOOST_TEST((seen == std::vector<std::string>{"parent", "orphan-maker"}));
    const auto child = reg.find("child");
    BOOST_TEST_REQUIRE(child.has_value());
    BOOST_TEST(child->owns.size() == 3u);
    BOOST_TEST(reg.list().size() == 1u);
}

BOOST_AUTO_TEST_CASE(list_reports_liveness_per_record) {
    auto reg = open();
    reg.insert(make("up", 1));
    reg.insert(make("down", 2));
    dead_pids = {2};
    for (const auto& row : reg.list()) BOOST_TEST(row.alive == (row.record.name == "up"));
}

BOOST_AUTO_TEST_CASE(unknown_keys_survive_upsert_at_both_levels) {
    auto reg = open();
    procreg_test::write_text(dir / "workers.json",
                             R"({"schema": 3, "workers": [{"name": "w", "pid": 5, "owns": [], "note": "keep me"}]})");
    const auto result = reg.upsert(make("w", 5, {"x"}));
    BOOST_TEST((result.status == procreg::upsert_status::replaced));
    BOOST_TEST((reg.upsert(make("v", 6)).status == procreg::upsert_status::inserted));
    const auto on_disk = boost::json::parse(procreg_test::read_text(dir / "workers.json"));
    BOOST_TEST(on_disk.at("schema").as_int64() == 3);
    BOOST_TEST(on_disk.at("workers").at(0).at("note").as_string() == "keep me");
    BOOST_TEST(on_disk.at("workers").at(0).at("owns").as_array().size() == 1u);
}

BOOST_AUTO_TEST_CASE(duplicate_keys_in_the_table_are_corruption) {
    const auto path = dir / "workers.json";
    const std::string text =
        R"({"workers": [{"name": "w", "pid": 1, "owns": []}, {"name": "w", "pid": 2, "owns": []}]})";
    procreg_test::write_text(path, text);
    auto reg = open();
    try {
        reg.list();
        BOOST_FAIL("expected corrupted_file");
    } catch (const procreg::error& e) {
        BOOST_TEST(e.code() == procreg::errc::corrupted_file);
        BOOST_TEST(e.key() == "w");
    }
    BOOST_TEST(procreg_test::read_text(path) == text);
}

BOOST_AUTO_TEST_CASE(json_nested_past_the_depth_limit_is_refused) {
    const auto path = dir / "workers.json";
    const std::string text = R"({"workers": [], "deep": )" + std::string(100, '[') + std::string(100, ']') + "}";
    procreg_test::write_text(path, text);
    auto reg = open();
    std::error_code ec;
    reg.list(ec);
    BOOST_TEST(ec == procreg::errc::corrupted_file);
    BOOST_TEST(procreg_test::read_text(path) == text);
}

BOOST_AUTO_TEST_CASE(oversized_file_is_refused_unread) {
    auto opts = options();
    opts.max_file_bytes = 1024;
    procreg_test::write_text(opts.file, R"({"workers": [], "pad": ")" + std::string(2000, 'x') + "\"}");
    worker_registry reg{procreg::storage::json_table(opts), procreg::liveness::callable_liveness()};
    try {
        reg.list();
        BOOST_FAIL("expected corrupted_file");
    } catch (const procreg::error& e) {
        BOOST_TEST(e.code() == procreg::errc::corrupted_file);
        BOOST_TEST(std::string(e.what()).find("limit") != std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(wrong_types_and_nul_bytes_are_clear_errors) {
    const auto path = dir / "workers.json";
    for (const std::string& text : {std::string(R"({"workers": {"name": "w"}})"), std::string(R"([1, 2, 3])"),
                                   std::string("{\"workers\": [\0]}", 16)}) {
        procreg_test::write_text(path, text);
        auto reg = open();
        std::error_code ec;
        reg.list(ec);
        BOOST_TEST(ec == procreg::errc::corrupted_file);
        BOOST_TEST(procreg_test::read_text(path) == text);
    }
}

BOOST_AUTO_TEST_CASE(a_symlink_at_the_registry_path_is_refused_and_its_target_untouched) {
    const auto target = dir / "elsewhere.json";
    procreg_test::write_text(target, R"({"workers": []})");
    std::filesystem::create_symlink(target, dir / "workers.json");
    auto reg = open();
    try {
        reg.insert(make("w", 1));
        BOOST_FAIL("expected unsafe_path");
    } catch (const procreg::error& e) {
        BOOST_TEST(e.code() == procreg::errc::unsafe_path);
    }
    BOOST_TEST(procreg_test::read_text(target) == R"({"workers": []})");
    BOOST_TEST(std::filesystem::is_symlink(dir / "workers.json"));
}

BOOST_AUTO_TEST_CASE(a_symlink_at_the_lock_path_is_refused) {
    const auto target = dir / "victim";
    procreg_test::write_text(target, "precious");
    std::filesystem::create_symlink(target, dir / "workers.lock");
    auto reg = open();
    std::error_code ec;
    reg.insert(make("w", 1), ec);
    BOOST_TEST(ec == procreg::errc::unsafe_path);
    BOOST_TEST(procreg_test::read_text(target) == "precious");
}

BOOST_AUTO_TEST_CASE(a_directory_writable_by_others_is_refused_unless_allowed) {
    const auto shared = dir / "shared";
    std::filesystem::create_directory(shared);
    ::chmod(shared.c_str(), 0777);
    auto opts = options();
    opts.file = shared / "workers.json";
    try {
        procreg::storage::json_table table(opts);
        BOOST_FAIL("expected unsafe_path");
    } catch (const procreg::error& e) {
        BOOST_TEST(e.code() == procreg::errc::unsafe_path);
        BOOST_TEST(e.path() == shared);
    }
    opts.directory.allow_shared = true;
    BOOST_CHECK_NO_THROW(procreg::storage::json_table{opts});
}

BOOST_AUTO_TEST_CASE(a_symlinked_registry_directory_is_refused) {
    std::filesystem::create_directory(dir / "real");
    std::filesystem::create_directory_symlink(dir / "real", dir / "link");
    auto opts = options();
    opts.file = dir / "link" / "workers.json";
    try {
        procreg::storage::json_table table(opts);
        BOOST_FAIL("expected unsafe_path");
    } catch (const procreg::error& e) {
        BOOST_TEST(e.code() == procreg::errc::unsafe_path);
    }
    BOOST_TEST(!std::filesystem::exists(dir / "real" / "workers.json"));
}

BOOST_AUTO_TEST_CASE(temp_files_of_dead_writers_are_swept_and_live_ones_kept) {
    const auto dead = procreg_test::dead_pid();
    const auto stale = dir / (".workers.json.tmp-" + std::to_string(dead) + "-0-1");
    const auto live = dir / (".workers.json.tmp-" + std::to_string(::getpid()) + "-0-1");
    procreg_test::write_text(stale, "half written");
    procreg_test::write_text(live, "being written");
    auto reg = open();
    BOOST_TEST(!std::filesystem::exists(stale));
    BOOST_TEST(std::filesystem::exists(live));
}

BOOST_AUTO_TEST_CASE(no_temp_file_is_left_after_writes) {
    auto reg = open();
    for (int i = 0; i < 10; ++i) reg.insert(make("w" + std::to_string(i), 1));
    int files = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
        ++files;
        BOOST_TEST(entry.path().filename().string().find(".tmp-") == std::string::npos);
    }
    BOOST_TEST(files == 2);  // workers.json and workers.lock
}

// A liveness that stamps a "generation" (think boot id): records stamped in
// an earlier generation read as dead, as pidfd_liveness does after a reboot.
struct generation_liveness {
    static inline int current = 1;
    bool is_alive(std::uint64_t, const boost::json::object& stored) const {
        const auto* gen = stored.if_contains("gen");
        return !gen || gen->as_int64() == current;
    }
    void stamp_identity(std::uint64_t, boost::json::object& stored) const { stored["gen"] = current; }
};

BOOST_AUTO_TEST_CASE(upsert_restamps_a_dead_identity_but_modify_does_not) {
    using gen_registry = procreg::registry<app::worker, procreg::lock::flock_lock, procreg::storage::json_table,
                                           generation_liveness>;
    gen_registry reg{procreg::storage::json_table(options())};
    generation_liveness::current = 1;
    reg.insert(make("daemon", 42));
    reg.insert(make("ghost", 43));
    generation_liveness::current = 2;  // "reboot": both owners are gone
    for (const auto& row : reg.list()) BOOST_TEST(!row.alive);
    // The daemon restarts with the same pid and says so: it is alive again.
    reg.upsert(make("daemon", 42, {"restarted"}));
    // Editing the dead ghost's record must not adopt whoever has pid 43 now.
    reg.transact([](auto& tx) { tx.modify("ghost", [](app::worker& w) { w.owns.push_back("edited"); }); });
    for (const auto& row : reg.list()) BOOST_TEST(row.alive == (row.record.name == "daemon"), row.record.name);
    generation_liveness::current = 1;
}

// A record whose JSON would not read back (here: a string that is not
// UTF-8, as a Linux path may be) is refused before anything is written,
// instead of producing a file every other process then fails to read.
BOOST_AUTO_TEST_CASE(a_record_that_would_not_read_back_is_refused_and_nothing_written) {
    auto reg = open();
    reg.insert(make("good", 1));
    const std::string before = procreg_test::read_text(dir / "workers.json");
    try {
        reg.insert(make("bad", 2, {std::string("/run/\xff\xfe.sock")}));
        BOOST_FAIL("expected invalid_record");
    } catch (const procreg::error& e) {
        BOOST_TEST(e.code() == procreg::errc::invalid_record);
        BOOST_TEST(e.key() == "bad");
    }
    BOOST_TEST(procreg_test::read_text(dir / "workers.json") == before);
    auto other = open();
    BOOST_TEST(other.list().size() == 1u);
    BOOST_TEST(reg.list().size() == 1u);
}

BOOST_AUTO_TEST_CASE(the_lock_file_may_not_be_the_table_file) {
    auto opts = options();
    opts.lock_file = opts.file;
    try {
        procreg::storage::json_table table(opts);
        BOOST_FAIL("expected unsafe_path");
    } catch (const procreg::error& e) {
        BOOST_TEST(e.code() == procreg::errc::unsafe_path);
    }
}

// A writer killed after this registry was opened leaves a temp file; a
// later commit under the lock removes it (here with no waiting interval).
BOOST_AUTO_TEST_CASE(a_commit_sweeps_temp_files_left_after_open) {
    auto opts = options();
    opts.temp_sweep_interval = std::chrono::milliseconds(0);
    worker_registry reg{procreg::storage::json_table(opts), procreg::liveness::callable_liveness()};
    reg.insert(make("a", 1));
    const auto leftover = dir / (".workers.json.tmp-" + std::to_string(procreg_test::dead_pid()) + "-0-1");
    procreg_test::write_text(leftover, "half a table");
    reg.insert(make("b", 1));
    BOOST_TEST(!std::filesystem::exists(leftover));
}

// Unknown keys survive inside members the type describes (inner), but a
// map is the record's to state whole: a removed key must stay removed, for
// every process and for the writer's own unchanged-file cache.
BOOST_AUTO_TEST_CASE(merging_keeps_unknown_nested_keys_but_never_resurrects_map_entries) {
    using labelled_registry = procreg::registry<app::labelled, procreg::lock::flock_lock,
                                                procreg::storage::json_table, procreg::liveness::callable_liveness>;
    const auto path = dir / "workers.json";
    procreg_test::write_text(path, R"({"workers": [{"name": "w", "pid": 1, "labels": {"color": "red", "x": "y"},
                                        "inner": {"a": "1", "future": true}}]})");
    labelled_registry reg{procreg::storage::json_table(options()), procreg::liveness::callable_liveness()};
    auto record = reg.find("w").value();
    BOOST_TEST(record.labels.size() == 2u);
    record.labels.clear();
    record.inner.a = "2";
    reg.upsert(record);
    const auto on_disk = boost::json::parse(procreg_test::read_text(path));
    const auto& w = on_disk.at("workers").at(0);
    BOOST_TEST(w.at("labels").as_object().empty());
    BOOST_TEST(w.at("inner").at("a") == "2");
    BOOST_TEST(w.at("inner").at("future") == true);
    BOOST_TEST(reg.find("w")->labels.empty());
    labelled_registry other{procreg::storage::json_table(options()), procreg::liveness::callable_liveness()};
    BOOST_TEST(other.find("w")->labels.empty());
}

BOOST_AUTO_TEST_CASE(error_category_and_messages) {
    const std::error_code ec = procreg::errc::in_use;
    BOOST_TEST(std::string(ec.category().name()) == "procreg");
    BOOST_TEST(!ec.message().empty());
    const procreg::error e(procreg::errc::io_failure, "/x/y.json", "cannot read", {"", std::nullopt, EIO});
    BOOST_TEST(std::string(e.what()).find("/x/y.json: cannot read") == 0u);
    BOOST_TEST(e.os_error() == EIO);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(kill_liveness)

BOOST_AUTO_TEST_CASE(guards_and_probe) {
    using procreg::liveness::pid_alive;
    BOOST_TEST(pid_alive(static_cast<std::uint64_t>(::getpid())));
    BOOST_TEST(!pid_alive(0));
    BOOST_TEST(!pid_alive(static_cast<std::uint64_t>(INT_MAX) + 1));
    BOOST_TEST(!pid_alive(UINT64_MAX));
    BOOST_TEST(!pid_alive(static_cast<std::uint64_t>(procreg_test::dead_pid())));
}

// EPERM means alive: a process we may not signal still exists. As root the
// probe runs in a child that dropped to uid 65534 and asks about pid 1.
BOOST_AUTO_TEST_CASE(eperm_means_alive) {
    if (::geteuid() != 0) {
        BOOST_TEST(procreg::liveness::pid_alive(1));
        return;
    }
    const pid_t child = procreg_test::spawn([] {
        if (::setgid(65534) != 0 || ::setuid(65534) != 0) return 3;
        if (::kill(1, 0) == 0 || errno != EPERM) return 4;  // the premise: kill says EPERM
        return procreg::liveness::pid_alive(1) ? 0 : 5;
    });
    BOOST_TEST(procreg_test::wait_exit(child) == 0);
}

BOOST_AUTO_TEST_SUITE_END()

// The pretty-printer writes strings and integers itself (no temporary
// string per key and value); its text must stay byte for byte what
// boost::json::serialize writes, which the seeds' files and serde_json agree with.
BOOST_AUTO_TEST_SUITE(json_text)

BOOST_AUTO_TEST_CASE(scalars_are_written_as_boost_json_serializes_them) {
    std::vector<boost::json::value> values;
    for (int byte = 0; byte < 256; ++byte) {
        values.emplace_back(boost::json::string(1, static_cast<char>(byte)));
        values.emplace_back(boost::json::string(std::string("a") + static_cast<char>(byte) + "z"));
    }
    std::uint64_t state = 0x9e3779b97f4a7c15ULL;  // xorshift: a fixed, reproducible mix of bytes
    for (int i = 0; i < 2000; ++i) {
        boost::json::string text;
        const int length = static_cast<int>(state % 40);
        for (int j = 0; j < length; ++j) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push_back(static_cast<char>(state & 0xff));
        }
        values.emplace_back(std::move(text));
    }
    for (const std::int64_t n : {std::int64_t{0}, std::int64_t{-1}, std::int64_t{42}, std::int64_t{INT64_MIN},
                                 std::int64_t{INT64_MAX}}) {
        values.emplace_back(n);
    }
    values.emplace_back(std::uint64_t{UINT64_MAX});
    values.emplace_back(true);
    values.emplace_back(false);
    values.emplace_back(nullptr);
    values.emplace_back(0.1);
    values.emplace_back(-2.5e300);
    values.emplace_back(boost::json::string(""));
    for (const auto& value : values) {
        std::string written;
        procreg::detail::append_json_scalar(written, value);
        BOOST_TEST(written == boost::json::serialize(value));
    }
}

BOOST_AUTO_TEST_CASE(keys_that_need_escaping_are_escaped_in_pretty_output) {
    boost::json::object object;
    object["plain"] = "x";
    object[std::string("quote\"back\\slash\ttab\x01" "ctl\x7f" "del\xc3\xa9")] = "v\n";
    const std::string text = procreg::detail::pretty_print(object);
    BOOST_TEST(text == "{\n  \"plain\": \"x\",\n  \"quote\\\"back\\\\slash\\ttab\\u0001ctl\x7f" "del\xc3\xa9\": \"v\\n\"\n}");
    BOOST_TEST(boost::json::parse(text) == boost::json::value(object));
}

BOOST_AUTO_TEST_SUITE_END()
