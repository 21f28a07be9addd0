// Regression (issue 14, items 4, 6 and 10): opening a registry fails only
// with a `procreg::error` naming the path — never a
// std::filesystem::filesystem_error — whatever is wrong with the path (a
// component over NAME_MAX, a symlink loop, a relative path once the working
// directory is gone); a claim refuses at open a lock file that would plant
// an empty file where data belongs (its own claim file, or a JSON table);
// and the errno an error reports is the one of the failed call, never one
// that a heap allocation made on the way to the throw left behind.
#define BOOST_TEST_MODULE open_errors
#include <boost/test/unit_test.hpp>

#include <procreg/presets/agentmux.hpp>
#include <procreg/presets/algocline.hpp>
#include <procreg/presets/insomnia.hpp>
#include <procreg/presets/trusty.hpp>

#include "../support/fault_injection.hpp"
#include "../support/process.hpp"
#include "../support/temp_dir.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <new>
#include <string>

#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;
using procreg_test::temp_dir;

// While `clobber_errno` is set, every allocation leaves errno = EDOM, as a
// malloc may (C and POSIX let a successful call change errno). A throw site
// that reads errno after building its message then reports EDOM.
namespace {
bool clobber_errno = false;
}  // namespace

// The replaced operators pair malloc with free on purpose; GCC, seeing
// both after inlining, cannot tell them from a mismatched pair.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

void* operator new(std::size_t size) {
    void* p = std::malloc(size == 0 ? 1 : size);
    if (!p) throw std::bad_alloc();
    if (clobber_errno) errno = EDOM;
    return p;
}
// The matching deletes, so that every allocation and release is malloc and
// free (a sanitizer checks that they pair).
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

// How a call ended: "ok", "procreg::error" (with the error's path and
// code), or the type of anything else that escaped.
struct outcome {
    bool threw_procreg = false;
    bool threw_other = false;
    std::string what;
    fs::path path;
    procreg::errc code{};
};

outcome run(const std::function<void()>& f) {
    outcome out;
    try {
        f();
    } catch (const procreg::error& e) {
        out.threw_procreg = true;
        out.what = e.what();
        out.path = e.path();
        out.code = static_cast<procreg::errc>(e.code().value());
    } catch (const std::exception& e) {
        out.threw_other = true;
        out.what = std::string("not a procreg::error: ") + e.what();
    }
    return out;
}

// `f` fails with a procreg::error whose path is not empty.
void expect_procreg_error(const std::function<void()>& f, const std::string& label) {
    const outcome o = run(f);
    BOOST_TEST_INFO(label << ": " << o.what);
    BOOST_TEST(!o.threw_other);
    BOOST_TEST_INFO(label << ": " << o.what);
    BOOST_TEST(o.threw_procreg);
    BOOST_TEST_INFO(label << ": " << o.what);
    BOOST_TEST(!o.path.empty());
}

// Every preset's open (and first use) on `registry_dir`.
void expect_every_open_fails_cleanly(const fs::path& registry_dir) {
    expect_procreg_error([&] { (void)procreg::algocline::open(registry_dir / "registry.json").list(); }, "algocline");
    expect_procreg_error([&] { (void)procreg::agentmux::open(registry_dir / "agents").list(); }, "agentmux");
    expect_procreg_error([&] { (void)procreg::trusty::acquire_lock(registry_dir / "daemon.lock"); }, "trusty");
    expect_procreg_error([&] { (void)procreg::trusty::read_lock_pid(registry_dir / "daemon.lock"); }, "trusty peek");
    expect_procreg_error([&] { (void)procreg::insomnia::open(registry_dir / "_staging"); }, "insomnia");
}

}  // namespace

BOOST_AUTO_TEST_SUITE(paths_that_cannot_be_opened)

BOOST_AUTO_TEST_CASE(a_directory_component_over_name_max) {
    temp_dir dir;
    expect_every_open_fails_cleanly(dir / std::string(300, 'd'));
}

BOOST_AUTO_TEST_CASE(a_file_name_over_name_max) {
    temp_dir dir;
    expect_procreg_error([&] { (void)procreg::algocline::open(dir / (std::string(300, 'f') + ".json")).list(); },
                         "algocline");
    expect_procreg_error([&] { (void)procreg::trusty::acquire_lock(dir / std::string(300, 'f')); }, "trusty");
}

BOOST_AUTO_TEST_CASE(a_symlink_loop_in_the_path) {
    temp_dir dir;
    fs::create_symlink(dir / "loop_b", dir / "loop_a");
    fs::create_symlink(dir / "loop_a", dir / "loop_b");
    expect_every_open_fails_cleanly(dir / "loop_a" / "sub");
    expect_every_open_fails_cleanly(dir / "loop_a");
}

// chdir into a directory, remove it, then open relative paths: getcwd fails
// (ENOENT), which std::filesystem::absolute reports by throwing.
BOOST_AUTO_TEST_CASE(a_relative_path_after_the_working_directory_was_removed) {
    temp_dir dir;
    const fs::path gone = dir / "gone";
    const pid_t child = procreg_test::spawn([&] {
        fs::create_directory(gone);
        if (::chdir(gone.c_str()) != 0 || ::rmdir(gone.c_str()) != 0) return 71;
        int failures = 0;
        const auto check = [&](const std::function<void()>& f, const char* label) {
            const outcome o = run(f);
            if (o.threw_other || !o.threw_procreg || o.path.empty()) {
                ++failures;
                std::fprintf(stderr, "%s: %s\n", label, o.threw_procreg || o.threw_other ? o.what.c_str() : "no error");
            }
        };
        check([] { (void)procreg::algocline::open("registry.json").list(); }, "algocline::open(\"registry.json\")");
        check([] { (void)procreg::trusty::open("daemon.lock").acquire(procreg::trusty::daemon_lock_record{1}); },
              "trusty::open(\"daemon.lock\")");
        check([] { (void)procreg::agentmux::open("agents").list(); }, "agentmux::open(\"agents\")");
        return failures;
    });
    BOOST_TEST(procreg_test::wait_exit(child) == 0);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(claim_lock_file_placement)

BOOST_AUTO_TEST_CASE(a_claim_whose_lock_file_is_the_claim_file_is_refused_at_open) {
    temp_dir dir;
    for (const fs::path& lock : {dir / "daemon.lock", dir / "." / "daemon.lock"}) {
        auto opts = procreg::trusty::options(dir / "daemon.lock");
        opts.lock_file = lock;
        opts.unparseable = procreg::storage::unparseable_claim::error;
        const outcome o = run([&] { (void)procreg::trusty::open(opts); });
        BOOST_TEST_INFO(lock << ": " << o.what);
        BOOST_TEST((o.threw_procreg && o.code == procreg::errc::unsafe_path));
    }
    // Nothing was created at the claim's name: a later, correct claim works.
    BOOST_TEST(!fs::exists(dir / "daemon.lock"));
    auto guard = procreg::trusty::acquire_lock(dir / "daemon.lock");
    BOOST_TEST(guard.held());
}

BOOST_AUTO_TEST_CASE(a_claim_whose_lock_file_is_another_registrys_table_is_refused_at_open) {
    temp_dir dir;
    auto opts = procreg::trusty::options(dir / "daemon.lock");
    opts.lock_file = dir / "registry.json";  // algocline's table, not yet created
    const outcome o = run([&] {
        auto claim = procreg::trusty::open(opts);
        (void)claim.acquire(procreg::trusty::daemon_lock_record{static_cast<std::uint32_t>(::getpid())});
    });
    BOOST_TEST_INFO(o.what);
    BOOST_TEST((o.threw_procreg && o.code == procreg::errc::unsafe_path));
    BOOST_TEST(!fs::exists(dir / "registry.json"));
    // The other registry is still usable.
    auto pools = procreg::algocline::open(dir / "registry.json");
    BOOST_TEST(pools.list().empty());
    pools.insert(procreg::algocline::pool_session::make("s", 1, "/s", "1"));
    BOOST_TEST(pools.list().size() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(reported_errno)

// Fails the k-th intercepted call (any kind) with ENOTRECOVERABLE, for every
// k, while allocations clobber errno: every procreg::error carrying an errno
// must carry ENOTRECOVERABLE.
BOOST_AUTO_TEST_CASE(an_error_reports_the_errno_of_the_failed_call) {
    namespace faults = procreg_test::faults;
    temp_dir dir;
    const int injected = ENOTRECOVERABLE;
    const std::uint32_t self = static_cast<std::uint32_t>(::getpid());
    const auto scenario = [&](const fs::path& base) {
        {
            auto reg = procreg::agentmux::open(base / "agents");
            reg.insert(procreg::agentmux::agent_record::make("a"));
            (void)reg.upsert(procreg::agentmux::agent_record::make("b"));
            (void)reg.list_active();
            (void)reg.retire("a");
            (void)reg.hard_delete("b");
        }
        {
            auto reg = procreg::algocline::open(base / "pool" / "registry.json");
            reg.insert(procreg::algocline::pool_session::make("s", self, "/s", "1"));
            (void)reg.erase("s");
        }
        {
            auto guard = procreg::trusty::acquire_lock(base / "trusty" / "daemon.lock");
            (void)guard.release();
        }
    };
    int bad = 0;
    for (unsigned long k = 1; k < 5000; ++k) {
        const fs::path base = dir / std::to_string(k);
        faults::plan p;
        p.fail_at = k;
        p.error = injected;
        outcome o;
        int reported = 0;
        {
            faults::armed arm(p);
            clobber_errno = true;
            try {
                scenario(base);
            } catch (const procreg::error& e) {
                reported = e.os_error();
                o.what = e.what();
                o.threw_procreg = true;
            } catch (const std::exception& e) {
                o.what = e.what();
                o.threw_other = true;
            }
            clobber_errno = false;
        }
        if (p.injected == 0) break;  // k is past the last call: every call was failed once
        BOOST_TEST_INFO("call " << k << ": " << o.what);
        BOOST_TEST(!o.threw_other);
        if (reported != 0 && reported != injected) {
            ++bad;
            BOOST_TEST_INFO("call " << k << ": " << o.what);
            BOOST_TEST(reported == injected);
        }
    }
    BOOST_TEST(bad == 0);
}

BOOST_AUTO_TEST_SUITE_END()
