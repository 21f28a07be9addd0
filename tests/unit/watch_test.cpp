// Watching a registry (procreg/watch/*.hpp, issue 18), with real processes:
// every event kind for each storage written by another process, an owner
// SIGKILLed without any write to the registry, a burst of 10,000 writes
// through a tiny inotify queue that must end in the exact final state, a
// registry directory replaced under the watcher, a watcher used in a forked
// child, the polling fallback, and the waits built on the watcher.
#define BOOST_TEST_MODULE watch
#include <boost/test/unit_test.hpp>

#include <procreg/claim.hpp>
#include <procreg/liveness/callable_liveness.hpp>
#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/liveness/pidfd_liveness.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/claim_file.hpp>
#include <procreg/storage/json_table.hpp>
#include <procreg/storage/record_files.hpp>
#include <procreg/watch/wait.hpp>
#include <procreg/watch/watcher.hpp>

#include "support/claim_helpers.hpp"
#include "support/counter_record.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <signal.h>
#include <unistd.h>

namespace fs = std::filesystem;
using procreg::watch_event_kind;
using procreg_test::counter_record;
using procreg_test::live_child;
using procreg_test::temp_dir;

namespace {

using table_registry = procreg::registry<counter_record, procreg::lock::flock_lock, procreg::storage::json_table>;
using files_registry = procreg::registry<counter_record, procreg::lock::flock_lock, procreg::storage::record_files>;
using claim_storage = procreg::storage::claim_file<procreg::storage::json_record_format>;
using claim_registry = procreg::registry<counter_record, procreg::lock::flock_lock, claim_storage,
                                         procreg::liveness::pidfd_liveness>;
using polled_registry = procreg::registry<counter_record, procreg::lock::flock_lock, procreg::storage::json_table,
                                          procreg::liveness::callable_liveness>;

constexpr auto patience = std::chrono::seconds(10);

procreg::storage::json_table table_at(const fs::path& file) {
    procreg::storage::json_table_options opts;
    opts.file = file;
    opts.durable = false;
    return procreg::storage::json_table(opts);
}

procreg::storage::record_files files_at(const fs::path& root) {
    procreg::storage::record_files_options opts;
    opts.root = root;
    opts.durable = false;
    return procreg::storage::record_files(opts);
}

claim_storage claim_at(const fs::path& file) {
    procreg::storage::claim_file_options opts;
    opts.file = file;
    opts.durable = false;
    return claim_storage(opts);
}

counter_record rec(const std::string& name, pid_t pid, std::uint64_t count = 0) {
    return counter_record{name, static_cast<std::uint32_t>(pid), count};
}

// Runs `body` in a child process (with its own registry objects) and
// requires that it succeeded.
template <class Body>
void in_other_process(Body&& body) {
    const pid_t pid = procreg_test::spawn([&] {
        body();
        return 0;
    });
    BOOST_TEST_REQUIRE(procreg_test::wait_exit(pid) == 0);
}

// The next event, which must come within `patience` and be `kind` on `key`.
template <class Watcher>
typename Watcher::event_type expect_event(Watcher& w, watch_event_kind kind, const std::string& key) {
    auto event = w.next(patience);
    BOOST_TEST_REQUIRE(event.has_value(), "no event; expected " << procreg::to_string(kind) << " " << key);
    BOOST_TEST(procreg::to_string(event->kind) == procreg::to_string(kind));
    BOOST_TEST(event->key == key);
    return *event;
}

template <class Watcher>
void expect_quiet(Watcher& w) {
    const auto event = w.try_next();
    BOOST_TEST(!event.has_value(), "unexpected event " << (event ? procreg::to_string(event->kind) : "")
                                                       << " " << (event ? event->key : ""));
}

// A live process that registered itself (with its own registry object).
template <class Open>
std::unique_ptr<live_child> registered_owner(Open open, const std::string& name) {
    auto child = std::make_unique<live_child>([open, name] {
        auto reg = open();
        reg->insert(rec(name, ::getpid()));
        return 0;
    });
    BOOST_TEST_REQUIRE(child->ready());
    return child;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(events)

BOOST_AUTO_TEST_CASE(json_table_every_kind_from_other_processes) {
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    const auto open = [file] { return std::make_unique<table_registry>(table_at(file)); };
    auto reg = open();
    procreg::watcher<table_registry> w(*reg);
    expect_quiet(w);

    in_other_process([&] { open()->insert(rec("a", ::getpid(), 1)); });
    auto added = expect_event(w, watch_event_kind::added, "a");
    BOOST_TEST(added.record->count == 1u);

    in_other_process([&] { open()->transact([](table_registry::transaction_type& tx) { tx.modify("a", [](counter_record& r) { r.count = 2; }); }); });
    BOOST_TEST(expect_event(w, watch_event_kind::changed, "a").record->count == 2u);

    in_other_process([&] { open()->erase("a"); });
    BOOST_TEST(expect_event(w, watch_event_kind::removed, "a").record->count == 2u);

    auto owner = registered_owner(open, "worker");
    expect_event(w, watch_event_kind::added, "worker");
    BOOST_TEST(w.current().find("worker")->alive);
    const pid_t owner_pid = owner->pid();
    // SIGKILL, not reaped yet: nothing is written to the registry, and
    // kill(pid, 0) still answers for the zombie; only the pidfd can tell.
    BOOST_TEST_REQUIRE(::kill(owner_pid, SIGKILL) == 0);
    auto died = expect_event(w, watch_event_kind::owner_died, "worker");
    owner->stop();
    BOOST_TEST(died.pid == static_cast<std::uint64_t>(owner_pid));
    BOOST_TEST(!w.current().find("worker")->alive);
    BOOST_TEST(reg->list().size() == 1u);  // the record stays
    expect_quiet(w);
}

BOOST_AUTO_TEST_CASE(record_files_every_kind_from_other_processes) {
    temp_dir dir;
    const fs::path root = dir / "registry";
    const auto open = [root] { return std::make_unique<files_registry>(files_at(root)); };
    auto reg = open();
    procreg::watcher<files_registry> w(*reg);

    in_other_process([&] { open()->insert(rec("a", ::getpid(), 1)); });
    expect_event(w, watch_event_kind::added, "a");
    in_other_process([&] { open()->upsert(rec("a", ::getpid(), 5)); });
    BOOST_TEST(expect_event(w, watch_event_kind::changed, "a").record->count == 5u);
    in_other_process([&] { open()->retire("a"); });
    auto retired = expect_event(w, watch_event_kind::retired, "a");
    BOOST_TEST(retired.record->count == 5u);
    BOOST_TEST(w.current().retired.count("a") == 1u);
    BOOST_TEST(w.current().find("a") == nullptr);
    in_other_process([&] { open()->unretire("a"); });
    expect_event(w, watch_event_kind::unretired, "a");
    BOOST_TEST(w.current().retired.empty());
    in_other_process([&] { open()->erase("a"); });
    expect_event(w, watch_event_kind::removed, "a");

    auto owner = registered_owner(open, "worker");
    expect_event(w, watch_event_kind::added, "worker");
    owner->stop();
    expect_event(w, watch_event_kind::owner_died, "worker");
    expect_quiet(w);
}

BOOST_AUTO_TEST_CASE(claim_file_holder_comes_dies_is_replaced_and_releases) {
    temp_dir dir;
    const fs::path file = dir / "daemon.lock";
    const auto open = [file] { return std::make_shared<claim_registry>(claim_at(file)); };
    auto reg = open();
    procreg::watcher<claim_registry> w(*reg);

    live_child holder([open] { return procreg::claim<claim_registry>(open(), "daemon").acquire(rec("daemon", ::getpid())); });
    BOOST_TEST_REQUIRE(holder.ready());
    expect_event(w, watch_event_kind::added, "daemon");
    holder.stop();
    expect_event(w, watch_event_kind::owner_died, "daemon");

    // A stale takeover by another process: the claim now names a new holder.
    live_child successor([open] { return procreg::claim<claim_registry>(open(), "daemon").acquire(rec("daemon", ::getpid())); });
    BOOST_TEST_REQUIRE(successor.ready());
    auto changed = expect_event(w, watch_event_kind::changed, "daemon");
    BOOST_TEST(changed.pid == static_cast<std::uint64_t>(successor.pid()));
    BOOST_TEST(w.current().find("daemon")->alive);

    in_other_process([&] { open()->erase("daemon"); });
    expect_event(w, watch_event_kind::removed, "daemon");
    expect_quiet(w);
}

// A burst of 10,000 writes in another process through an inotify queue of
// 16 events: the queue overflows, and the watcher must resync to the exact
// final state, with events that turn what it saw into that state.
BOOST_AUTO_TEST_CASE(burst_through_an_overflowing_queue_ends_in_the_exact_state) {
    BOOST_TEST_REQUIRE(::geteuid() == 0, "this test lowers /proc/sys/fs/inotify/max_queued_events: run it as root");
    temp_dir dir;
    const fs::path root = dir / "registry";
    const auto open = [root] { return std::make_unique<files_registry>(files_at(root)); };
    auto reg = open();
    reg->insert(rec("gone-soon", ::getpid(), 0));

    const char* limit_path = "/proc/sys/fs/inotify/max_queued_events";
    std::string saved;
    std::getline(std::ifstream(limit_path), saved);
    BOOST_TEST_REQUIRE(!saved.empty());
    struct restore_limit {
        const char* path;
        std::string value;
        ~restore_limit() { std::ofstream(path) << value; }
    };
    std::optional<procreg::watcher<files_registry>> w;
    {
        // The limit is taken when the inotify instance is created: lowered
        // only for that moment (the sysctl is global).
        restore_limit restore{limit_path, saved};
        std::ofstream(limit_path) << 16;
        w.emplace(*reg);
    }
    std::string now_limit;
    std::getline(std::ifstream(limit_path), now_limit);
    BOOST_TEST_REQUIRE(now_limit == saved);

    in_other_process([&] {
        auto writer = open();
        writer->erase("gone-soon");
        for (int i = 0; i < 10000; ++i) {
            const std::string key = "k" + std::to_string(i % 97);
            if (i % 13 == 0) {
                writer->erase(key);
            } else {
                writer->upsert(rec(key, ::getpid(), static_cast<std::uint64_t>(i)));
            }
        }
    });

    // Apply every event to a model of what the watcher saw.
    std::map<std::string, std::uint64_t> model{{"gone-soon", 0}};
    const auto final_state = [&] {
        std::map<std::string, std::uint64_t> out;
        for (const auto& row : reg->list()) out[row.record.name] = row.record.count;
        return out;
    }();
    const auto deadline = std::chrono::steady_clock::now() + patience;
    while (model != final_state && std::chrono::steady_clock::now() < deadline) {
        auto event = w->next(std::chrono::seconds(1));
        if (!event) continue;
        if (event->kind == watch_event_kind::added || event->kind == watch_event_kind::changed) {
            model[event->key] = event->record->count;
        } else if (event->kind == watch_event_kind::removed) {
            model.erase(event->key);
        }
    }
    BOOST_TEST(model.size() == final_state.size());
    BOOST_TEST((model == final_state));
    BOOST_TEST(w->current().active.size() == final_state.size());
    BOOST_TEST(w->stats().rebuilds >= 1u, "the queue of 16 events never overflowed: the test proves nothing");
    while (auto extra = w->try_next()) {
        // owner_died only: the writer has exited
        BOOST_TEST(procreg::to_string(extra->kind) == "owner_died");
    }
}

// The registry directory is moved away and a new one put at its path: the
// watcher resyncs to the new directory's state and keeps watching it.
BOOST_AUTO_TEST_CASE(replaced_registry_directory_is_resynced) {
    temp_dir dir;
    const fs::path root = dir / "registry";
    auto reg = std::make_unique<files_registry>(files_at(root));
    reg->insert(rec("old", ::getpid()));
    procreg::watcher<files_registry> w(*reg);
    BOOST_TEST(w.current().find("old") != nullptr);
    expect_quiet(w);  // what exists at the start is the starting point, not an event

    in_other_process([&] {
        fs::rename(root, dir / "registry.old");
        files_registry fresh(files_at(root));
        fresh.insert(rec("new", ::getpid()));
    });
    const auto deadline = std::chrono::steady_clock::now() + patience;
    bool saw_removed = false;
    bool saw_added = false;
    while (!(saw_removed && saw_added) && std::chrono::steady_clock::now() < deadline) {
        auto event = w.next(std::chrono::seconds(1));
        if (!event) continue;
        saw_removed = saw_removed || (event->kind == watch_event_kind::removed && event->key == "old");
        saw_added = saw_added || (event->kind == watch_event_kind::added && event->key == "new");
    }
    BOOST_TEST(saw_removed);
    BOOST_TEST(saw_added);
    BOOST_TEST(w.current().find("old") == nullptr);
    BOOST_TEST(w.current().find("new") != nullptr);
    BOOST_TEST(w.stats().rebuilds >= 1u);

    in_other_process([&] { files_registry(files_at(root)).insert(rec("later", ::getpid())); });
    auto event = w.next(patience);
    while (event && event->kind == watch_event_kind::owner_died) event = w.next(patience);
    BOOST_TEST_REQUIRE(event.has_value());
    BOOST_TEST(procreg::to_string(event->kind) == "added");
    BOOST_TEST(event->key == "later");
}

// The table's directory is removed (its records are reported removed: the
// state is empty while no directory is at the path), then created again by
// another process (its records are reported added).
BOOST_AUTO_TEST_CASE(removed_and_recreated_directory_is_followed) {
    temp_dir dir;
    const fs::path file = dir / "sub" / "registry.json";
    auto reg = std::make_unique<table_registry>(table_at(file));
    reg->insert(rec("before", ::getpid()));
    procreg::watcher<table_registry> w(*reg);

    in_other_process([&] { fs::remove_all(dir / "sub"); });
    auto removed = w.next(patience);
    while (removed && removed->kind == watch_event_kind::owner_died) removed = w.next(patience);
    BOOST_TEST_REQUIRE(removed.has_value());
    BOOST_TEST(procreg::to_string(removed->kind) == "removed");
    BOOST_TEST(removed->key == "before");
    BOOST_TEST(w.current().active.empty());

    in_other_process([&] { table_registry(table_at(file)).insert(rec("after", ::getpid())); });
    const auto deadline = std::chrono::steady_clock::now() + patience;
    while (!w.current().find("after") && std::chrono::steady_clock::now() < deadline) (void)w.next(std::chrono::seconds(1));
    BOOST_TEST(w.current().find("after") != nullptr);
    BOOST_TEST(w.current().find("before") == nullptr);
}

// A watcher used in a forked child opens its own descriptors: both the
// child and the parent see the same event, neither steals it.
BOOST_AUTO_TEST_CASE(a_forked_child_does_not_steal_the_parents_events) {
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    auto reg = std::make_unique<table_registry>(table_at(file));
    procreg::watcher<table_registry> w(*reg);
    procreg_test::claim_pipe go;
    procreg_test::signal_pipe child_ready;
    const pid_t child = procreg_test::spawn([&] {
        go.close_write();
        (void)w.try_next();  // first use in the child: its own descriptors
        child_ready.notify();
        go.wait_for_close();
        auto event = w.next(patience);
        return event && event->kind == watch_event_kind::added && event->key == "x" ? 0 : 1;
    });
    go.close_read();
    BOOST_TEST_REQUIRE(child_ready.wait());
    in_other_process([&] { table_registry(table_at(file)).insert(rec("x", ::getpid())); });
    go.close_write();
    auto event = w.next(patience);
    BOOST_TEST_REQUIRE(event.has_value());
    BOOST_TEST(event->key == "x");
    BOOST_TEST(procreg_test::wait_exit(child) == 0);
}

// A liveness policy that cannot pin an owner: the watcher says it polls,
// and still reports the owner's death.
BOOST_AUTO_TEST_CASE(without_pidfds_owner_death_is_polled) {
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    polled_registry reg(table_at(file),
                        procreg::liveness::callable_liveness([](std::uint64_t pid) { return procreg::liveness::pid_alive(pid); }));
    procreg::watch_options opts;
    opts.owner_poll_interval = std::chrono::milliseconds(20);
    procreg::watcher<polled_registry> w(reg, opts);
    BOOST_TEST(!w.polls_owners());  // no live owner yet: nothing to poll
    auto owner = registered_owner([file] { return std::make_unique<table_registry>(table_at(file)); }, "worker");
    expect_event(w, watch_event_kind::added, "worker");
    BOOST_TEST(w.polls_owners());
    owner->stop();  // killed and reaped: kill(pid, 0) says dead
    expect_event(w, watch_event_kind::owner_died, "worker");
    BOOST_TEST(!w.polls_owners());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(waits)

BOOST_AUTO_TEST_CASE(acquire_within_returns_when_the_holder_is_killed) {
    temp_dir dir;
    const fs::path file = dir / "daemon.lock";
    const auto open = [file] { return std::make_shared<claim_registry>(claim_at(file)); };
    live_child holder([open] { return procreg::claim<claim_registry>(open(), "daemon").acquire(rec("daemon", ::getpid())); });
    BOOST_TEST_REQUIRE(holder.ready());
    procreg::claim<claim_registry> mine(open(), "daemon");
    BOOST_CHECK_THROW(mine.acquire(rec("daemon", ::getpid())), procreg::claim_in_use);
    BOOST_CHECK_THROW(procreg::acquire_within(mine, rec("daemon", ::getpid()), std::chrono::milliseconds(30)),
                      procreg::claim_in_use);
    const pid_t holder_pid = holder.pid();
    const pid_t killer = procreg_test::spawn([holder_pid] {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let the acquirer wait first
        return ::kill(holder_pid, SIGKILL) == 0 ? 0 : 1;
    });
    auto handle = procreg::acquire_within(mine, rec("daemon", ::getpid()), patience);
    BOOST_TEST(handle.held());
    BOOST_TEST(procreg_test::wait_exit(killer) == 0);
}

BOOST_AUTO_TEST_CASE(acquire_within_returns_when_the_holder_releases) {
    temp_dir dir;
    const fs::path file = dir / "daemon.lock";
    const auto open = [file] { return std::make_shared<claim_registry>(claim_at(file)); };
    procreg_test::claim_pipe release_now;
    procreg_test::signal_pipe held;
    const pid_t holder = procreg_test::spawn([&] {
        release_now.close_write();
        auto handle = procreg::claim<claim_registry>(open(), "daemon").acquire(rec("daemon", ::getpid()));
        held.notify();
        release_now.wait_for_close();
        return handle.release() == procreg::release_status::released ? 0 : 1;
    });
    release_now.close_read();
    BOOST_TEST_REQUIRE(held.wait());
    procreg::claim<claim_registry> mine(open(), "daemon");
    const pid_t releaser = procreg_test::spawn([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        release_now.close_write();
        return 0;
    });
    release_now.close_write();  // the parent's copy: only the releaser's copy gates the holder now
    auto handle = procreg::acquire_within(mine, rec("daemon", ::getpid()), patience);
    BOOST_TEST(handle.held());
    BOOST_TEST(procreg_test::wait_exit(releaser) == 0);
    BOOST_TEST(procreg_test::wait_exit(holder) == 0);
}

BOOST_AUTO_TEST_CASE(wait_until_a_record_is_alive_or_gone) {
    temp_dir dir;
    const fs::path file = dir / "registry.json";
    const auto open = [file] { return std::make_unique<table_registry>(table_at(file)); };
    auto reg = open();
    BOOST_TEST(!procreg::wait_until(*reg, std::chrono::milliseconds(20), procreg::record_alive("worker")));
    const pid_t starter = procreg_test::spawn([open] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        open()->insert(rec("worker", ::getppid()));  // owned by the test process: alive
        return 0;
    });
    BOOST_TEST(procreg::wait_until(*reg, patience, procreg::record_alive("worker")));
    BOOST_TEST(procreg_test::wait_exit(starter) == 0);
    in_other_process([&] { open()->erase("worker"); });
    BOOST_TEST(procreg::wait_until(*reg, patience, procreg::record_absent("worker")));
}

BOOST_AUTO_TEST_SUITE_END()
