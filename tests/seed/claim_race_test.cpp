// The stale-takeover race, with real processes (issue: "no race on takeover").
//
// Each round starts from a stale claim — the previous round's winner, now
// dead — and forks several children that all block on one pipe until the
// parent closes it, then open the claim and try to take the stale claim at
// the same moment. Each child reports whether it won and then stays alive
// until every child has reported (a winner that exited early would make its
// own claim stale again and let a latecomer win legitimately). Exactly one
// child must win each round, every loser must be refused with the winner's
// pid, and the claim file must name the winner.
//
// The trusty seed admits that two starters can both reclaim a stale lock;
// INSOMNIA's lock has the same window. Here neither may.
#define BOOST_TEST_MODULE claim_race
#include <boost/test/unit_test.hpp>

#include <procreg/presets/insomnia.hpp>
#include <procreg/presets/trusty.hpp>

#include "../support/claim_helpers.hpp"
#include "../support/policy_matrix.hpp"
#include "../support/process.hpp"
#include "../support/temp_dir.hpp"

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <unistd.h>

namespace fs = std::filesystem;
using procreg_test::temp_dir;

using trusty_registry = procreg_test::under_test<procreg::trusty::daemon_registry>;
using insomnia_registry = procreg_test::under_test<procreg::insomnia::consolidation_registry>;

namespace {

constexpr int rounds = 250;
constexpr int contenders = 4;

// What a child reports through the results pipe: its verdict and, for a
// loser, the pid it was refused with.
struct verdict {
    std::int32_t outcome = 0;  // 'W' won, 'L' refused (in use), 'E' other error
    std::uint64_t refused_by = 0;
};

// A contender's verdict: `take()` (acquire, keeping the claim on disk)
// returns = won; claim_in_use = refused, by its pid; anything else = error.
verdict contend(const std::function<void()>& take) {
    verdict v;
    try {
        take();
        v.outcome = 'W';
    } catch (const procreg::claim_in_use& e) {
        v.outcome = 'L';
        v.refused_by = e.pid().value_or(0);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "contender %d: %s\n", static_cast<int>(::getpid()), e.what());
        v.outcome = 'E';
    }
    return v;
}

struct round_result {
    int winners = 0;
    int losers = 0;
    int errors = 0;
    pid_t winner = -1;
    bool losers_named_winner = true;
};

// One round: each child runs `take()` after the start gate opens and
// reports its verdict; children stay alive until all have reported.
round_result race(const std::function<void()>& take) {
    procreg_test::claim_pipe start;
    procreg_test::claim_pipe results;
    procreg_test::claim_pipe finish;
    std::vector<pid_t> children;
    for (int i = 0; i < contenders; ++i) {
        children.push_back(procreg_test::spawn([&] {
            start.close_write();
            results.close_read();
            finish.close_write();
            start.wait_for_close();
            const verdict v = contend(take);
            if (::write(results.write_end(), &v, sizeof v) != static_cast<ssize_t>(sizeof v)) return 3;
            results.close_write();
            finish.wait_for_close();  // the winner keeps its claim alive until everyone decided
            return v.outcome == 'W' ? 0 : v.outcome == 'L' ? 1 : 2;
        }));
    }
    start.close_read();
    results.close_write();
    finish.close_read();
    start.close_write();  // go

    round_result out;
    std::vector<verdict> verdicts;
    for (int i = 0; i < contenders; ++i) {
        verdict v;
        std::size_t got = 0;
        while (got < sizeof v) {
            const ssize_t n = ::read(results.read_end(), reinterpret_cast<char*>(&v) + got, sizeof v - got);
            if (n <= 0) break;
            got += static_cast<std::size_t>(n);
        }
        if (got != sizeof v) break;  // a child died without reporting: counted through its exit code
        verdicts.push_back(v);
    }
    finish.close_write();  // everyone may exit now
    for (const pid_t child : children) {
        const int code = procreg_test::wait_exit(child);
        if (code == 0) {
            ++out.winners;
            out.winner = child;
        } else if (code == 1) {
            ++out.losers;
        } else {
            ++out.errors;
        }
    }
    for (const auto& v : verdicts) {
        if (v.outcome == 'L' && v.refused_by != static_cast<std::uint64_t>(out.winner)) out.losers_named_winner = false;
    }
    return out;
}

template <class Take, class HolderPid>
void run_rounds(Take&& take, HolderPid&& holder_pid) {
    for (int round = 0; round < rounds; ++round) {
        const round_result r = race(take);
        const std::uint64_t holder = holder_pid();
        const bool ok = r.winners == 1 && r.losers == contenders - 1 && r.errors == 0 && r.losers_named_winner &&
                        holder == static_cast<std::uint64_t>(r.winner);
        BOOST_TEST_REQUIRE(ok, "round " << round << ": exactly one winner, the rest refused by it (winners="
                                        << r.winners << " losers=" << r.losers << " errors=" << r.errors
                                        << " losers_named_winner=" << r.losers_named_winner << " holder=" << holder
                                        << " winner=" << r.winner << ")");
    }
    BOOST_TEST_MESSAGE(rounds << " rounds of " << contenders << " processes: one winner each");
}

}  // namespace

BOOST_AUTO_TEST_SUITE(claim_race)

// trusty: every contender runs acquire_lock on the same daemon.lock, whose
// pid is dead (first a reaped child's, then each round's previous winner's).
BOOST_AUTO_TEST_CASE(trusty_stale_takeover_has_one_winner_per_round) {
    temp_dir dir;
    const fs::path path = procreg::trusty::lock_file_path_for_dir(dir.path());
    procreg_test::write_text(path, std::to_string(procreg_test::dead_pid()) + "\n");
    run_rounds(
        [&] {
            auto claim = procreg::trusty::open<trusty_registry>(path);
            auto guard = claim.acquire(procreg::trusty::daemon_lock_record{static_cast<std::uint32_t>(::getpid())});
            guard.dismiss();  // leave the lock behind: stale for the next round once this child exits
        },
        [&]() -> std::uint64_t { return procreg::trusty::read_lock_pid(path).value_or(0); });
}

// INSOMNIA: every contender runs StagingLock::acquire for its own pid on the
// same staging directory, whose lock holds a dead pod.
BOOST_AUTO_TEST_CASE(insomnia_stale_takeover_has_one_winner_per_round) {
    temp_dir root;
    const fs::path staging = procreg::insomnia::staging_dir(root.path());
    fs::create_directories(staging);
    procreg_test::write_text(procreg::insomnia::lock_file_path(staging),
                             "{\"pid\": " + std::to_string(procreg_test::dead_pid()) +
                                 ", \"pod_name\": \"ghost\", \"started_at\": \"2026-04-22T10:00:00Z\", "
                                 "\"consumed_ids\": []}");
    run_rounds(
        [&] {
            const auto me = static_cast<std::uint32_t>(::getpid());
            // The handle keeps the lock when destroyed.
            (void)procreg::insomnia::basic_staging_lock<insomnia_registry>::acquire(staging, me,
                                                                                  "pod-" + std::to_string(me), {});
        },
        [&]() -> std::uint64_t {
            auto holder = procreg::insomnia::open<insomnia_registry>(staging).holder();
            return holder ? holder->pid : 0;
        });
}

BOOST_AUTO_TEST_SUITE_END()
