// Regression (issue 14, item 11): the `std::error_code&` overloads.
//
// A failed operation must not return a value that reads as a real outcome
// (`upsert` said `inserted`, `retire` said `unchanged`, `erase` said "there
// was none", `release` said `absent`), and every operation has such an
// overload (`exists`, `exists_anywhere`, `list_active`, `transact_for`, the
// conflict-checked `insert`, `reap(hook)` had none). Each overload that
// returns something returns an empty `std::optional` on failure and the
// operation's own result otherwise.
//
// A failure is made by a symbolic link at the lock file (every transaction
// then fails with `errc::unsafe_path` before anything is read), or by an
// injected I/O error. Missing overloads are detected, not called, so that
// this file also compiles against a library without them and fails there at
// run time instead.
#define BOOST_TEST_MODULE regression_error_code_overloads
#include <boost/test/unit_test.hpp>

#include <procreg/claim.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/claim_file.hpp>
#include <procreg/storage/json_table.hpp>
#include <procreg/storage/record_files.hpp>

#include "support/counter_record.hpp"
#include "support/fault_injection.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include <unistd.h>

namespace fs = std::filesystem;
using procreg_test::counter_record;
using procreg_test::temp_dir;

namespace {

using table_registry = procreg::registry<counter_record, procreg::lock::flock_lock, procreg::storage::json_table>;
using files_registry = procreg::registry<counter_record, procreg::lock::flock_lock, procreg::storage::record_files>;
using claim_registry = procreg::registry<counter_record, procreg::lock::flock_lock,
                                         procreg::storage::claim_file<procreg::storage::json_record_format>>;

std::uint32_t self_pid() { return static_cast<std::uint32_t>(::getpid()); }
counter_record mine(const std::string& name) { return counter_record{name, self_pid(), 1}; }

table_registry open_table(const fs::path& dir) {
    procreg::storage::json_table_options opts;
    opts.file = dir / "workers.json";
    return table_registry(procreg::storage::json_table(opts));
}

files_registry open_files(const fs::path& dir) {
    procreg::storage::record_files_options opts;
    opts.root = dir / "records";
    return files_registry(procreg::storage::record_files(opts));
}

// Every transaction of a registry opened on `lock_file` from now on fails
// (unsafe_path); open it after this call (a lock keeps its file open).
void break_lock(const fs::path& lock_file) {
    fs::remove(lock_file);
    fs::create_symlink("/dev/null", lock_file);
}

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};

// A result that can say "failed": an optional, empty then. Anything else
// reads as an outcome even when the operation failed.
template <class Result>
constexpr bool can_say_failed() {
    return is_optional<std::decay_t<Result>>::value;
}

// Named callables: a lambda may not appear in the unevaluated detections below (C++17).
struct count_records {
    template <class Transaction>
    std::size_t operator()(Transaction& tx) const {
        return tx.size();
    }
};
struct never_conflicts {
    bool operator()(const counter_record&, const counter_record&) const { return false; }
};
struct ignore_removed {
    void operator()(const counter_record&) const {}
};

// Whether `find`'s result says "a record": a nested optional when the
// outer one means "succeeded", a record itself otherwise.
template <class Found>
bool holds_a_record(const Found& found) {
    if constexpr (is_optional<Found>::value) {
        return found.has_value();
    } else {
        return true;
    }
}

#define PROCREG_DETECT(name, expression)                                                     \
    template <class R, class = void>                                                         \
    struct name : std::false_type {};                                                        \
    template <class R>                                                                       \
    struct name<R, std::void_t<decltype(expression)>> : std::true_type {};

// The overloads that were missing.
PROCREG_DETECT(has_exists_ec, std::declval<R&>().exists(std::string_view{}, std::declval<std::error_code&>()))
PROCREG_DETECT(has_exists_anywhere_ec,
               std::declval<R&>().exists_anywhere(std::string_view{}, std::declval<std::error_code&>()))
PROCREG_DETECT(has_list_active_ec, std::declval<R&>().list_active(std::declval<std::error_code&>()))
PROCREG_DETECT(has_transact_for_ec,
               std::declval<R&>().transact_for(std::chrono::milliseconds(1), count_records{},
                                               std::declval<std::error_code&>()))
PROCREG_DETECT(has_checked_insert_ec,
               std::declval<R&>().insert(std::declval<const counter_record&>(), never_conflicts{},
                                         std::declval<std::error_code&>()))
PROCREG_DETECT(has_reap_hook_ec,
               std::declval<R&>().reap(ignore_removed{}, std::declval<std::error_code&>()))
// Claims: what a holder is, under the lock.
PROCREG_DETECT(has_holder_ec, std::declval<R&>().holder(std::declval<std::error_code&>()))
PROCREG_DETECT(has_live_holder_ec, std::declval<R&>().live_holder(std::declval<std::error_code&>()))

#undef PROCREG_DETECT

// `call(ec)` must fail with `expected`, return an empty optional, and leave `ec` set.
template <class Call>
void expect_failure(const char* what, std::error_code expected, Call&& call) {
    std::error_code ec = make_error_code(std::errc::interrupted);  // must be overwritten
    using result = decltype(call(ec));
    if constexpr (std::is_void_v<result>) {
        call(ec);
    } else if constexpr (can_say_failed<result>()) {
        const auto out = call(ec);
        BOOST_TEST(!out.has_value(), what << ": a failure returned a value");
    } else {
        (void)call(ec);
        BOOST_ERROR(what << ": its std::error_code& overload returns a plain value, which reads as an outcome "
                            "when the operation failed");
    }
    BOOST_TEST(ec == expected, what << ": got " << ec.message());
}

// `call(ec)` must succeed, clear `ec`, and return the operation's result, which `check` judges.
template <class Call, class Check>
void expect_success(const char* what, Call&& call, Check&& check) {
    std::error_code ec = make_error_code(std::errc::interrupted);  // must be cleared
    using result = decltype(call(ec));
    if constexpr (can_say_failed<result>()) {
        auto out = call(ec);
        BOOST_TEST(!ec, what << ": " << ec.message());
        BOOST_TEST_REQUIRE(out.has_value(), what << ": success returned no value");
        check(*out);
    } else {
        (void)call(ec);
        BOOST_ERROR(what << ": its std::error_code& overload returns a plain value, which reads as an outcome "
                            "when the operation failed");
    }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(error_code_overloads)

// Every one-step operation of a registry: no value on failure, the real outcome on success.
BOOST_AUTO_TEST_CASE(a_failed_operation_returns_no_outcome) {
    temp_dir dir;
    open_table(dir.path()).insert(mine("a"));
    break_lock(dir / "workers.lock");
    auto reg = open_table(dir.path());
    const std::error_code unsafe = procreg::errc::unsafe_path;

    expect_failure("insert", unsafe, [&](std::error_code& ec) { reg.insert(mine("b"), ec); });
    expect_failure("upsert", unsafe, [&](std::error_code& ec) { return reg.upsert(mine("a"), ec); });
    expect_failure("erase", unsafe, [&](std::error_code& ec) { return reg.erase("a", ec); });
    expect_failure("find", unsafe, [&](std::error_code& ec) { return reg.find("a", ec); });
    expect_failure("list", unsafe, [&](std::error_code& ec) { return reg.list(ec); });
    expect_failure("reap", unsafe, [&](std::error_code& ec) { return reg.reap(ec); });
    expect_failure("transact", unsafe,
                   [&](std::error_code& ec) { return reg.transact([](auto& tx) { return tx.size(); }, ec); });
}

BOOST_AUTO_TEST_CASE(a_successful_operation_returns_its_outcome) {
    temp_dir dir;
    auto reg = open_table(dir.path());
    reg.insert(mine("a"));

    expect_success(
        "upsert", [&](std::error_code& ec) { return reg.upsert(mine("a"), ec); },
        [](const procreg::upsert_result& r) { BOOST_TEST((r.status == procreg::upsert_status::replaced)); });
    expect_success(
        "find (present)", [&](std::error_code& ec) { return reg.find("a", ec); },
        [](const auto& found) { BOOST_TEST(holds_a_record(found)); });
    expect_success(
        "find (absent)", [&](std::error_code& ec) { return reg.find("nobody", ec); },
        [](const auto& found) { BOOST_TEST(!holds_a_record(found)); });
    expect_success(
        "erase (absent)", [&](std::error_code& ec) { return reg.erase("nobody", ec); },
        [](bool erased) { BOOST_TEST(!erased); });
    expect_success(
        "list", [&](std::error_code& ec) { return reg.list(ec); },
        [](const auto& rows) { BOOST_TEST(rows.size() == 1u); });
    expect_success(
        "transact", [&](std::error_code& ec) { return reg.transact([](auto& tx) { return tx.size(); }, ec); },
        [](std::size_t n) { BOOST_TEST(n == 1u); });
    std::error_code ec;
    reg.insert(mine("a"), ec);
    BOOST_TEST((ec == procreg::errc::duplicate_key));
}

// The operations that had no std::error_code& overload.
template <class Registry>
void check_transact_for(Registry& reg, std::error_code expected) {
    if constexpr (has_transact_for_ec<Registry>::value) {
        expect_failure("transact_for", expected, [&](std::error_code& ec) {
            return reg.transact_for(std::chrono::seconds(5), [](auto& tx) { return tx.size(); }, ec);
        });
    } else {
        BOOST_ERROR("registry::transact_for has no std::error_code& overload");
    }
}

template <class Registry>
void check_checked_insert(Registry& reg, std::error_code expected) {
    if constexpr (has_checked_insert_ec<Registry>::value) {
        expect_failure("insert(record, conflicts_with)", expected, [&](std::error_code& ec) {
            reg.insert(mine("c"), [](const counter_record&, const counter_record&) { return false; }, ec);
        });
    } else {
        BOOST_ERROR("registry::insert(record, conflicts_with) has no std::error_code& overload");
    }
}

template <class Registry>
void check_reap_hook(Registry& reg, std::error_code expected) {
    if constexpr (has_reap_hook_ec<Registry>::value) {
        expect_failure("reap(hook)", expected,
                       [&](std::error_code& ec) { return reg.reap([](const counter_record&) {}, ec); });
    } else {
        BOOST_ERROR("registry::reap(hook) has no std::error_code& overload");
    }
}

BOOST_AUTO_TEST_CASE(every_registry_operation_has_an_error_code_overload) {
    temp_dir dir;
    open_table(dir.path()).insert(mine("a"));
    break_lock(dir / "workers.lock");
    auto reg = open_table(dir.path());
    const std::error_code unsafe = procreg::errc::unsafe_path;
    check_transact_for(reg, unsafe);
    check_checked_insert(reg, unsafe);
    check_reap_hook(reg, unsafe);
}

template <class Registry>
void check_tombstone_queries(Registry& reg, std::error_code expected) {
    if constexpr (has_exists_ec<Registry>::value) {
        expect_failure("exists", expected, [&](std::error_code& ec) { return reg.exists("a", ec); });
    } else {
        BOOST_ERROR("registry::exists has no std::error_code& overload");
    }
    if constexpr (has_exists_anywhere_ec<Registry>::value) {
        expect_failure("exists_anywhere", expected, [&](std::error_code& ec) { return reg.exists_anywhere("a", ec); });
    } else {
        BOOST_ERROR("registry::exists_anywhere has no std::error_code& overload");
    }
    if constexpr (has_list_active_ec<Registry>::value) {
        expect_failure("list_active", expected, [&](std::error_code& ec) { return reg.list_active(ec); });
    } else {
        BOOST_ERROR("registry::list_active has no std::error_code& overload");
    }
}

// Tombstone operations (record_files): retire said `unchanged` on failure.
BOOST_AUTO_TEST_CASE(tombstone_operations_return_no_outcome_on_failure) {
    temp_dir dir;
    open_files(dir.path()).insert(mine("a"));
    break_lock(dir / "records" / ".registry.lock");
    auto reg = open_files(dir.path());
    const std::error_code unsafe = procreg::errc::unsafe_path;

    expect_failure("retire", unsafe, [&](std::error_code& ec) { return reg.retire("a", ec); });
    expect_failure("unretire", unsafe, [&](std::error_code& ec) { return reg.unretire("a", ec); });
    expect_failure("hard_delete", unsafe, [&](std::error_code& ec) { return reg.hard_delete("a", ec); });
    check_tombstone_queries(reg, unsafe);
    check_transact_for(reg, unsafe);
}

// A claim's holder queries, in the same form.
template <class Claim>
void check_holder_queries(Claim& claim, const procreg::storage::claim_file_options& opts) {
    if constexpr (has_holder_ec<Claim>::value && has_live_holder_ec<Claim>::value) {
        expect_success(
            "claim::holder", [&](std::error_code& ec) { return claim.holder(ec); },
            [](const auto& holder) { BOOST_TEST(!holder.has_value()); });
        break_lock(claim.registry().storage().lock_path());
        Claim broken(std::make_shared<claim_registry>(procreg::storage::claim_file<procreg::storage::json_record_format>(opts)),
                     "d");
        expect_failure("claim::holder", procreg::errc::unsafe_path,
                       [&](std::error_code& ec) { return broken.holder(ec); });
        expect_failure("claim::live_holder", procreg::errc::unsafe_path,
                       [&](std::error_code& ec) { return broken.live_holder(ec); });
    } else {
        BOOST_ERROR("claim::holder / claim::live_holder have no std::error_code& overload");
    }
}

// A claim handle's release said `absent` when it failed (and the handle
// still held the claim, so "absent" was false twice over).
BOOST_AUTO_TEST_CASE(a_failed_claim_release_returns_no_status) {
    temp_dir dir;
    procreg::storage::claim_file_options opts;
    opts.file = dir / "daemon.json";
    auto reg = std::make_shared<claim_registry>(procreg::storage::claim_file<procreg::storage::json_record_format>(opts));
    procreg::claim<claim_registry> claim(reg, "d");
    auto handle = claim.acquire(counter_record{"d", self_pid(), 0});

    namespace faults = procreg_test::faults;
    faults::plan plan = faults::failing_every(faults::calls({faults::call::rename, faults::call::unlink}), EIO);
    {
        faults::armed armed(plan);
        expect_failure("claim_handle::release", procreg::errc::io_failure,
                       [&](std::error_code& ec) { return handle.release(ec); });
    }
    BOOST_TEST(plan.injected > 0u);
    BOOST_TEST(handle.held());
    expect_success(
        "claim_handle::release (retried)", [&](std::error_code& ec) { return handle.release(ec); },
        [](procreg::release_status status) { BOOST_TEST((status == procreg::release_status::released)); });

    check_holder_queries(claim, opts);
}

BOOST_AUTO_TEST_SUITE_END()
