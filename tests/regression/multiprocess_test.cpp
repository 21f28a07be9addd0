// Regressions of issue 13 ("Many processes, one registry"): mixed liveness
// policies, claims and locks across fork(), the lock and the data in one
// directory while the directory is moved, a second handle on one lock, and
// the lock file's owner and mode. Every case runs real processes.
#define BOOST_TEST_MODULE procreg regression - many processes one registry
#include <boost/test/unit_test.hpp>

#include <procreg/claim.hpp>
#include <procreg/liveness/pidfd_liveness.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/lock/named_mutex_lock.hpp>
#include <procreg/presets/algocline.hpp>
#include <procreg/presets/insomnia.hpp>
#include <procreg/presets/trusty.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/json_table.hpp>
#include <procreg/storage/record_files.hpp>

#include <boost/json.hpp>

#include "support/counter_registries.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;
using procreg_test::counter_record;
using procreg_test::spawn;
using procreg_test::temp_dir;
using procreg_test::wait_exit;

namespace {

// A child that stays alive until killed: an owner pid for records.
struct live_child {
    pid_t pid;
    live_child() : pid(spawn([] {
                       for (;;) ::pause();
                       return 0;
                   })) {}
    ~live_child() {
        ::kill(pid, SIGKILL);
        (void)wait_exit(pid);
    }
    std::uint32_t id() const { return static_cast<std::uint32_t>(pid); }
};

// The two storages that keep owner identities, under either lock, each able
// to build a registry of counter_record under any liveness policy: the
// mixed-liveness cases run over this matrix.
template <class Lock>
struct json_table_storage {
    static constexpr const char* name = "json_table";
    template <class Liveness>
    using registry = procreg_test::counter_registry<procreg::storage::json_table, Lock, Liveness>;
    template <class Liveness>
    static registry<Liveness> open(const fs::path& dir) {
        return procreg_test::open_counter_table<Lock, Liveness>(dir, "workers");
    }
};
template <class Lock>
struct record_files_storage {
    static constexpr const char* name = "record_files";
    template <class Liveness>
    using registry = procreg_test::counter_registry<procreg::storage::record_files, Lock, Liveness>;
    template <class Liveness>
    static registry<Liveness> open(const fs::path& dir) {
        return registry<Liveness>(procreg_test::basic_record_files_kind<false>::open(dir / "records"));
    }
};
using identity_storages =
    std::tuple<json_table_storage<procreg::lock::flock_lock>, record_files_storage<procreg::lock::flock_lock>,
               json_table_storage<procreg::lock::named_mutex_lock>,
               record_files_storage<procreg::lock::named_mutex_lock>>;

// Runs `body` in a child process that is killed by SIGALRM after `seconds`:
// a hang becomes exit code 128 + SIGALRM instead of a hung test.
template <class Body>
int in_child_with_deadline(unsigned seconds, Body&& body) {
    const pid_t pid = spawn([&] {
        ::alarm(seconds);
        return body();
    });
    return wait_exit(pid);
}

constexpr int hung = 128 + SIGALRM;

}  // namespace

// ---------------------------------------------------------------------------
// Item 1: an owner identity never outlives the pid it was taken for.
// ---------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(mixed_liveness)

// P1 (pidfd) inserts `w` for A; P2 (kill) rewrites it for a live B, by upsert
// and by modify; P1 must see B alive and reap nothing.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_new_owner_written_by_kill_liveness_is_alive_for_pidfd_liveness, Storage,
                              identity_storages) {
    for (const bool by_upsert : {true, false}) {
        temp_dir dir;
        live_child a;
        // B starts a few clock ticks after A, so the two start times differ
        // (the identity must be dropped, not merely be equal by chance).
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        live_child b;
        auto p1 = Storage::template open<procreg::liveness::pidfd_liveness>(dir.path());
        p1.insert(counter_record{"w", a.id(), 0});
        const int rc = wait_exit(spawn([&] {
            auto p2 = Storage::template open<procreg::liveness::kill_liveness>(dir.path());
            if (by_upsert) {
                p2.upsert(counter_record{"w", b.id(), 1});
            } else {
                p2.transact([&](auto& tx) { tx.modify("w", [&](counter_record& r) { r.pid = b.id(); }); });
            }
            return 0;
        }));
        BOOST_TEST_REQUIRE(rc == 0);
        const auto listed = p1.list();
        BOOST_TEST_REQUIRE(listed.size() == 1u);
        BOOST_TEST(listed[0].record.pid == b.id());
        BOOST_TEST(listed[0].alive, Storage::name << (by_upsert ? " upsert" : " modify")
                                                  << ": the new, live owner reads as dead");
        BOOST_TEST(p1.reap().empty());
        BOOST_TEST(p1.find("w").has_value());
    }
}

// The other way: kill liveness wrote A (no identity), pidfd rewrites for B
// and stamps B's identity; kill liveness then reaps only once B is gone.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_new_owner_written_by_pidfd_liveness_is_judged_by_kill_liveness, Storage,
                              identity_storages) {
    temp_dir dir;
    live_child a;
    auto p1 = Storage::template open<procreg::liveness::kill_liveness>(dir.path());
    p1.insert(counter_record{"w", a.id(), 0});
    std::optional<live_child> b(std::in_place);
    const std::uint32_t b_pid = b->id();
    BOOST_TEST_REQUIRE(wait_exit(spawn([&] {
                           auto p2 = Storage::template open<procreg::liveness::pidfd_liveness>(dir.path());
                           p2.upsert(counter_record{"w", b_pid, 1});
                           return p2.list().at(0).alive ? 0 : 1;
                       })) == 0);
    BOOST_TEST(p1.list().at(0).alive);
    BOOST_TEST(p1.reap().empty());
    b.reset();  // B dies
    BOOST_TEST(p1.reap().size() == 1u);
}

// The same pid, but the stored identity is of an earlier process that had
// it (a pid reused): a kill_liveness upsert for the live process drops that
// identity, and pidfd_liveness then finds the owner alive.
BOOST_AUTO_TEST_CASE(an_upsert_for_a_reused_pid_drops_the_earlier_processes_identity) {
    temp_dir dir;
    live_child b;
    using storage = json_table_storage<procreg::lock::flock_lock>;
    auto p1 = storage::open<procreg::liveness::pidfd_liveness>(dir.path());
    p1.insert(counter_record{"w", b.id(), 0});
    const fs::path file = dir.path() / "registry.json";
    // As if the identity had been taken for an earlier process with b's pid.
    boost::json::value top = boost::json::parse(procreg_test::read_text(file));
    auto& stored = top.as_object().at("workers").as_array().at(0).as_object();
    BOOST_TEST_REQUIRE(stored.contains("procreg_start_time"));
    stored["procreg_start_time"] = stored["procreg_start_time"].to_number<std::uint64_t>() + 7;
    stored.erase("procreg_pidfs_inode");
    procreg_test::write_text(file, boost::json::serialize(top));
    BOOST_TEST_REQUIRE(!p1.list().at(0).alive);
    BOOST_TEST_REQUIRE(wait_exit(spawn([&] {
                           auto p2 = storage::open<procreg::liveness::kill_liveness>(dir.path());
                           p2.upsert(counter_record{"w", b.id(), 1});
                           return 0;
                       })) == 0);
    BOOST_TEST(p1.list().at(0).alive, "the live owner is judged by the earlier process's identity");
    BOOST_TEST(p1.reap().empty());
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------
// Item 2: a claim handle acts only in the process that acquired it.
// ---------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(fork_and_claims)

BOOST_AUTO_TEST_CASE(a_forked_child_that_destroys_the_guard_leaves_the_parents_claim) {
    temp_dir dir;
    const fs::path lock_file = dir.path() / "daemon.lock";
    auto guard = procreg::trusty::acquire_lock(lock_file);
    // The child unwinds: the guard it inherited is destroyed there.
    BOOST_TEST_REQUIRE(wait_exit(spawn([&] {
                           auto inherited = std::move(guard);
                           return 0;
                       })) == 0);
    // And another child exits through exit(), running destructors of statics.
    BOOST_TEST_REQUIRE(wait_exit(spawn([&] {
                           static auto kept = std::move(guard);
                           std::exit(0);
                           return 0;
                       })) == 0);
    BOOST_TEST_REQUIRE(guard.held());
    BOOST_TEST(fs::exists(lock_file), "the child removed the parent's daemon.lock");
    BOOST_TEST((procreg::trusty::read_lock_pid(lock_file) == std::optional<std::uint32_t>(::getpid())));
    // A third process cannot become a second daemon.
    const int third = wait_exit(spawn([&] {
        try {
            auto second = procreg::trusty::acquire_lock(lock_file);
            return 1;  // two daemons
        } catch (const procreg::error& e) {
            return e.code() == procreg::errc::in_use ? 0 : 2;
        }
    }));
    BOOST_TEST(third == 0);
    BOOST_TEST((guard.release() == procreg::release_status::released));
    BOOST_TEST(!fs::exists(lock_file));
}

BOOST_AUTO_TEST_CASE(an_explicit_release_in_a_forked_child_leaves_the_parents_claim) {
    temp_dir dir;
    auto lock = procreg::insomnia::staging_lock::acquire(dir.path() / "_staging", static_cast<std::uint32_t>(::getpid()),
                                                         "pod-a", {});
    const int rc = wait_exit(spawn([&] {
        const auto status = lock.release_only();
        return status == procreg::release_status::not_ours ? 0 : 1;
    }));
    BOOST_TEST(rc == 0);
    const auto holder = lock.handle().registry().find(procreg::insomnia::claim_key);
    BOOST_TEST_REQUIRE(holder.has_value());
    BOOST_TEST(holder->pid == static_cast<std::uint32_t>(::getpid()));
    BOOST_TEST((lock.release_only() == procreg::release_status::released));
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------
// Item 3: fork while a transaction runs.
// ---------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(fork_and_locks)

// Another thread of the parent is inside a transaction when the main thread
// forks: the child's own insert waits its turn, then succeeds.
BOOST_AUTO_TEST_CASE(a_child_forked_while_another_thread_is_in_a_transaction_waits_its_turn) {
    temp_dir dir;
    auto reg = procreg::algocline::open(dir.path() / "registry.json");
    std::mutex m;
    std::condition_variable cv;
    bool inside = false, finish = false;
    std::thread holder([&] {
        reg.transact([&](auto& tx) {
            tx.insert(procreg::algocline::pool_session::make("parent", static_cast<std::uint32_t>(::getpid()), "/s", "1"));
            std::unique_lock<std::mutex> g(m);
            inside = true;
            cv.notify_all();
            cv.wait(g, [&] { return finish; });
        });
    });
    {
        std::unique_lock<std::mutex> g(m);
        cv.wait(g, [&] { return inside; });
    }
    const pid_t child = spawn([&] {
        ::alarm(20);
        reg.insert(procreg::algocline::pool_session::make("child", static_cast<std::uint32_t>(::getpid()), "/c", "1"));
        return 0;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let the child reach the lock
    {
        std::lock_guard<std::mutex> g(m);
        finish = true;
    }
    cv.notify_all();
    holder.join();
    const int rc = wait_exit(child);
    BOOST_TEST(rc == 0, "child exit " << rc << (rc == hung ? " (hung)" : ""));
    BOOST_TEST(reg.find("parent").has_value());
    BOOST_TEST(reg.find("child").has_value());
}

// A child forked inside the steps unwinds (throws) or returns from them:
// neither releases the parent's lock nor commits the parent's transaction.
BOOST_AUTO_TEST_CASE(a_child_forked_inside_the_steps_neither_releases_nor_commits) {
    struct child_gives_up {};
    for (const bool child_throws : {true, false}) {
        temp_dir dir;
        const fs::path file = dir.path() / "registry.json";
        auto reg = procreg::algocline::open(file);
        const pid_t parent = ::getpid();
        int child_rc = -1, probe_rc = -1;
        std::string file_after_child;
        try {
            reg.transact([&](auto& tx) {
                tx.insert(procreg::algocline::pool_session::make("parent", static_cast<std::uint32_t>(parent), "/s", "1"));
                std::fflush(nullptr);
                const pid_t child = ::fork();
                BOOST_TEST_REQUIRE(child >= 0);
                if (child == 0) {
                    ::alarm(20);
                    tx.insert(procreg::algocline::pool_session::make("child", 1, "/c", "1"));
                    if (child_throws) throw child_gives_up{};
                    return;  // the child returns from the steps: the registry must not commit
                }
                child_rc = wait_exit(child);
                std::ifstream in(file);
                file_after_child.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
                // The parent still holds the lock: a third process cannot take it.
                probe_rc = in_child_with_deadline(20, [&] {
                    auto other = procreg::algocline::open(file);
                    try {
                        other.transact_for(std::chrono::milliseconds(200), [](auto&) {});
                        return 1;  // the lock was free: the child released it
                    } catch (const procreg::error& e) {
                        return e.code() == procreg::errc::lock_timeout ? 0 : 2;
                    }
                });
            });
        } catch (const child_gives_up&) {
            if (::getpid() != parent) ::_exit(0);
            throw;
        } catch (const procreg::error& e) {
            // Refused to commit in the child: what must happen.
            if (::getpid() != parent) ::_exit(e.code() == procreg::errc::forked_child ? 0 : 5);
            throw;
        } catch (...) {
            if (::getpid() != parent) ::_exit(4);
            throw;
        }
        if (::getpid() != parent) ::_exit(3);  // the child's copy committed
        const char* how = child_throws ? "child threw" : "child returned";
        BOOST_TEST(child_rc == 0, how << ": child exit " << child_rc);
        BOOST_TEST(probe_rc == 0, how << ": probe exit " << probe_rc << " (1: the child released the parent's lock)");
        BOOST_TEST(file_after_child.find("child") == std::string::npos, how << ": the child wrote " << file_after_child);
        BOOST_TEST(reg.find("parent").has_value());
        BOOST_TEST(!reg.find("child").has_value());
    }
}

// The holder forks a worker that never touches the registry, then is
// SIGKILLed: the worker must not keep the dead holder's lock alive.
BOOST_AUTO_TEST_CASE(a_child_that_outlives_a_killed_holder_does_not_keep_its_lock) {
    temp_dir dir;
    const fs::path file = dir.path() / "registry.json";
    int worker_pipe[2];
    BOOST_TEST_REQUIRE(::pipe2(worker_pipe, O_CLOEXEC) == 0);
    const pid_t holder = spawn([&] {
        auto reg = procreg::algocline::open(file);
        reg.transact([&](auto&) {
            const pid_t worker = spawn([] {
                ::sleep(60);  // a long-lived worker that never uses the registry
                return 0;
            });
            (void)!::write(worker_pipe[1], &worker, sizeof worker);
            for (;;) ::pause();
        });
        return 0;
    });
    pid_t worker = -1;
    BOOST_TEST_REQUIRE(::read(worker_pipe[0], &worker, sizeof worker) == static_cast<ssize_t>(sizeof worker));
    ::close(worker_pipe[0]);
    ::close(worker_pipe[1]);
    ::kill(holder, SIGKILL);
    (void)wait_exit(holder);
    const int rc = in_child_with_deadline(30, [&] {
        auto reg = procreg::algocline::open(file);
        try {
            reg.transact_for(std::chrono::seconds(5), [](auto&) {});
            return 0;
        } catch (const procreg::error& e) {
            return e.code() == procreg::errc::lock_timeout ? 1 : 2;
        }
    });
    ::kill(worker, SIGKILL);  // an orphan now, reaped by init
    BOOST_TEST(rc == 0, "exit " << rc << " (1: the orphaned worker kept the dead holder's lock)");
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------
// Item 7: a second handle on the same lock, used inside a transaction.
// ---------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(second_handle)

BOOST_AUTO_TEST_CASE(a_second_registry_object_inside_a_transaction_fails_with_edeadlk) {
    temp_dir dir;
    const fs::path file = dir.path() / "registry.json";
    const int rc = in_child_with_deadline(20, [&] {
        auto a = procreg::algocline::open(file);
        auto b = procreg::algocline::open(file);
        try {
            a.transact([&](auto&) { (void)b.list(); });
            return 1;
        } catch (const procreg::error& e) {
            if (e.code() != procreg::errc::nested_transaction || e.os_error() != EDEADLK) return 2;
        }
        // Both objects work afterwards.
        b.insert(procreg::algocline::pool_session::make("s", static_cast<std::uint32_t>(::getpid()), "/s", "1"));
        return a.find("s") ? 0 : 3;
    });
    BOOST_TEST(rc == 0, "exit " << rc << (rc == hung ? " (hung)" : ""));
}

BOOST_AUTO_TEST_CASE(two_tables_sharing_one_lock_file_fail_with_edeadlk) {
    temp_dir dir;
    const int rc = in_child_with_deadline(20, [&] {
        auto x = procreg::algocline::open(dir.path() / "x.json");
        auto opts = procreg::algocline::options(dir.path() / "y.json");
        if (opts.lock_file != x.storage().lock_path()) return 4;
        auto y = procreg::algocline::open(std::move(opts));
        try {
            x.transact([&](auto&) { (void)y.list(); });
            return 1;
        } catch (const procreg::error& e) {
            return e.code() == procreg::errc::nested_transaction && e.os_error() == EDEADLK ? 0 : 2;
        }
    });
    BOOST_TEST(rc == 0, "exit " << rc << (rc == hung ? " (hung)" : ""));
}

// Another thread's handle on the same lock is no deadlock: it waits.
BOOST_AUTO_TEST_CASE(a_second_object_in_another_thread_waits) {
    temp_dir dir;
    const fs::path file = dir.path() / "registry.json";
    auto a = procreg::algocline::open(file);
    auto b = procreg::algocline::open(file);
    std::atomic<bool> b_done{false};
    std::thread t;
    a.transact([&](auto& tx) {
        tx.insert(procreg::algocline::pool_session::make("a", static_cast<std::uint32_t>(::getpid()), "/a", "1"));
        t = std::thread([&] {
            b.insert(procreg::algocline::pool_session::make("b", static_cast<std::uint32_t>(::getpid()), "/b", "1"));
            b_done = true;
        });
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        BOOST_TEST(!b_done.load(), "the second object did not wait for the lock");
    });
    t.join();
    BOOST_TEST(b_done.load());
    BOOST_TEST(a.list().size() == 2u);
}

// Thread T2 waits in the second object's flock behind T1; T1, still in its
// transaction, calls that second object: an error for T1, not a deadlock
// (T1 must not wait for the second object's thread mutex, which T2 holds
// while it waits for T1).
BOOST_AUTO_TEST_CASE(a_second_object_waited_on_by_another_thread_is_refused_not_deadlocked) {
    temp_dir dir;
    const fs::path file = dir.path() / "registry.json";
    const int rc = in_child_with_deadline(30, [&] {
        auto a = procreg::algocline::open(file);
        auto b = procreg::algocline::open(file);
        int outcome = 1;
        std::thread t;
        a.transact([&](auto&) {
            t = std::thread([&] { (void)b.list(); });  // blocks in flock behind this transaction
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
            try {
                (void)b.list();
                outcome = 2;
            } catch (const procreg::error& e) {
                outcome = e.code() == procreg::errc::nested_transaction ? 0 : 3;
            }
        });
        t.join();
        return outcome;
    });
    BOOST_TEST(rc == 0, "exit " << rc << (rc == hung ? " (hung)" : ""));
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------
// Item 5: the lock and the data stay in one directory when it is moved.
// Item 10: the lock file obeys the data files' owner and mode rule.
// ---------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(lock_file_place)

namespace {
constexpr uid_t nobody = 65534;

auto open_counter(const fs::path& dir) { return procreg_test::open_counter_table(dir, "counters"); }
}  // namespace

// Two writers increment one counter while another user (with write access
// to the non-sticky parent directory) renames the registry directory away
// and keeps swapping a symlink at its name between two of its directories.
BOOST_AUTO_TEST_CASE(increments_survive_a_moved_directory_and_a_swapped_symlink) {
    BOOST_TEST_REQUIRE(::geteuid() == 0, "this attack needs root (to act as another user)");
    temp_dir dir;
    fs::permissions(dir.path(), fs::perms(0755));
    const fs::path parent = dir.path() / "parent";
    fs::create_directory(parent);
    fs::permissions(parent, fs::perms(0777));  // writable by the attacker, not sticky
    const fs::path other[2] = {parent / "other1", parent / "other2"};
    for (const auto& o : other) {
        fs::create_directory(o);
        BOOST_TEST_REQUIRE(::chown(o.c_str(), nobody, nobody) == 0);
        fs::permissions(o, fs::perms(0777));
    }
    const fs::path reg_dir = parent / "reg";
    {
        auto reg = open_counter(reg_dir);
        reg.insert(counter_record{"c", 1, 0});
    }
    constexpr int writers = 2, increments = 2000;
    procreg_test::signal_pipe ready, go;
    pid_t pids[writers];
    for (auto& pid : pids) {
        pid = spawn([&] {
            auto reg = open_counter(reg_dir);
            (void)reg.find("c");  // the lock file and the directory are open now
            ready.notify();
            go.wait();
            for (int i = 0; i < increments; ++i) {
                reg.transact([](auto& tx) { tx.modify("c", [](counter_record& r) { ++r.count; }); });
            }
            return 0;
        });
    }
    for (int i = 0; i < writers; ++i) ready.wait();
    const pid_t attacker = spawn([&] {
        if (::setgid(nobody) != 0 || ::setuid(nobody) != 0) return 10;
        if (::rename(reg_dir.c_str(), (parent / "reg.moved").c_str()) != 0) return 11;
        const fs::path tmp = parent / "link.tmp";
        for (unsigned n = 0;; ++n) {
            (void)::unlink(tmp.c_str());
            if (::symlink(other[n % 2].c_str(), tmp.c_str()) != 0) return 12;
            if (::rename(tmp.c_str(), reg_dir.c_str()) != 0) return 13;
        }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the directory has moved
    for (int i = 0; i < writers; ++i) go.notify();
    int failed_writers = 0;
    for (pid_t pid : pids) failed_writers += wait_exit(pid) != 0;
    ::kill(attacker, SIGKILL);
    const int attacker_rc = wait_exit(attacker);
    BOOST_TEST(attacker_rc == 128 + SIGKILL, "the attacker stopped early: exit " << attacker_rc);
    BOOST_TEST(failed_writers == 0);
    auto moved = open_counter(parent / "reg.moved");
    const auto c = moved.find("c");
    BOOST_TEST_REQUIRE(c.has_value());
    BOOST_TEST(c->count == std::uint64_t{writers} * increments);
    for (const auto& o : other) {
        BOOST_TEST(fs::is_empty(o), o << " received files from the writers");
    }
}

BOOST_AUTO_TEST_CASE(a_lock_file_of_another_user_or_writable_by_others_is_refused) {
    BOOST_TEST_REQUIRE(::geteuid() == 0, "this test needs root (to chown the lock file)");
    for (const bool foreign_owner : {true, false}) {
        temp_dir dir;
        const fs::path file = dir.path() / "registry.json";
        const fs::path lock = dir.path() / "registry.lock";
        { std::ofstream(lock).put('\n'); }
        if (foreign_owner) {
            BOOST_TEST_REQUIRE(::chown(lock.c_str(), nobody, nobody) == 0);
            BOOST_TEST_REQUIRE(::chmod(lock.c_str(), 0600) == 0);
        } else {
            BOOST_TEST_REQUIRE(::chmod(lock.c_str(), 0666) == 0);
        }
        auto reg = procreg::algocline::open(file);
        try {
            (void)reg.list();
            BOOST_ERROR("a " << (foreign_owner ? "foreign" : "world-writable") << " lock file was accepted");
        } catch (const procreg::error& e) {
            BOOST_TEST((e.code() == procreg::errc::unsafe_path), e.what());
            BOOST_TEST(e.path() == lock);
        }
        // The directory policy's opt-out accepts it, as it does a shared directory.
        auto opts = procreg::algocline::options(file);
        opts.directory.allow_shared = true;
        auto shared = procreg::algocline::open(std::move(opts));
        BOOST_TEST(shared.list().empty());
    }
}

BOOST_AUTO_TEST_SUITE_END()
