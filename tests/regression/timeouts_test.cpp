// Regression of issue 14, item 7: a huge timeout waits. transact_for with
// hours::max() or nanoseconds::max() while another process holds the lock
// must wait for it (saturating the deadline), under both lock policies.
#define BOOST_TEST_MODULE procreg regression - timeouts saturate
#include <boost/test/unit_test.hpp>

#include <procreg/lock/flock_lock.hpp>
#include <procreg/lock/named_mutex_lock.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/json_table.hpp>

#include "support/counter_registries.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <chrono>
#include <thread>

#include <unistd.h>

namespace fs = std::filesystem;
using procreg_test::counter_record;

namespace {

// Another process holds the lock for about a second, inserting `held`
// before it lets go; then `wait(registry)` runs here.
template <class Lock, class Wait>
void while_another_process_holds_the_lock(Wait&& wait) {
    procreg_test::temp_dir dir;
    procreg_test::signal_pipe holding;
    const pid_t holder = procreg_test::spawn([&] {
        auto reg = procreg_test::open_counter_table<Lock>(dir.path(), "counters");
        reg.transact([&](auto& tx) {
            holding.notify();
            std::this_thread::sleep_for(std::chrono::seconds(1));
            tx.insert(counter_record{"held", static_cast<std::uint32_t>(::getpid()), 1});
        });
        return 0;
    });
    BOOST_TEST_REQUIRE(holding.wait());
    auto reg = procreg_test::open_counter_table<Lock>(dir.path(), "counters");
    try {
        const bool saw_holders_record = wait(reg);
        BOOST_TEST(saw_holders_record, "acquired before the holder let go");
    } catch (const procreg::error& e) {
        BOOST_ERROR("a huge timeout did not wait: " << e.what());
    }
    BOOST_TEST(procreg_test::wait_exit(holder) == 0);
}

using locks = std::tuple<procreg::lock::flock_lock, procreg::lock::named_mutex_lock>;

}  // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(hours_max_waits_for_the_holder, Lock, locks) {
    while_another_process_holds_the_lock<Lock>([](auto& reg) {
        return reg.transact_for(std::chrono::hours::max(), [](auto& tx) { return tx.contains("held"); });
    });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(nanoseconds_max_waits_for_the_holder, Lock, locks) {
    while_another_process_holds_the_lock<Lock>([](auto& reg) {
        return reg.transact_for(std::chrono::nanoseconds::max(), [](auto& tx) { return tx.contains("held"); });
    });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(seconds_max_waits_for_the_holder, Lock, locks) {
    while_another_process_holds_the_lock<Lock>([](auto& reg) {
        return reg.transact_for(std::chrono::seconds::max(), [](auto& tx) { return tx.contains("held"); });
    });
}
