// Regression (review of issue 17's json_table load): a table file is
// untrusted input, and its record keys go into the loaded table's key index
// (detail/json_table/key_index.hpp), an open-addressing table probed
// linearly. With an unkeyed hash an attacker picks keys whose buckets fall
// into one narrow range at no cost; they form one run of filled buckets and
// every insert and lookup walks it, so each load of the file is quadratic
// (200,000 such records took 25 s to load against 0.2 s for random keys).
// The index hashes with a per-process secret key, so the bucket of a key
// cannot be predicted from the key: keys chosen against the unkeyed hash
// spread like any others. Asserted structurally (the longest run of filled
// buckets), never by time.
#define BOOST_TEST_MODULE hash_flooding
#include <boost/test/unit_test.hpp>

#include <procreg/detail/json_table/key_index.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

using procreg::detail::json_table_impl::key_index;

namespace {

// Keys whose unkeyed hash (std::hash folded to 32 bits, what the index used)
// lands in buckets [0, range) of an index of `capacity` buckets: what an
// attacker writes into a table file.
std::vector<std::string> colliding_keys(std::size_t count, std::size_t capacity, std::size_t range) {
    std::vector<std::string> keys;
    for (std::uint64_t i = 0; keys.size() < count; ++i) {
        std::string key = "k" + std::to_string(i);
        const std::size_t h = std::hash<std::string_view>{}(key);
        const auto folded = static_cast<std::uint32_t>(h ^ (h >> 32));
        if ((folded & (capacity - 1)) < range) keys.push_back(std::move(key));
    }
    return keys;
}

std::size_t longest_run_after_build(const std::vector<std::string>& keys) {
    key_index index;
    const auto key_at = [&](std::size_t p) { return std::string_view(keys[p]); };
    BOOST_REQUIRE(index.build(keys.size(), key_at));
    for (std::size_t p = 0; p < keys.size(); ++p) BOOST_REQUIRE_EQUAL(index.find(keys[p], key_at), p);
    return index.longest_run();
}

}  // namespace

BOOST_AUTO_TEST_CASE(keys_chosen_against_an_unkeyed_hash_do_not_cluster) {
    // 2,000 keys: the index has 4,096 buckets (at most half full).
    const std::size_t count = 2000, capacity = 4096;
    const auto hostile = colliding_keys(count, capacity, 8);
    const std::size_t run = longest_run_after_build(hostile);
    BOOST_TEST_MESSAGE("longest run of filled buckets: " << run);
    // Random keys in a half-full table of 4,096 buckets give runs of a few
    // dozen at most; the hostile keys, unkeyed, give one run of all 2,000.
    BOOST_TEST(run < 200u);
}

BOOST_AUTO_TEST_CASE(an_index_still_finds_every_key_and_refuses_a_duplicate) {
    std::vector<std::string> keys;
    for (int i = 0; i < 5000; ++i) keys.push_back("sid-" + std::to_string(i));
    key_index index;
    const auto key_at = [&](std::size_t p) { return std::string_view(keys[p]); };
    BOOST_REQUIRE(index.build(keys.size(), key_at));
    for (std::size_t p = 0; p < keys.size(); ++p) BOOST_TEST(index.find(keys[p], key_at) == p);
    BOOST_TEST(index.find("absent", key_at) == key_index::npos);
    keys.push_back("sid-17");
    BOOST_TEST(!index.insert(keys.back(), keys.size() - 1, key_at));
    BOOST_TEST(index.erase("sid-17", key_at));
    BOOST_TEST(index.find("sid-17", key_at) == key_index::npos);
}
