// The claim mechanism itself (procreg/claim.hpp, procreg/storage/claim_file.hpp),
// apart from the two seeds: the compare-and-swap against writers that do not
// take the lock, the retry it triggers, the strict unparseable policy, the
// formats' refusals, leftovers of crashed commits, a claim kept in a slot
// of an ordinary json_table, and that an older handle's release never removes
// a newer claim (retaken by the same pid, or on a reused inode).
#define BOOST_TEST_MODULE claim
#include <boost/test/unit_test.hpp>

#include <procreg/claim.hpp>
#include <procreg/liveness/callable_liveness.hpp>
#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/liveness/pidfd_liveness.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/claim_file.hpp>
#include <procreg/storage/json_table.hpp>

#include "support/claim_helpers.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <boost/describe/class.hpp>
#include <boost/json.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;
using procreg_test::temp_dir;

namespace claim_test {

struct owner {
    std::string slot;
    std::uint64_t pid = 0;
    std::string name;
};
BOOST_DESCRIBE_STRUCT(owner, (), (slot, pid, name))

struct bare_pid {
    std::uint64_t pid = 0;
    std::optional<std::string> note;
};
BOOST_DESCRIBE_STRUCT(bare_pid, (), (pid, note))

}  // namespace claim_test

namespace procreg {
template <>
struct record_traits<claim_test::owner> {
    static std::string_view key(const claim_test::owner& o) noexcept { return o.slot; }
    static std::uint64_t pid(const claim_test::owner& o) noexcept { return o.pid; }
    static const std::string& name(const claim_test::owner& o) noexcept { return o.name; }
};
template <>
struct record_traits<claim_test::bare_pid> {
    static std::string_view key(const claim_test::bare_pid&) noexcept { return "only"; }
    static std::uint64_t pid(const claim_test::bare_pid& o) noexcept { return o.pid; }
};
}  // namespace procreg

namespace {

using claim_test::bare_pid;
using claim_test::owner;
using json_claim_storage = procreg::storage::claim_file<procreg::storage::json_record_format>;
using text_claim_storage = procreg::storage::claim_file<procreg::storage::pid_text_format>;
using json_registry = procreg::registry<owner, procreg::lock::flock_lock, json_claim_storage>;
using probed_registry =
    procreg::registry<owner, procreg::lock::flock_lock, json_claim_storage, procreg::liveness::callable_liveness>;
using text_registry = procreg::registry<bare_pid, procreg::lock::flock_lock, text_claim_storage>;

std::uint64_t self_pid() { return static_cast<std::uint64_t>(::getpid()); }

procreg::storage::claim_file_options json_options(const fs::path& file) {
    procreg::storage::claim_file_options opts;
    opts.file = file;
    return opts;
}

std::string owner_json(std::uint64_t pid, const std::string& name) {
    return "{\"slot\": \"s\", \"pid\": " + std::to_string(pid) + ", \"name\": \"" + name + "\"}";
}

std::uint64_t inode_of(const fs::path& path) {
    struct ::stat st {};
    BOOST_TEST_REQUIRE(::stat(path.c_str(), &st) == 0);
    return static_cast<std::uint64_t>(st.st_ino);
}

// Runs one transaction on `reg` that must fail as a storage reports a file
// changed by a writer outside the lock: errc::changed_outside_lock ("decide again").
template <class Body>
void expect_foreign_change(json_registry& reg, Body&& body) {
    try {
        reg.transact(body);
        BOOST_FAIL("the commit must notice the foreign change");
    } catch (const procreg::error& e) {
        BOOST_TEST(e.code() == procreg::errc::changed_outside_lock);
        BOOST_TEST(!e.pid().has_value());
    }
}

std::size_t open_descriptors() {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator("/proc/self/fd")) ++n;
    return n;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(claim_mechanism)

// A writer outside the lock replaces the claim after the session read it:
// commit must not publish, must leave the other writer's file intact, and
// must say changed_outside_lock (decide again).
BOOST_AUTO_TEST_CASE(commit_detects_a_claim_replaced_after_reading) {
    temp_dir dir;
    const fs::path path = dir / "claim.json";
    procreg_test::write_text(path, owner_json(procreg_test::dead_pid(), "stale"));
    json_registry reg(json_claim_storage(json_options(path)));
    const std::string foreign = owner_json(424242, "foreign");
    expect_foreign_change(reg, [&](json_registry::transaction_type& tx) {
        BOOST_TEST_REQUIRE(tx.find("s") != nullptr);
        procreg_test::foreign_replace(path, foreign);
        tx.erase("s");
        tx.insert(owner{"s", self_pid(), "me"});
    });
    BOOST_TEST(procreg_test::read_text(path) == foreign);
    BOOST_TEST(procreg_test::list_dir(dir.path()) == ".claim.json.flock claim.json ");
}

// Same when the claim was rewritten in place (INSOMNIA's fs::write keeps the inode).
BOOST_AUTO_TEST_CASE(commit_detects_a_claim_rewritten_in_place) {
    temp_dir dir;
    const fs::path path = dir / "claim.json";
    procreg_test::write_text(path, owner_json(procreg_test::dead_pid(), "stale"));
    json_registry reg(json_claim_storage(json_options(path)));
    const std::string foreign = owner_json(424242, "in-place");
    expect_foreign_change(reg, [&](json_registry::transaction_type& tx) {
        procreg_test::write_text(path, foreign);
        tx.erase("s");
        tx.insert(owner{"s", self_pid(), "me"});
    });
    BOOST_TEST(procreg_test::read_text(path) == foreign);
}

// No claim when read; a writer outside the lock creates one (trusty's O_EXCL
// first phase) before the commit: link() refuses to overwrite it.
BOOST_AUTO_TEST_CASE(commit_never_overwrites_a_claim_created_meanwhile) {
    temp_dir dir;
    const fs::path path = dir / "claim.json";
    json_registry reg(json_claim_storage(json_options(path)));
    const std::string foreign = owner_json(424242, "first");
    expect_foreign_change(reg, [&](json_registry::transaction_type& tx) {
        BOOST_TEST_REQUIRE(tx.find("s") == nullptr);
        procreg_test::write_text(path, foreign);
        tx.insert(owner{"s", self_pid(), "me"});
    });
    BOOST_TEST(procreg_test::read_text(path) == foreign);
    BOOST_TEST(procreg_test::list_dir(dir.path()) == ".claim.json.flock claim.json ");
}

// acquire decides again after such a change: the liveness probe of the
// first attempt lets a foreign live holder in; the second attempt sees it
// and refuses with its pid and name.
BOOST_AUTO_TEST_CASE(acquire_decides_again_after_a_foreign_change) {
    temp_dir dir;
    const fs::path path = dir / "claim.json";
    procreg_test::live_child foreign;
    const auto dead = static_cast<std::uint64_t>(procreg_test::dead_pid());
    procreg_test::write_text(path, owner_json(dead, "stale"));
    int probes = 0;
    procreg::liveness::callable_liveness probe([&](std::uint64_t pid) {
        ++probes;
        if (pid == dead) {
            procreg_test::foreign_replace(path, owner_json(static_cast<std::uint64_t>(foreign.pid()), "sneaky"));
            return false;
        }
        return procreg::liveness::pid_alive(pid);
    });
    auto reg = std::make_shared<probed_registry>(json_claim_storage(json_options(path)), probe);
    procreg::claim<probed_registry> claim(reg, "s");
    try {
        auto handle = claim.acquire(owner{"s", self_pid(), "me"});
        BOOST_FAIL("the foreign live holder must win");
    } catch (const procreg::claim_in_use& e) {
        BOOST_TEST(e.pid().value() == static_cast<std::uint64_t>(foreign.pid()));
        BOOST_TEST(e.owner_name().value() == "sneaky");
        BOOST_TEST(e.key() == "s");
    }
    BOOST_TEST(probes == 2);
}

// Without the seeds' "unparseable is stale", a claim file that cannot be
// read is an error naming it, and acquire never overwrites it.
BOOST_AUTO_TEST_CASE(unparseable_claim_is_an_error_by_default) {
    temp_dir dir;
    const fs::path path = dir / "claim.json";
    procreg_test::write_text(path, "{ torn");
    procreg::claim<json_registry> claim(std::make_shared<json_registry>(json_claim_storage(json_options(path))), "s");
    try {
        auto handle = claim.acquire(owner{"s", self_pid(), "me"});
        BOOST_FAIL("a corrupt claim must not be overwritten");
    } catch (const procreg::error& e) {
        BOOST_TEST(e.code() == procreg::errc::corrupted_file);
        BOOST_TEST(e.path() == path);
    }
    BOOST_TEST(procreg_test::read_text(path) == "{ torn");
}

// A held claim refuses; the handle releases on destruction; the error_code
// overloads report instead of throwing; a record for another key is refused.
BOOST_AUTO_TEST_CASE(acquire_refuse_release_cycle) {
    temp_dir dir;
    const fs::path path = dir / "claim.json";
    procreg::claim<json_registry> claim(std::make_shared<json_registry>(json_claim_storage(json_options(path))), "s");
    {
        auto handle = claim.acquire(owner{"s", self_pid(), "me"});
        BOOST_TEST(claim.live_holder()->name == "me");
        std::error_code ec;
        BOOST_TEST(!claim.acquire(owner{"s", self_pid(), "again"}, ec).has_value());
        BOOST_TEST(ec == procreg::errc::in_use);
        try {
            (void)claim.acquire(owner{"s", self_pid(), "again"});
            BOOST_FAIL("a held claim must be refused");
        } catch (const procreg::claim_in_use& e) {
            BOOST_TEST(std::string(e.what()).find("held by live pid " + std::to_string(self_pid()) + " (\"me\")") !=
                       std::string::npos);
        }
        std::error_code key_ec;
        BOOST_TEST(!claim.acquire(owner{"other", self_pid(), "x"}, key_ec).has_value());
        BOOST_TEST(key_ec == procreg::errc::invalid_key);
    }
    BOOST_TEST(!fs::exists(path));
    BOOST_TEST(!claim.holder().has_value());
}

// The pid text format holds a pid and nothing else: a record with more is
// refused before anything is written, never truncated silently.
BOOST_AUTO_TEST_CASE(pid_text_refuses_what_it_cannot_hold) {
    temp_dir dir;
    const fs::path path = dir / "pid.lock";
    procreg::storage::claim_file_options opts;
    opts.file = path;
    procreg::claim<text_registry> claim(std::make_shared<text_registry>(text_claim_storage(opts)), "only");
    try {
        auto handle = claim.acquire(bare_pid{self_pid(), std::string("note")});
        BOOST_FAIL("a note cannot be kept in pid text");
    } catch (const procreg::error& e) {
        BOOST_TEST(e.code() == procreg::errc::unsupported_file);
    }
    BOOST_TEST(!fs::exists(path));
    auto handle = claim.acquire(bare_pid{self_pid(), std::nullopt});
    BOOST_TEST(procreg_test::read_text(path) == std::to_string(self_pid()) + "\n");
}

// pidfd_liveness stamps the owner identity (procreg_start_time,
// procreg_boot_id), which pid text has no room for: the format drops
// procreg's own bookkeeping keys, writes "<pid>\n", and the claim is then
// judged by its pid alone. Fields of the record itself are still refused.
BOOST_AUTO_TEST_CASE(pid_text_drops_the_identity_a_liveness_stamps) {
    std::string why;
    boost::json::object stamped{{"pid", 42}, {"procreg_start_time", 123}, {"procreg_boot_id", "b"}};
    BOOST_TEST(procreg::storage::pid_text_format::serialize(stamped, why).value() == "42\n");
    stamped["note"] = "x";
    BOOST_TEST(!procreg::storage::pid_text_format::serialize(stamped, why).has_value());
    BOOST_TEST(why.find("note") != std::string::npos, why);

    using pidfd_registry =
        procreg::registry<bare_pid, procreg::lock::flock_lock, text_claim_storage, procreg::liveness::pidfd_liveness>;
    temp_dir dir;
    const fs::path path = dir / "pid.lock";
    procreg::storage::claim_file_options opts;
    opts.file = path;
    procreg::claim<pidfd_registry> claim(std::make_shared<pidfd_registry>(text_claim_storage(opts)), "only");
    {
        auto handle = claim.acquire(bare_pid{self_pid(), std::nullopt});
        BOOST_TEST(procreg_test::read_text(path) == std::to_string(self_pid()) + "\n");
        BOOST_CHECK_THROW(claim.acquire(bare_pid{self_pid(), std::nullopt}), procreg::claim_in_use);
    }
    BOOST_TEST(!fs::exists(path));
    procreg_test::write_text(path, std::to_string(procreg_test::dead_pid()) + "\n");
    auto handle = claim.acquire(bare_pid{self_pid(), std::nullopt});  // a dead pid alone is stale
    BOOST_TEST(procreg_test::read_text(path) == std::to_string(self_pid()) + "\n");
}

// Private files of a commit whose process died (SIGKILL between steps) are
// removed when the claim is next opened; a live process's are left alone.
BOOST_AUTO_TEST_CASE(leftovers_of_a_crashed_commit_are_swept) {
    temp_dir dir;
    const fs::path path = dir / "claim.json";
    const auto dead = procreg_test::dead_pid();
    const fs::path dead_left = dir / (".claim.json.tmp-" + std::to_string(dead) + "-0-1");
    const fs::path live_left = dir / (".claim.json.tmp-" + std::to_string(::getpid()) + "-0-1");
    procreg_test::write_text(dead_left, "x");
    procreg_test::write_text(live_left, "x");
    json_claim_storage storage(json_options(path));
    BOOST_TEST(!fs::exists(dead_left));
    BOOST_TEST(fs::exists(live_left));
}

// The mechanism is not tied to claim_file: a claim can be one slot of an
// ordinary json_table, next to unrelated records.
BOOST_AUTO_TEST_CASE(claim_in_a_json_table_slot) {
    using table_registry = procreg::registry<owner, procreg::lock::flock_lock, procreg::storage::json_table>;
    temp_dir dir;
    procreg::storage::json_table_options opts;
    opts.file = dir / "table.json";
    auto reg = std::make_shared<table_registry>(procreg::storage::json_table(opts));
    reg->insert(owner{"unrelated", self_pid(), "bystander"});
    procreg::claim<table_registry, procreg::on_destroy::keep> claim(reg, "leader");

    const auto dead = static_cast<std::uint64_t>(procreg_test::dead_pid());
    auto stale = claim.acquire(owner{"leader", dead, "crashed"});
    auto fresh = claim.acquire(owner{"leader", self_pid(), "me"});  // the dead holder is taken over
    BOOST_CHECK_THROW(claim.acquire(owner{"leader", self_pid(), "me-too"}), procreg::claim_in_use);
    BOOST_TEST((stale.release() == procreg::release_status::not_ours));
    BOOST_TEST(claim.holder()->name == "me");
    BOOST_TEST((fresh.release() == procreg::release_status::released));
    BOOST_TEST(!claim.holder().has_value());
    BOOST_TEST(reg->find("unrelated").has_value());
}

// A second acquire by the same pid (own_pid::retake) makes the first
// handle's ownership void, also where the proof is the record's JSON: two
// acquisitions of an identical record differ by their procreg_claim_nonce,
// so the older handle's release leaves the newer claim alone.
BOOST_AUTO_TEST_CASE(older_handle_leaves_a_retaken_json_table_claim) {
    using table_registry = procreg::registry<owner, procreg::lock::flock_lock, procreg::storage::json_table>;
    temp_dir dir;
    procreg::storage::json_table_options opts;
    opts.file = dir / "table.json";
    auto reg = std::make_shared<table_registry>(procreg::storage::json_table(opts));
    procreg::claim<table_registry>::options settings;
    settings.same_pid = procreg::own_pid::retake;
    procreg::claim<table_registry> claim(reg, "leader", settings);

    const owner me{"leader", self_pid(), "me"};
    auto first = claim.acquire(me);
    auto second = claim.acquire(me);  // the same record again
    BOOST_TEST((first.release() == procreg::release_status::not_ours));
    BOOST_TEST(claim.holder().has_value());
    const auto text = procreg_test::read_text(opts.file);
    const auto nonce_at = text.find("\"procreg_claim_nonce\": \"");
    BOOST_TEST_REQUIRE(nonce_at != std::string::npos, text);
    const auto nonce = text.substr(nonce_at + 24, 32);
    BOOST_TEST(nonce.find_first_not_of("0123456789abcdef") == std::string::npos, nonce);
    BOOST_TEST(text.at(nonce_at + 24 + 32) == '"', text);
    BOOST_TEST((second.release() == procreg::release_status::released));
    BOOST_TEST(!claim.holder().has_value());
}

// The file proof (device, inode, bytes) needs the inode to stay unique. A
// handle keeps its claim file open, so after it was retaken (its file
// unlinked), later claims with the same bytes never get its inode number —
// on ext4 the freed inode came straight back — and the old handle's release
// leaves the current claim. Released handles close what they kept.
BOOST_AUTO_TEST_CASE(older_handle_leaves_a_claim_on_a_recycled_inode) {
    temp_dir dir;
    const fs::path path = dir / "pid.lock";
    procreg::storage::claim_file_options opts;
    opts.file = path;
    procreg::claim<text_registry>::options settings;
    settings.same_pid = procreg::own_pid::retake;
    procreg::claim<text_registry> claim(std::make_shared<text_registry>(text_claim_storage(opts)), "only", settings);
    const bare_pid me{self_pid(), std::nullopt};
    BOOST_TEST(!claim.holder().has_value());  // the lock keeps its descriptor open from the first transaction on
    const std::size_t descriptors = open_descriptors();
    {
        auto first = claim.acquire(me);
        const auto first_inode = inode_of(path);
        std::optional<procreg::claim<text_registry>::handle> latest;
        for (int round = 0; round < 32; ++round) {
            latest.reset();
            auto retaken = claim.acquire(me);  // the first handle's file is unlinked
            BOOST_TEST((retaken.release() == procreg::release_status::released));
            latest.emplace(claim.acquire(me));
            BOOST_TEST_REQUIRE(inode_of(path) != first_inode, "round " << round);
        }
        BOOST_TEST((first.release() == procreg::release_status::not_ours));
        BOOST_TEST(procreg_test::read_text(path) == std::to_string(self_pid()) + "\n");
        BOOST_TEST((latest->release() == procreg::release_status::released));
    }
    BOOST_TEST(!fs::exists(path));
    BOOST_TEST(open_descriptors() == descriptors);
}

BOOST_AUTO_TEST_SUITE_END()
