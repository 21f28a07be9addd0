#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
// A json_table commit that has published its file must not fail: after the
// rename the change is visible, and docs/errors.md promises that an
// operation that throws has changed nothing visible (so a retry is safe).
// Before the fix, making the kept text into the file's text allocated after
// the rename (adopt_layout's piece targets, and the text's growth past its
// capacity), so an allocation failing there threw bad_alloc from an insert
// whose record was already in the file, and the retry was refused ("key
// exists"). Here the k-th allocation after the rename fails, for each k
// until one commit makes no allocation there: the insert either throws
// with nothing visible, or succeeds.
#define BOOST_TEST_MODULE regression commit after publish
#include <boost/test/unit_test.hpp>

#include <procreg/presets/algocline.hpp>

#include "../support/fault_injection.hpp"
#include "../support/temp_dir.hpp"

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>

namespace {
std::atomic<long> allocations_left{-1};  // -1: never fail; 0: the next one fails
std::atomic<bool> failed_one{false};
}  // namespace

void* operator new(std::size_t n) {
    long left = allocations_left.load();
    while (left >= 0 && !allocations_left.compare_exchange_weak(left, left - 1)) {
    }
    if (left == 0) {
        failed_one = true;
        throw std::bad_alloc();
    }
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {
long fail_after_rename = 0;  // which allocation after the rename fails (0: the first)
int arm_at_rename(procreg::detail::sys::call c, void*) {
    if (c == procreg::detail::sys::call::rename) allocations_left = fail_after_rename;
    return 0;
}
procreg::algocline::pool_session entry(const std::string& sid) {
    return procreg::algocline::pool_session{sid, static_cast<std::uint32_t>(::getpid()), "/run/x.sock", "1",
                                            "2026-01-01T00:00:00Z"};
}
}  // namespace

BOOST_AUTO_TEST_CASE(a_commit_that_throws_after_the_rename_has_not_happened) {
    bool every_allocation_tried = false;
    for (long k = 0; k < 64; ++k) {
        procreg_test::temp_dir dir;
        auto opts = procreg::algocline::options(dir.path() / "registry.json");
        opts.durable = false;
        auto reg = procreg::algocline::open(opts);
        for (int i = 0; i < 50; ++i) reg.insert(entry("a" + std::to_string(i)));  // a kept table, near its capacity
        fail_after_rename = k;
        failed_one = false;
        bool threw = false;
        {
            procreg_test::faults::hook_guard guard(&arm_at_rename, nullptr);
            try {
                reg.insert(entry("b"));
            } catch (const std::bad_alloc&) {
                threw = true;
            }
        }
        allocations_left = -1;
        auto fresh = procreg::algocline::open(opts);
        BOOST_TEST(threw == !fresh.find("b").has_value(), "allocation " << k << " after the rename: threw " << threw);
        BOOST_TEST(reg.list().size() == fresh.list().size(), "allocation " << k);
        if (!failed_one) {  // no allocation left to fail after the rename
            every_allocation_tried = true;
            break;
        }
    }
    BOOST_TEST(every_allocation_tried);
}
