// The flock lock policy against docs/engineering.md §1: it belongs to the open
// file description, so closing another descriptor of the file keeps it;
// threads exclude each other; renaming the data file does not move it; it is
// not inherited across exec; blocking, try and timed acquisition.
#define BOOST_TEST_MODULE flock_lock
#include <boost/test/unit_test.hpp>

#include <procreg/lock/flock_lock.hpp>
#include <procreg/presets/algocline.hpp>

#include "../support/lock_probe.hpp"
#include "../support/process.hpp"
#include "../support/temp_dir.hpp"

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>

using procreg::lock::flock_lock;
using procreg_test::temp_dir;
using namespace std::chrono_literals;

namespace {

// 0 when the lock was free for another process, 1 when it was held.
int probe_from_child(const std::filesystem::path& lock_path) {
    return procreg_test::probe_lock_in_child<flock_lock>(lock_path);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(flock_lock_policy)

BOOST_AUTO_TEST_CASE(excludes_another_process) {
    temp_dir dir;
    flock_lock lock(dir / "r.lock");
    lock.lock();
    BOOST_TEST(probe_from_child(dir / "r.lock") == 1);
    lock.unlock();
    BOOST_TEST(probe_from_child(dir / "r.lock") == 0);
}

// An fcntl lock would be dropped by this close; flock is not.
BOOST_AUTO_TEST_CASE(closing_another_descriptor_keeps_the_lock) {
    temp_dir dir;
    flock_lock lock(dir / "r.lock");
    lock.lock();
    const int other = ::open((dir / "r.lock").c_str(), O_RDONLY | O_CLOEXEC);
    BOOST_TEST_REQUIRE(other >= 0);
    ::close(other);
    BOOST_TEST(probe_from_child(dir / "r.lock") == 1);
    lock.unlock();
}

BOOST_AUTO_TEST_CASE(threads_exclude_each_other_with_one_or_two_lock_objects) {
    temp_dir dir;
    flock_lock shared(dir / "r.lock");
    flock_lock second(dir / "r.lock");
    std::atomic<int> inside{0};
    std::atomic<int> overlaps{0};
    const auto work = [&](flock_lock& lock) {
        for (int i = 0; i < 200; ++i) {
            std::lock_guard<flock_lock> guard(lock);
            if (inside.fetch_add(1) != 0) ++overlaps;
            std::this_thread::yield();
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
}

// The lock lives on the dedicated lock file, so replacing the data file by
// rename (as every save does) cannot move it to a dead inode.
BOOST_AUTO_TEST_CASE(renaming_the_data_file_while_locked_keeps_others_out) {
    temp_dir dir;
    auto reg = procreg::algocline::open(dir / "registry.json");
    reg.insert(procreg::algocline::pool_session::make("a", static_cast<std::uint32_t>(::getpid()), "/s", "1"));
    reg.transact([&](auto&) {
        std::filesystem::rename(dir / "registry.json", dir / "moved.json");
        BOOST_TEST(probe_from_child(dir / "registry.lock") == 1);
    });
    BOOST_TEST(probe_from_child(dir / "registry.lock") == 0);
}

// The descriptor is O_CLOEXEC: a program exec'd by the holder does not keep
// the lock after the holder releases it.
BOOST_AUTO_TEST_CASE(an_execed_child_does_not_inherit_the_lock) {
    temp_dir dir;
    flock_lock lock(dir / "r.lock");
    lock.lock();
    std::fflush(nullptr);
    const pid_t sleeper = ::fork();
    if (sleeper == 0) {
        ::execl("/bin/sleep", "sleep", "5", static_cast<char*>(nullptr));
        ::_exit(127);
    }
    // Let exec happen (bounded: its command name becomes "sleep").
    const auto comm = "/proc/" + std::to_string(sleeper) + "/comm";
    for (int i = 0; i < 500 && procreg_test::read_text(comm) != "sleep\n"; ++i) std::this_thread::sleep_for(10ms);
    BOOST_TEST_REQUIRE(procreg_test::read_text(comm) == "sleep\n");
    // The release alone cannot show it (LOCK_UN frees the description for
    // every process sharing it); the exec'd program's descriptors can.
    const auto lock_file = std::filesystem::canonical(dir / "r.lock");
    for (const auto& fd : std::filesystem::directory_iterator("/proc/" + std::to_string(sleeper) + "/fd")) {
        std::error_code ec;
        BOOST_TEST(std::filesystem::read_symlink(fd.path(), ec) != lock_file, fd.path());
    }
    lock.unlock();
    BOOST_TEST(probe_from_child(dir / "r.lock") == 0);
    ::kill(sleeper, SIGKILL);
    procreg_test::wait_exit(sleeper);
}

BOOST_AUTO_TEST_CASE(try_and_timed_acquisition) {
    temp_dir dir;
    procreg_test::signal_pipe holding;
    procreg_test::signal_pipe release;
    const pid_t holder = procreg_test::spawn([&] {
        flock_lock lock(dir / "r.lock");
        lock.lock();
        holding.notify();
        release.wait(10s);
        lock.unlock();
        return 0;
    });
    BOOST_TEST_REQUIRE(holding.wait());
    flock_lock lock(dir / "r.lock");
    BOOST_TEST(!lock.try_lock());
    BOOST_TEST(!lock.try_lock_for(50ms));
    release.notify();
    BOOST_TEST(lock.try_lock_for(5s));
    lock.unlock();
    BOOST_TEST(procreg_test::wait_exit(holder) == 0);
}

BOOST_AUTO_TEST_CASE(blocking_lock_waits_for_a_killed_holder) {
    temp_dir dir;
    procreg_test::signal_pipe holding;
    const pid_t holder = procreg_test::spawn([&] {
        flock_lock lock(dir / "r.lock");
        lock.lock();
        holding.notify();
        for (;;) ::pause();
        return 0;
    });
    BOOST_TEST_REQUIRE(holding.wait());
    ::kill(holder, SIGKILL);
    procreg_test::wait_exit(holder);
    flock_lock lock(dir / "r.lock");
    BOOST_TEST(lock.try_lock_for(5s));
    lock.unlock();
}

BOOST_AUTO_TEST_CASE(lock_file_is_0600_and_never_replaced) {
    temp_dir dir;
    flock_lock lock(dir / "r.lock");
    lock.lock();
    lock.unlock();
    struct ::stat first {};
    BOOST_TEST_REQUIRE(::stat((dir / "r.lock").c_str(), &first) == 0);
    BOOST_TEST((first.st_mode & 0777u) == 0600u);
    for (int i = 0; i < 3; ++i) {
        lock.lock();
        lock.unlock();
    }
    struct ::stat later {};
    BOOST_TEST_REQUIRE(::stat((dir / "r.lock").c_str(), &later) == 0);
    BOOST_TEST(first.st_ino == later.st_ino);
}

BOOST_AUTO_TEST_CASE(a_fifo_at_the_lock_path_is_refused) {
    temp_dir dir;
    BOOST_TEST_REQUIRE(::mkfifo((dir / "r.lock").c_str(), 0600) == 0);
    flock_lock lock(dir / "r.lock");
    try {
        lock.lock();
        lock.unlock();
        BOOST_FAIL("expected unsafe_path");
    } catch (const procreg::error& e) {
        BOOST_TEST(e.code() == procreg::errc::unsafe_path);
    }
}

// A child forked during a transaction shares the lock's open file
// description; releasing must still free the lock for everyone (LOCK_UN),
// not wait for that child to exit.
BOOST_AUTO_TEST_CASE(a_child_forked_while_locked_does_not_keep_the_lock) {
    temp_dir dir;
    flock_lock lock(dir / "r.lock");
    lock.lock();
    procreg_test::signal_pipe forked;
    const pid_t child = procreg_test::spawn([&] {
        forked.notify();
        for (;;) ::pause();
        return 0;
    });
    BOOST_TEST_REQUIRE(forked.wait());
    lock.unlock();
    BOOST_TEST(probe_from_child(dir / "r.lock") == 0);
    ::kill(child, SIGKILL);
    procreg_test::wait_exit(child);
}

// The descriptor is kept open between acquisitions; a forked child must not
// lock the description it inherited (it would "hold" the lock together with
// its parent) but open its own.
BOOST_AUTO_TEST_CASE(a_forked_child_locks_its_own_description_not_the_inherited_one) {
    temp_dir dir;
    flock_lock lock(dir / "r.lock");
    lock.lock();  // opens the descriptor the child will inherit
    lock.unlock();
    procreg_test::signal_pipe parent_holds;
    const pid_t child = procreg_test::spawn([&] {
        if (!parent_holds.wait()) return 2;
        if (!lock.try_lock()) return 1;  // held by the parent: right
        lock.unlock();
        return 0;
    });
    lock.lock();
    parent_holds.notify();
    BOOST_TEST(procreg_test::wait_exit(child) == 1);
    lock.unlock();
}

// Kept open is not stale: when the lock file is removed (a tmp cleaner, an
// operator) or replaced between transactions, the next acquisition locks the
// file the path names now, so it excludes a process that opened that file.
BOOST_AUTO_TEST_CASE(a_removed_or_replaced_lock_file_is_locked_anew) {
    for (const bool replace : {false, true}) {
        BOOST_TEST_CONTEXT((replace ? "replaced" : "removed")) {
            temp_dir dir;
            const auto path = dir / "r.lock";
            flock_lock lock(path);
            lock.lock();
            lock.unlock();
            struct ::stat before {};
            BOOST_TEST_REQUIRE(::stat(path.c_str(), &before) == 0);
            if (replace) {
                procreg_test::write_text(dir / "other", "");
                BOOST_TEST_REQUIRE(::rename((dir / "other").c_str(), path.c_str()) == 0);
            } else {
                BOOST_TEST_REQUIRE(::unlink(path.c_str()) == 0);
            }
            procreg_test::signal_pipe holding;
            procreg_test::signal_pipe release;
            const pid_t child = procreg_test::spawn([&] {
                flock_lock other(path);
                other.lock();
                holding.notify();
                if (!release.wait()) return 2;
                other.unlock();
                return 0;
            });
            BOOST_TEST_REQUIRE(holding.wait());
            BOOST_TEST(!lock.try_lock());  // the new file is held
            release.notify();
            BOOST_TEST(procreg_test::wait_exit(child) == 0);
            BOOST_TEST_REQUIRE(lock.try_lock_for(5s));
            BOOST_TEST(probe_from_child(path) == 1);
            lock.unlock();
            struct ::stat after {};
            BOOST_TEST_REQUIRE(::stat(path.c_str(), &after) == 0);
            BOOST_TEST(after.st_ino != before.st_ino);
        }
    }
}

// Re-entering from the holding thread is an error, not a hang.
BOOST_AUTO_TEST_CASE(a_nested_transaction_fails_instead_of_hanging) {
    temp_dir dir;
    auto reg = procreg::algocline::open(dir / "registry.json");
    try {
        reg.transact([&](auto&) { reg.list(); });
        BOOST_FAIL("expected EDEADLK");
    } catch (const procreg::error& e) {
        BOOST_TEST(e.code() == procreg::errc::nested_transaction);
        BOOST_TEST(e.os_error() == EDEADLK);
    }
    BOOST_TEST(reg.list().empty());  // and the lock was released
}

// The lock path is fixed when the registry is opened, like its directory:
// a chdir afterwards must not split the lock from the data.
BOOST_AUTO_TEST_CASE(a_relative_lock_path_survives_chdir) {
    temp_dir dir;
    const auto cwd = std::filesystem::current_path();
    std::filesystem::current_path(dir.path());
    flock_lock lock("relative.lock");
    std::filesystem::create_directory(dir / "elsewhere");
    std::filesystem::current_path(dir / "elsewhere");
    lock.lock();
    std::filesystem::current_path(cwd);
    BOOST_TEST(probe_from_child(dir / "relative.lock") == 1);
    BOOST_TEST(!std::filesystem::exists(dir / "elsewhere" / "relative.lock"));
    lock.unlock();
}

BOOST_AUTO_TEST_SUITE_END()
