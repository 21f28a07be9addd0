// The yoi preset's registry-form registrations (issue 15, item 2) when the
// save fails: the seed's effect on a refusal (the stale reclaim is saved)
// must not cost the registration its atomicity, and a failure to save the
// reclaim of a refused registration must not hide the refusal (the seed
// ignores that save's errors). Faults come from detail/sys.hpp's seam.
#define BOOST_TEST_MODULE regression_seed_yoi
#include <boost/test/unit_test.hpp>

#include <procreg/presets/yoi.hpp>

#include "support/fault_injection.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <cerrno>
#include <cstdint>
#include <string>

#include <unistd.h>

namespace yoi = procreg::yoi;
using namespace procreg_test::faults;
using yoi::scope_rule;

namespace {

const std::uint32_t live_pid = static_cast<std::uint32_t>(::getpid());

// q (live) holds /src; gone (dead) holds /docs and would be reclaimed.
struct table {
    procreg_test::temp_dir dir;
    std::filesystem::path file = dir / "pods.json";
    yoi::pod_registry reg = yoi::open(file);

    table() {
        reg.transact([](auto& tx) {
            yoi::register_pod(tx, "q", live_pid, "/s/q", {scope_rule::write("/src", true)}, "seg-q");
            tx.insert(yoi::allocation{"gone", static_cast<std::uint32_t>(procreg_test::dead_pid()), "/s/gone",
                                      {scope_rule::write("/docs", true)}, {}, std::nullopt, std::string("seg-gone")});
        });
    }
    std::string bytes() const { return procreg_test::read_text(file); }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(registry_form)

// A registration that passes but cannot be saved leaves the file exactly as
// it was: neither the new pod nor the reclaim.
BOOST_AUTO_TEST_CASE(a_failed_save_of_a_passing_registration_writes_nothing) {
    table t;
    const std::string before = t.bytes();
    plan p = failing_every(bit(call::rename) | bit(call::link), EIO);
    try {
        armed fault(p);
        yoi::register_pod(t.reg, "p", live_pid, "/s/p", {scope_rule::write("/other", true)}, "seg-p");
        BOOST_FAIL("the save was failed, yet the registration reported success");
    } catch (const yoi::scope_error& e) {
        BOOST_FAIL("a passing registration was refused: " << e.what());
    } catch (const procreg::error& e) {
        BOOST_TEST((e.code() == procreg::errc::io_failure), e.what());
    }
    BOOST_TEST(p.injected >= 1u);
    BOOST_TEST(t.bytes() == before);
}

// A refused registration whose reclaim cannot be saved still reports the
// refusal, and the file is as it was (the reclaim happens next time).
BOOST_AUTO_TEST_CASE(a_failed_save_of_the_reclaim_does_not_hide_the_refusal) {
    table t;
    const std::string before = t.bytes();
    plan p = failing_every(bit(call::rename) | bit(call::link), EIO);
    try {
        armed fault(p);
        yoi::register_pod(t.reg, "p", live_pid, "/s/p", {scope_rule::write("/src/core", true)}, "seg-p");
        BOOST_FAIL("expected a refusal");
    } catch (const yoi::scope_error& e) {
        BOOST_TEST((e.reason() == yoi::errc::write_conflict));
        BOOST_TEST(e.competitor() == "q");
    }
    BOOST_TEST(p.injected >= 1u);
    BOOST_TEST(t.bytes() == before);
    // Without the fault, the same refusal saves the reclaim.
    BOOST_CHECK_THROW(
        yoi::register_pod(t.reg, "p", live_pid, "/s/p", {scope_rule::write("/src/core", true)}, "seg-p"),
        yoi::scope_error);
    BOOST_TEST(!t.reg.find("gone").has_value());
    BOOST_TEST(!t.reg.find("p").has_value());
}

BOOST_AUTO_TEST_SUITE_END()
