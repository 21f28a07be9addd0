// json_table: every read fault while a kept table is re-read as an edit of
// the kept text (read_as_edit's preads, then patch_stale; the small-file
// path and the chunked one), which json_table_faults does not reach (its
// scenarios open a new registry, so nothing is kept). Each outcome is the
// right record or io_failure, and afterwards the registry that kept the
// table reads what a fresh one reads.
#define BOOST_TEST_MODULE procreg json_table reload faults
#include <boost/test/unit_test.hpp>

#include <procreg/presets/algocline.hpp>

#include "../support/fault_injection.hpp"
#include "../support/temp_dir.hpp"

using namespace procreg_test::faults;

namespace {
procreg::algocline::pool_session entry(const std::string& sid, const std::string& version = "1") {
    auto s = procreg::algocline::pool_session::make(sid, static_cast<std::uint32_t>(::getpid()), "/run/x.sock", version);
    s.created_at = "2026-01-01T00:00:00Z";
    return s;
}
}  // namespace

BOOST_AUTO_TEST_CASE(every_read_fault_in_a_patched_load) {
    for (const std::size_t records : {std::size_t{20}, std::size_t{4000}}) {  // small path, large path
        for (const bool persistent : {false, true}) {
            for (unsigned long k = 1;; ++k) {
                procreg_test::temp_dir dir;
                const auto file = dir.path() / "registry.json";
                auto a = procreg::algocline::open(file);
                a.transact([&](auto& tx) {
                    for (std::size_t i = 0; i < records; ++i) tx.upsert(entry("r" + std::to_string(i)));
                    return 0;
                });
                BOOST_TEST_REQUIRE(a.find("r1").has_value());  // kept
                {
                    auto b = procreg::algocline::open(file);
                    b.upsert(entry("r" + std::to_string(records / 2), "2"));
                }
                plan p;
                p.fail_at = k;
                p.persistent = persistent;
                p.error = EIO;
                p.mask = bit(call::read);
                {
                    armed on(p);
                    try {
                        const auto mid = a.find("r" + std::to_string(records / 2));
                        BOOST_TEST_REQUIRE(mid.has_value());
                        BOOST_TEST(mid->version == "2");
                    } catch (const procreg::error& e) {
                        BOOST_TEST((e.code() == procreg::errc::io_failure), e.what());
                    }
                }
                // afterwards: the whole table as a fresh registry sees it
                auto c = procreg::algocline::open(file);
                BOOST_TEST(a.list().size() == c.list().size());
                BOOST_TEST(a.find("r" + std::to_string(records / 2))->version == "2");
                if (p.injected == 0) {
                    BOOST_TEST_MESSAGE(records << " records, " << (persistent ? "persistent" : "once") << ": " << k - 1
                                               << " read points");
                    // The small table is patched from one pread: a fallback
                    // to the full load would read it again.
                    if (records == 20) BOOST_TEST(k - 1 == 1u);
                    break;
                }
            }
        }
    }
}
