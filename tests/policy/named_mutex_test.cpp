// The named-mutex lock policy against docs/engineering.md §2: a holder killed
// with SIGKILL never leaves the registry stuck (the next locker recovers the
// robust mutex within a bounded time and sees the data as last saved);
// exclusion across processes and threads; try and timed acquisition; the
// segment's name, mode, owner and first-use initialisation.
#define BOOST_TEST_MODULE named_mutex_lock
#include <boost/test/unit_test.hpp>

#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/lock/named_mutex_lock.hpp>
#include <procreg/presets/algocline.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/json_table.hpp>

#include "support/counter_record.hpp"
#include "support/lock_probe.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <csignal>
#include <sys/stat.h>
#include <unistd.h>

using procreg::lock::named_mutex_lock;
using procreg_test::temp_dir;
using namespace std::chrono_literals;

namespace {

namespace bip = boost::interprocess;
using procreg::algocline::pool_session;
using session_registry =
    procreg::registry<pool_session, named_mutex_lock, procreg::storage::json_table, procreg::liveness::kill_liveness>;
using procreg_test::counter_record;  // the concurrency tests increment its `count`
using counter_registry = procreg::registry<counter_record, named_mutex_lock, procreg::storage::json_table,
                                           procreg::liveness::kill_liveness>;

// A private directory and the segment of its registry, removed afterwards
// (by name: the directory is gone by then).
struct fixture {
    temp_dir dir;
    std::filesystem::path file = dir / "registry.json";
    std::filesystem::path lock_path = dir / "registry.lock";
    std::string segment = named_mutex_lock::segment_name(lock_path);
    ~fixture() { named_mutex_lock::remove(named_mutex_lock::explicit_name{segment}); }

    procreg::storage::json_table table() const {
        auto opts = procreg::algocline::options(file);
        opts.durable = false;  // /tmp may be tmpfs or disk; durability is not under test here
        return procreg::storage::json_table(std::move(opts));
    }
    session_registry sessions() const { return session_registry(table()); }
    counter_registry counters() const { return counter_registry(table()); }
};

// 0 when a fresh lock object in another process found the lock free, 1 when held.
int probe_from_child(const std::filesystem::path& lock_path) {
    return procreg_test::probe_lock_in_child<named_mutex_lock>(lock_path);
}

// A child that takes the lock, says so, and releases it when told (or is killed).
struct holding_child {
    procreg_test::signal_pipe held;
    procreg_test::signal_pipe release;
    pid_t pid = -1;

    explicit holding_child(const std::filesystem::path& lock_path) {
        pid = procreg_test::spawn([&] {
            named_mutex_lock lock(lock_path);
            lock.lock();
            held.notify();
            if (!release.wait(60s)) return 2;
            lock.unlock();
            return 0;
        });
        BOOST_TEST_REQUIRE(held.wait(20s));
    }
    int finish() {
        release.notify();
        return procreg_test::wait_exit(pid);
    }
};

bool is_error(const procreg::error& e, procreg::errc code) { return e.code() == code; }

std::filesystem::path shm_file(const std::string& name) { return std::filesystem::path("/dev/shm") / name; }

}  // namespace

BOOST_AUTO_TEST_SUITE(named_mutex)

BOOST_AUTO_TEST_CASE(segment_name_comes_from_the_canonical_lock_path) {
    fixture f;
    std::filesystem::create_directory(f.dir / "sub");
    std::filesystem::create_directory_symlink(f.dir.path(), f.dir / "link");
    BOOST_TEST(f.segment.rfind("procreg-", 0) == 0u);
    BOOST_TEST(f.segment.size() == 24u);
    BOOST_TEST(f.segment.find_first_not_of("0123456789abcdef", 8) == std::string::npos);
    BOOST_TEST(named_mutex_lock::segment_name(f.dir / "sub" / ".." / "registry.lock") == f.segment);
    BOOST_TEST(named_mutex_lock::segment_name(f.dir / "link" / "registry.lock") == f.segment);
    BOOST_TEST(named_mutex_lock::segment_name(f.dir / "other.lock") != f.segment);

    named_mutex_lock lock(f.lock_path);
    BOOST_TEST(lock.name() == f.segment);
    BOOST_TEST(lock.segment_path() == shm_file(f.segment));
    BOOST_TEST(!std::filesystem::exists(f.lock_path));  // no file is created next to the registry
}

BOOST_AUTO_TEST_CASE(segment_is_created_0600_and_owned_by_this_user) {
    fixture f;
    const mode_t old_mask = ::umask(0);  // a permissive umask must not widen the mode
    named_mutex_lock lock(f.lock_path);
    ::umask(old_mask);
    struct ::stat st {};
    BOOST_TEST_REQUIRE(::stat(shm_file(f.segment).c_str(), &st) == 0);
    BOOST_TEST((st.st_mode & 0777) == 0600u);
    BOOST_TEST(st.st_uid == ::geteuid());
}

BOOST_AUTO_TEST_CASE(excludes_another_process) {
    fixture f;
    named_mutex_lock lock(f.lock_path);
    lock.lock();
    BOOST_TEST(probe_from_child(f.lock_path) == 1);
    lock.unlock();
    BOOST_TEST(probe_from_child(f.lock_path) == 0);
}

BOOST_AUTO_TEST_CASE(a_child_holds_then_releases) {
    fixture f;
    named_mutex_lock lock(f.lock_path);
    holding_child child(f.lock_path);
    BOOST_TEST(!lock.try_lock());
    child.release.notify();
    BOOST_TEST(lock.try_lock_for(20s));
    BOOST_TEST(!lock.last_acquire_recovered());
    lock.unlock();
    BOOST_TEST(procreg_test::wait_exit(child.pid) == 0);
}

BOOST_AUTO_TEST_CASE(try_lock_for_times_out_while_held_and_succeeds_once_released) {
    fixture f;
    auto reg = f.sessions();
    holding_child child(f.lock_path);

    const auto start = std::chrono::steady_clock::now();
    BOOST_TEST(!reg.lock_policy().try_lock_for(150ms));
    BOOST_TEST(((std::chrono::steady_clock::now() - start) >= 150ms));  // it waited, it did not give up early
    BOOST_TEST(!reg.lock_policy().try_lock_until(std::chrono::system_clock::now() + 20ms));
    BOOST_TEST(!reg.lock_policy().try_lock_for(-1s));  // a deadline in the past is a try_lock
    BOOST_CHECK_EXCEPTION(reg.transact_for(50ms, [](auto&) {}), procreg::error,
                          [](const procreg::error& e) { return is_error(e, procreg::errc::lock_timeout); });

    child.release.notify();
    BOOST_TEST(reg.lock_policy().try_lock_for(20s));  // woken by the release, long before the deadline
    reg.lock_policy().unlock();
    BOOST_TEST(procreg_test::wait_exit(child.pid) == 0);
    reg.insert(pool_session::make("after", static_cast<std::uint32_t>(::getpid()), "/s", "1"));
    BOOST_TEST(reg.find("after").has_value());
}

BOOST_AUTO_TEST_CASE(threads_exclude_each_other_with_one_or_two_lock_objects) {
    fixture f;
    named_mutex_lock shared(f.lock_path);
    named_mutex_lock second(f.lock_path);
    std::atomic<int> inside{0};
    std::atomic<int> overlaps{0};
    long plain_counter = 0;  // not atomic: only the lock protects it
    const auto work = [&](named_mutex_lock& lock) {
        for (int i = 0; i < 2000; ++i) {
            std::lock_guard<named_mutex_lock> guard(lock);
            if (inside.fetch_add(1) != 0) ++overlaps;
            ++plain_counter;
            if (i % 64 == 0) std::this_thread::yield();
            inside.fetch_sub(1);
        }
    };
    std::thread a(work, std::ref(shared));
    std::thread b(work, std::ref(shared));
    std::thread c(work, std::ref(second));
    a.join();
    b.join();
    c.join();
    BOOST_TEST(overlaps.load() == 0);
    BOOST_TEST(plain_counter == 3 * 2000);

    shared.lock();
    bool other_thread_got_it = true;
    std::thread([&] { other_thread_got_it = second.try_lock(); }).join();
    BOOST_TEST(!other_thread_got_it);
    std::thread([&] { other_thread_got_it = shared.try_lock_for(20ms); }).join();
    BOOST_TEST(!other_thread_got_it);
    shared.unlock();
}

BOOST_AUTO_TEST_CASE(relocking_from_the_holding_thread_throws_instead_of_deadlocking) {
    fixture f;
    named_mutex_lock lock(f.lock_path);
    named_mutex_lock same_segment(f.lock_path);
    const auto deadlock = [](const procreg::error& e) {
        return is_error(e, procreg::errc::nested_transaction) && e.os_error() == EDEADLK;
    };
    lock.lock();
    BOOST_CHECK_EXCEPTION(lock.lock(), procreg::error, deadlock);
    BOOST_CHECK_EXCEPTION((void)lock.try_lock(), procreg::error, deadlock);
    BOOST_CHECK_EXCEPTION((void)same_segment.try_lock_for(10ms), procreg::error, deadlock);
    lock.unlock();
    BOOST_TEST(same_segment.try_lock());
    same_segment.unlock();

    // The same through a registry: a transaction nested in a transaction.
    auto reg = f.sessions();
    BOOST_CHECK_EXCEPTION(reg.transact([&](auto&) { reg.transact([](auto&) {}); }), procreg::error, deadlock);
    BOOST_TEST(probe_from_child(f.lock_path) == 0);  // the outer transaction released it
}

// The acceptance test: SIGKILL the holder mid-transaction; the parent
// acquires within 5 s, the data is as last saved, and the lock works as before.
BOOST_AUTO_TEST_CASE(sigkilled_holder_is_recovered_and_the_data_is_intact) {
    fixture f;
    auto reg = f.sessions();
    const auto me = static_cast<std::uint32_t>(::getpid());
    const auto a = pool_session::make("a", me, "/run/a.sock", "0.30.0");
    const auto b = pool_session::make("b", me, "/run/b.sock", "0.30.0");
    reg.insert(a);
    reg.insert(b);

    procreg_test::signal_pipe held;
    const pid_t child = procreg_test::spawn([&] {
        auto mine = f.sessions();
        mine.transact([&](session_registry::transaction_type& tx) {
            tx.insert(pool_session::make("c", me, "/run/c.sock", "0.30.0"));
            tx.erase("a");
            held.notify();
            for (;;) ::pause();  // killed here: holding the lock, nothing saved
        });
        return 3;
    });
    BOOST_TEST_REQUIRE(held.wait(20s));
    BOOST_TEST(!reg.lock_policy().try_lock());
    ::kill(child, SIGKILL);
    BOOST_TEST(procreg_test::wait_exit(child) == 128 + SIGKILL);

    const std::uint64_t before = reg.lock_policy().recoveries();
    const auto start = std::chrono::steady_clock::now();
    auto rows = reg.transact_for(5s, [&](session_registry::transaction_type& tx) {
        BOOST_TEST(reg.lock_policy().last_acquire_recovered());
        return tx.records();
    });
    BOOST_TEST(((std::chrono::steady_clock::now() - start) < 5s));
    BOOST_TEST(reg.lock_policy().recoveries() == before + 1);
    BOOST_TEST_REQUIRE(rows.size() == 2u);
    BOOST_TEST((rows[0] == a));
    BOOST_TEST((rows[1] == b));

    // Consistent again: plain acquisitions, by this process and by others.
    reg.insert(pool_session::make("c", me, "/run/c.sock", "0.30.0"));
    BOOST_TEST(!reg.lock_policy().last_acquire_recovered());
    BOOST_TEST(reg.lock_policy().recoveries() == before + 1);
    BOOST_TEST(probe_from_child(f.lock_path) == 0);
    BOOST_TEST(reg.list().size() == 3u);
}

BOOST_AUTO_TEST_CASE(a_raw_holder_killed_is_recovered_by_a_waiting_process) {
    fixture f;
    holding_child holder(f.lock_path);
    // A second child is already blocked in lock() when the holder dies.
    procreg_test::signal_pipe waiting;
    const pid_t waiter = procreg_test::spawn([&] {
        named_mutex_lock lock(f.lock_path);
        waiting.notify();
        if (!lock.try_lock_for(20s)) return 2;  // a bounded lock(): a stuck mutex fails, not hangs
        const bool recovered = lock.last_acquire_recovered();
        lock.unlock();
        return recovered ? 0 : 1;
    });
    BOOST_TEST_REQUIRE(waiting.wait(20s));
    std::this_thread::sleep_for(50ms);  // let it block (it passes either way: EOWNERDEAD goes to the next locker)
    ::kill(holder.pid, SIGKILL);
    BOOST_TEST(procreg_test::wait_exit(holder.pid) == 128 + SIGKILL);
    BOOST_TEST(procreg_test::wait_exit(waiter) == 0);
    BOOST_TEST(probe_from_child(f.lock_path) == 0);
}

// Kill a writer at arbitrary points of a stream of transactions: whatever
// the moment, the registry is never stuck and always parses.
BOOST_AUTO_TEST_CASE(killing_a_busy_writer_at_any_moment_never_leaves_the_registry_stuck) {
    fixture f;
    auto reg = f.counters();
    reg.insert(counter_record{"c", static_cast<std::uint32_t>(::getpid()), 0});
    for (int round = 0; round < 8; ++round) {
        procreg_test::signal_pipe started;
        const pid_t child = procreg_test::spawn([&] {
            auto mine = f.counters();
            for (int i = 0;; ++i) {
                mine.transact([](counter_registry::transaction_type& tx) {
                    tx.modify("c", [](counter_record& r) { ++r.count; });
                });
                if (i == 3) started.notify();
            }
            return 0;
        });
        BOOST_TEST_REQUIRE(started.wait(20s));
        std::this_thread::sleep_for(std::chrono::milliseconds(3 * round));
        ::kill(child, SIGKILL);
        BOOST_TEST(procreg_test::wait_exit(child) == 128 + SIGKILL);
        std::uint64_t seen = 0;
        reg.transact_for(5s, [&](counter_registry::transaction_type& tx) {
            const auto* rec = tx.find("c");
            BOOST_TEST_REQUIRE(rec != nullptr);
            seen = rec->count;
        });
        BOOST_TEST(seen >= 4u);
    }
}

BOOST_AUTO_TEST_CASE(concurrent_increments_by_several_processes_are_exact) {
    fixture f;
    auto reg = f.counters();
    reg.insert(counter_record{"c", static_cast<std::uint32_t>(::getpid()), 0});
    constexpr int processes = 4;
    constexpr int iterations = 60;
    std::vector<pid_t> children;
    for (int p = 0; p < processes; ++p) {
        children.push_back(procreg_test::spawn([&] {
            auto mine = f.counters();
            for (int i = 0; i < iterations; ++i) {
                mine.transact([](counter_registry::transaction_type& tx) {
                    tx.modify("c", [](counter_record& r) { ++r.count; });
                });
            }
            return 0;
        }));
    }
    for (const pid_t child : children) BOOST_TEST(procreg_test::wait_exit(child) == 0);
    const auto rec = reg.find("c");
    BOOST_TEST_REQUIRE(rec.has_value());
    BOOST_TEST(rec->count == static_cast<std::uint64_t>(processes * iterations));
}

BOOST_AUTO_TEST_CASE(a_lock_held_by_the_parent_is_not_the_forked_childs) {
    fixture f;
    named_mutex_lock lock(f.lock_path);
    lock.lock();
    const pid_t child = procreg_test::spawn([&] {
        if (lock.try_lock()) return 1;  // the inherited object does not own it
        lock.unlock();                  // ignored: not the owner
        named_mutex_lock fresh(f.lock_path);
        if (fresh.try_lock()) return 2;  // still held by the parent
        return 0;
    });
    BOOST_TEST(procreg_test::wait_exit(child) == 0);
    BOOST_TEST(probe_from_child(f.lock_path) == 1);
    lock.unlock();
    BOOST_TEST(probe_from_child(f.lock_path) == 0);
}

BOOST_AUTO_TEST_CASE(destroying_a_held_lock_releases_it) {
    fixture f;
    {
        named_mutex_lock lock(f.lock_path);
        lock.lock();
    }
    BOOST_TEST(probe_from_child(f.lock_path) == 0);
}

BOOST_AUTO_TEST_CASE(a_creator_that_died_while_initialising_is_replaced) {
    fixture f;
    {
        // Died after claiming the init word, before marking it ready.
        bip::shared_memory_object shm(bip::create_only, f.segment.c_str(), bip::read_write, bip::permissions(0600));
        shm.truncate(sizeof(procreg::lock::named_mutex_detail::shared_block));
        bip::mapped_region region(shm, bip::read_write);
        auto* block = static_cast<procreg::lock::named_mutex_detail::shared_block*>(region.get_address());
        block->init_state = static_cast<std::uint32_t>(procreg_test::dead_pid());
    }
    named_mutex_lock lock(f.lock_path);
    BOOST_TEST(lock.try_lock());
    BOOST_TEST(probe_from_child(f.lock_path) == 1);
    lock.unlock();
    BOOST_TEST(probe_from_child(f.lock_path) == 0);
}

BOOST_AUTO_TEST_CASE(a_creator_that_died_before_sizing_the_segment_is_harmless) {
    fixture f;
    { bip::shared_memory_object shm(bip::create_only, f.segment.c_str(), bip::read_write, bip::permissions(0600)); }
    named_mutex_lock lock(f.lock_path);
    BOOST_TEST(lock.try_lock());
    lock.unlock();
    BOOST_TEST(probe_from_child(f.lock_path) == 0);
}

BOOST_AUTO_TEST_CASE(concurrent_first_users_initialise_once) {
    for (int round = 0; round < 5; ++round) {
        fixture f;
        procreg_test::signal_pipe go;
        std::vector<pid_t> children;
        for (int p = 0; p < 4; ++p) {
            children.push_back(procreg_test::spawn([&] {
                if (!go.wait(20s)) return 2;
                go.notify();  // pass the start signal on
                named_mutex_lock lock(f.lock_path);
                for (int i = 0; i < 20; ++i) {
                    lock.lock();
                    lock.unlock();
                }
                return 0;
            }));
        }
        go.notify();
        for (const pid_t child : children) BOOST_TEST(procreg_test::wait_exit(child) == 0);
        named_mutex_lock lock(f.lock_path);
        BOOST_TEST(lock.recoveries() == 0u);
    }
}

BOOST_AUTO_TEST_CASE(initialisation_stuck_in_a_live_process_fails_after_a_bounded_wait) {
    fixture f;
    {
        bip::shared_memory_object shm(bip::create_only, f.segment.c_str(), bip::read_write, bip::permissions(0600));
        shm.truncate(sizeof(procreg::lock::named_mutex_detail::shared_block));
        bip::mapped_region region(shm, bip::read_write);
        static_cast<procreg::lock::named_mutex_detail::shared_block*>(region.get_address())->init_state =
            static_cast<std::uint32_t>(::getppid());  // alive, and never going to finish
    }
    const auto start = std::chrono::steady_clock::now();
    BOOST_CHECK_EXCEPTION(named_mutex_lock{f.lock_path}, procreg::error, [&](const procreg::error& e) {
        return is_error(e, procreg::errc::io_failure) &&
               std::string(e.what()).find(f.segment) != std::string::npos;
    });
    BOOST_TEST(((std::chrono::steady_clock::now() - start) < 30s));
}

BOOST_AUTO_TEST_CASE(a_segment_of_another_layout_is_refused_untouched) {
    fixture f;
    {
        bip::shared_memory_object shm(bip::create_only, f.segment.c_str(), bip::read_write, bip::permissions(0600));
        shm.truncate(sizeof(procreg::lock::named_mutex_detail::shared_block));
        bip::mapped_region region(shm, bip::read_write);
        auto* block = static_cast<procreg::lock::named_mutex_detail::shared_block*>(region.get_address());
        block->layout = 42;
        block->init_state = procreg::lock::named_mutex_detail::state_ready;
    }
    BOOST_CHECK_EXCEPTION(named_mutex_lock{f.lock_path}, procreg::error, [](const procreg::error& e) {
        return is_error(e, procreg::errc::unsupported_file);
    });
    BOOST_TEST(named_mutex_lock::remove(f.lock_path));
    named_mutex_lock lock(f.lock_path);  // recreated afresh
    BOOST_TEST(lock.try_lock());
    lock.unlock();
}

BOOST_AUTO_TEST_CASE(a_segment_open_to_others_is_refused) {
    fixture f;
    {
        bip::shared_memory_object shm(bip::create_only, f.segment.c_str(), bip::read_write, bip::permissions(0644));
    }
    BOOST_CHECK_EXCEPTION(named_mutex_lock{f.lock_path}, procreg::error, [&](const procreg::error& e) {
        return is_error(e, procreg::errc::unsafe_path) && e.path() == shm_file(f.segment);
    });
}

// Two users' programs naming the same registry path derive the same name.
// The segment is 0600 and owner-checked, so the second user gets a clear
// error instead of silently not being excluded (or excluded by a squatter).
BOOST_AUTO_TEST_CASE(another_users_segment_is_refused_with_a_clear_error) {
    if (::geteuid() != 0) {
        BOOST_TEST_MESSAGE("not root: cannot act as two users here; only the mode check above runs");
        return;
    }
    fixture f;
    constexpr uid_t nobody = 65534;
    // 1. Another user squats the name with a world-writable segment.
    {
        bip::shared_memory_object shm(bip::create_only, f.segment.c_str(), bip::read_write, bip::permissions(0666));
        BOOST_TEST_REQUIRE(::fchown(shm.get_mapping_handle().handle, nobody, nobody) == 0);
    }
    BOOST_CHECK_EXCEPTION(named_mutex_lock{f.lock_path}, procreg::error, [&](const procreg::error& e) {
        const std::string what = e.what();
        return is_error(e, procreg::errc::unsafe_path) && what.find(f.segment) != std::string::npos &&
               what.find("owned by uid 65534") != std::string::npos;
    });
    BOOST_TEST(named_mutex_lock::remove(f.lock_path));

    // 2. This user's segment (0600) is opened by another user's program.
    named_mutex_lock mine(f.lock_path);
    const pid_t child = procreg_test::spawn([&] {
        if (::setgid(nobody) != 0 || ::setuid(nobody) != 0) return 3;
        try {
            named_mutex_lock theirs(named_mutex_lock::explicit_name{f.segment});
            return 1;
        } catch (const procreg::error& e) {
            const bool clear = is_error(e, procreg::errc::unsafe_path) && e.os_error() == EACCES &&
                               std::string(e.what()).find(f.segment) != std::string::npos;
            return clear ? 0 : 2;
        }
    });
    BOOST_TEST(procreg_test::wait_exit(child) == 0);
}

BOOST_AUTO_TEST_CASE(remove_deletes_the_segment_and_a_new_user_recreates_it) {
    fixture f;
    { named_mutex_lock lock(f.lock_path); }
    BOOST_TEST(std::filesystem::exists(shm_file(f.segment)));  // outlives its users
    BOOST_TEST(named_mutex_lock::remove(f.lock_path));
    BOOST_TEST(!std::filesystem::exists(shm_file(f.segment)));
    BOOST_TEST(!named_mutex_lock::remove(f.lock_path));
    named_mutex_lock lock(f.lock_path);
    BOOST_TEST(std::filesystem::exists(shm_file(f.segment)));
}

BOOST_AUTO_TEST_CASE(explicit_names_are_checked) {
    const auto invalid = [](const procreg::error& e) { return is_error(e, procreg::errc::invalid_argument); };
    BOOST_CHECK_EXCEPTION(named_mutex_lock(named_mutex_lock::explicit_name{""}), procreg::error, invalid);
    BOOST_CHECK_EXCEPTION(named_mutex_lock(named_mutex_lock::explicit_name{"a/b"}), procreg::error, invalid);
    BOOST_CHECK_EXCEPTION(named_mutex_lock(named_mutex_lock::explicit_name{std::string(300, 'x')}), procreg::error,
                          invalid);
    const std::string name = "procreg-test-explicit-" + std::to_string(::getpid());
    {
        named_mutex_lock lock(named_mutex_lock::explicit_name{name});
        BOOST_TEST(lock.name() == name);
        BOOST_TEST(lock.lock_path().empty());
        BOOST_TEST(lock.try_lock());
        lock.unlock();
    }
    BOOST_TEST(named_mutex_lock::remove(named_mutex_lock::explicit_name{name}));
}

BOOST_AUTO_TEST_SUITE_END()
