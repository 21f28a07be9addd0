// Regression (issue 14, item 8): no name that opens and reads can be
// impossible to write. Every write makes a temp file ".<name>.tmp-<pid>-
// <counter>-<noise>" beside its target, which must fit NAME_MAX; so a
// storage refuses at open (errc::invalid_key, saying the limit) a file name
// longer than detail::max_storable_name_length(), and a name of exactly that
// length opens, writes and reads. Record keys of record_files fit with
// their ".json" by construction.
#define BOOST_TEST_MODULE names
#include <boost/test/unit_test.hpp>

#include <procreg/detail/file_io.hpp>
#include <procreg/detail/temp_files.hpp>
#include <procreg/detail/record_key.hpp>
#include <procreg/presets/agentmux.hpp>
#include <procreg/presets/algocline.hpp>
#include <procreg/presets/trusty.hpp>

#include "../support/temp_dir.hpp"

#include <climits>
#include <filesystem>
#include <functional>
#include <string>

#include <unistd.h>

namespace fs = std::filesystem;
using procreg::detail::max_storable_name_length;
using procreg_test::temp_dir;

namespace {

// The code and text of the procreg::error `f` throws (nothing when it does not).
std::optional<procreg::errc> code_of(const std::function<void()>& f, std::string& what) {
    try {
        f();
    } catch (const procreg::error& e) {
        what = e.what();
        return static_cast<procreg::errc>(e.code().value());
    }
    return std::nullopt;
}

const std::uint32_t self = static_cast<std::uint32_t>(::getpid());

}  // namespace

BOOST_AUTO_TEST_CASE(the_longest_name_leaves_room_for_its_temp_name) {
    // ".<name>.tmp-" + pid (10 digits at most) + "-" + counter (20) + "-" + noise (10).
    BOOST_TEST(max_storable_name_length() + 1 + 5 + 10 + 1 + 20 + 1 + 10 <= std::size_t{NAME_MAX});
    BOOST_TEST(procreg::detail::max_record_key_length <= max_storable_name_length(5));
}

BOOST_AUTO_TEST_CASE(a_table_name_too_long_for_its_temp_name_is_refused_at_open) {
    temp_dir dir;
    const fs::path table = dir / (std::string(225, 't') + ".json");  // 230 characters
    std::string what;
    const auto code = code_of(
        [&] {
            auto reg = procreg::algocline::open(table);
            (void)reg.list();
            reg.insert(procreg::algocline::pool_session::make("s", self, "/s", "1"));
        },
        what);
    BOOST_TEST_INFO(what);
    BOOST_TEST((code == procreg::errc::invalid_key));
    BOOST_TEST(what.find(std::to_string(max_storable_name_length())) != std::string::npos, what);
}

BOOST_AUTO_TEST_CASE(a_table_name_of_the_longest_length_is_written_and_read) {
    temp_dir dir;
    const fs::path table = dir / (std::string(max_storable_name_length() - 5, 't') + ".json");
    auto reg = procreg::algocline::open(table);
    reg.insert(procreg::algocline::pool_session::make("s", self, "/s", "1"));
    auto again = procreg::algocline::open(table);
    BOOST_TEST(again.list().size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_claim_name_too_long_for_its_temp_name_is_refused_at_open) {
    temp_dir dir;
    const fs::path claim = dir / std::string(240, 'c');
    std::string what;
    const auto code = code_of([&] { (void)procreg::trusty::acquire_lock(claim); }, what);
    BOOST_TEST_INFO(what);
    BOOST_TEST((code == procreg::errc::invalid_key));
    BOOST_TEST(what.find(std::to_string(max_storable_name_length())) != std::string::npos, what);
    BOOST_TEST(!fs::exists(claim));
}

BOOST_AUTO_TEST_CASE(a_claim_name_of_the_longest_length_is_acquired_and_released) {
    temp_dir dir;
    const fs::path claim = dir / std::string(max_storable_name_length(), 'c');
    {
        auto guard = procreg::trusty::acquire_lock(claim);
        BOOST_TEST(guard.held());
        BOOST_TEST((procreg::trusty::read_lock_pid(claim) == std::optional<std::uint32_t>(self)));
    }
    BOOST_TEST(!fs::exists(claim));
}

BOOST_AUTO_TEST_CASE(a_record_key_of_the_longest_length_is_written_moved_and_read) {
    temp_dir dir;
    auto reg = procreg::agentmux::open(dir / "agents");
    const std::string key(procreg::detail::max_record_key_length, 'k');
    reg.insert(procreg::agentmux::agent_record::make(key));
    BOOST_TEST(reg.find(key).has_value());
    BOOST_TEST((reg.retire(key).status == procreg::tombstone_status::moved));
    BOOST_TEST((reg.unretire(key).status == procreg::tombstone_status::moved));
    BOOST_TEST(reg.list_active().records.size() == 1u);
}
