// procreg/registry.hpp — `procreg::registry<Record, Lock, Storage, Liveness>`.
//
// A registry of live processes on the local filesystem, assembled from four
// parameters:
// - Record: the caller's type, described by `procreg::record_traits<Record>`
//   (key and pid) and converted to JSON by Boost.JSON;
// - Lock: excludes every other process and thread for one transaction
//   (`lock::flock_lock`, ...);
// - Storage: how the records lie on disk (`storage::json_table`, ...);
// - Liveness: whether a record's owner is alive (`liveness::kill_liveness`, ...).
//
// Invariant: every operation is one transaction — lock, load from disk,
// apply, save atomically, unlock. Nothing read in an earlier lock cycle is
// trusted: a storage may keep what it last read or wrote (json_table's
// unchanged-file shortcut), but reuses it only after checking, under the
// lock, that the file is still that very version. So the file is the single
// source of truth shared by every process, including programs written in
// other languages that use the same lock and format.
#pragma once

#include <procreg/detail/commit_conflict.hpp>
#include <procreg/detail/policy_checks.hpp>
#include <procreg/error.hpp>
#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/record_traits.hpp>
#include <procreg/stored_record.hpp>
#include <procreg/tombstones.hpp>
#include <procreg/transaction.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <unistd.h>

namespace procreg {

/// A crash-safe registry of live processes. See the file comment and docs/design.md.
template <class Record, class Lock, class Storage, class Liveness = liveness::kill_liveness>
class registry {
    static_assert(detail::check_record_contract<Record>());
    static_assert(detail::check_lock_contract<Lock>());
    static_assert(detail::check_storage_contract<Storage, Record>());
    static_assert(detail::check_liveness_contract<Liveness>());

public:
    using record_type = Record;      ///< the record type
    using lock_type = Lock;          ///< the lock policy
    using storage_type = Storage;    ///< the storage policy
    using liveness_type = Liveness;  ///< the liveness policy
    /// The storage's per-transaction state.
    using session_type = typename detail::session_of<Storage, Record>::type;
    /// What `transact` passes to its callable.
    using transaction_type = transaction<Record, session_type, Liveness>;

    /// A registry whose lock is built from the storage's lock path.
    /// The lock is given the storage's `lock_location()` when the storage
    /// has one and the lock accepts it (the lock file reached through the
    /// storage's own directory descriptor), else its `lock_path()`, else
    /// (a storage without files) nothing: the lock is default-constructed.
    explicit registry(Storage storage, Liveness liveness = Liveness{})
        : storage_(std::move(storage)), lock_(make_lock(storage_)), liveness_(std::move(liveness)) {}

    /// A registry of the storage at `where` with every default: for a
    /// storage constructible from a path alone (`json_table`: the table
    /// file; `record_files`: the root directory).
    template <class S = Storage, class = std::enable_if_t<std::is_constructible_v<S, std::filesystem::path>>>
    explicit registry(const std::filesystem::path& where) : registry(Storage(where)) {}

    /// A registry with an explicitly built lock (e.g. a named mutex with its own name).
    template <class LockArgument,
              class = std::enable_if_t<std::is_constructible_v<Lock, LockArgument&&>>>
    registry(Storage storage, LockArgument&& lock_argument, Liveness liveness)
        : storage_(std::move(storage)),
          lock_(std::make_unique<Lock>(std::forward<LockArgument>(lock_argument))),
          liveness_(std::move(liveness)) {}

    registry(const registry&) = delete;
    registry& operator=(const registry&) = delete;
    /// Moves the registry (its storage, lock and liveness policy) into a new
    /// object; the lock object itself stays where it is, so no transaction
    /// may run while the registry is moved. A moved-from registry may only
    /// be destroyed or assigned to.
    registry(registry&&) noexcept = default;
    /// As the move constructor.
    registry& operator=(registry&&) noexcept = default;

    /// Runs `steps(transaction_type&)` under the lock against the state on
    /// disk, then saves what changed. If `steps` throws, nothing is saved and
    /// the exception propagates. Returns what `steps` returns (by value).
    ///
    /// A one-file storage saves all steps at once (all or nothing). A
    /// file-per-record storage replaces each changed file atomically, so if
    /// saving fails part-way, each file is exactly old or new but earlier
    /// files may be new and later ones old (see docs/design.md).
    /// Transactions do not nest: calling the registry again from inside
    /// `steps` fails with `errc::nested_transaction` instead of hanging.
    template <class Steps>
    decltype(auto) transact(Steps&& steps) {
        static_assert(std::is_invocable_v<Steps&, transaction_type&>,
                      "procreg: transact() needs a callable taking (transaction_type&)");
        static_assert(!std::is_reference_v<std::invoke_result_t<Steps&, transaction_type&>>,
                      "procreg: transact() steps must return a value, not a reference: what the transaction "
                      "holds is gone when it ends with the lock");
        std::unique_lock<Lock> guard(*lock_);
        return run_locked(std::forward<Steps>(steps));
    }

    /// As `transact`, but gives up with `errc::lock_timeout` if the lock is
    /// not free within `timeout` (the lock policy must offer try_lock_for).
    /// Under `flock_lock` the wait polls with a 1-25 ms back-off: flock(2)
    /// has no timeout and a release has no event source (docs/watch.md).
    template <class Steps, class Rep, class Period>
    decltype(auto) transact_for(const std::chrono::duration<Rep, Period>& timeout, Steps&& steps) {
        static_assert(!std::is_reference_v<std::invoke_result_t<Steps&, transaction_type&>>,
                      "procreg: transact_for() steps must return a value, not a reference: what the transaction "
                      "holds is gone when it ends with the lock");
        std::unique_lock<Lock> guard(*lock_, std::defer_lock);
        if (!guard.try_lock_for(timeout)) {
            throw error(errc::lock_timeout, detail::lock_location_of(storage_), "lock not acquired in time");
        }
        return run_locked(std::forward<Steps>(steps));
    }

    // Every operation has a `std::error_code&` overload: the same operation
    // with a procreg failure reported in `ec` instead of thrown. One that
    // returns `R` then returns `std::optional<R>`, empty on failure and only
    // then (so `find` gives `std::optional<std::optional<Record>>`); a void
    // one stays void. See `reporting` and docs/errors.md.

    /// As `transact`, reporting a procreg failure in `ec` instead of
    /// throwing: the callable's result in an optional, empty on failure.
    template <class Steps>
    auto transact(Steps&& steps, std::error_code& ec) {
        return reporting(ec, [&] { return transact(std::forward<Steps>(steps)); });
    }
    /// `transact_for` reporting failure (a timeout too) in `ec`.
    template <class Steps, class Rep, class Period>
    auto transact_for(const std::chrono::duration<Rep, Period>& timeout, Steps&& steps, std::error_code& ec) {
        return reporting(ec, [&] { return transact_for(timeout, std::forward<Steps>(steps)); });
    }

    /// Adds `record`; `errc::duplicate_key` if its key exists.
    void insert(const Record& record) {
        if constexpr (detail::session_creates_if_absent<session_type, Record>::value) {
            // First without looking the key up (a storage that can create a
            // record only if absent makes the create the check); when the
            // key is taken after all, nothing was written, and the ordinary
            // insert reads what is there and says what it is.
            if (transact([&](transaction_type& tx) { return tx.insert_if_absent(record); })) return;
        }
        transact([&](transaction_type& tx) { tx.insert(record); });
    }
    /// Adds `record` unless `conflicts_with(record, live)` holds for a live
    /// record (`errc::conflict`, naming it) or the key exists (`errc::duplicate_key`).
    template <class ConflictCheck>
    void insert(const Record& record, ConflictCheck&& conflicts_with) {
        transact([&](transaction_type& tx) { tx.insert(record, conflicts_with); });
    }
    /// `insert` reporting failure in `ec`.
    void insert(const Record& record, std::error_code& ec) {
        reporting(ec, [&] { insert(record); });
    }
    /// The conflict-checked `insert` reporting failure in `ec`.
    template <class ConflictCheck>
    void insert(const Record& record, ConflictCheck&& conflicts_with, std::error_code& ec) {
        reporting(ec, [&] { insert(record, conflicts_with); });
    }

    /// Adds or replaces `record`, keeping stored fields `Record` does not know.
    upsert_result upsert(const Record& record) {
        return transact([&](transaction_type& tx) { return tx.upsert(record); });
    }
    /// `upsert` reporting failure in `ec`.
    std::optional<upsert_result> upsert(const Record& record, std::error_code& ec) {
        return reporting(ec, [&] { return upsert(record); });
    }

    /// Removes the record with `key`; false when there was none.
    bool erase(std::string_view key) {
        return transact([&](transaction_type& tx) { return tx.erase(key); });
    }
    /// `erase` reporting failure in `ec`.
    std::optional<bool> erase(std::string_view key, std::error_code& ec) {
        return reporting(ec, [&] { return erase(key); });
    }

    /// A copy of the record with `key`, if any.
    std::optional<Record> find(std::string_view key) {
        return transact([&](transaction_type& tx) -> std::optional<Record> {
            const Record* found = tx.find(key);
            return found ? std::optional<Record>(*found) : std::nullopt;
        });
    }
    /// `find` reporting failure in `ec`: empty on failure, else the record or none.
    std::optional<std::optional<Record>> find(std::string_view key, std::error_code& ec) {
        return reporting(ec, [&] { return find(key); });
    }

    /// Every record with whether its owner is alive.
    std::vector<listed<Record>> list() {
        return transact([](transaction_type& tx) { return tx.list(); });
    }
    /// `list` reporting failure in `ec`.
    std::optional<std::vector<listed<Record>>> list(std::error_code& ec) {
        return reporting(ec, [&] { return list(); });
    }

    /// Removes the records whose owners are dead and returns them.
    std::vector<Record> reap() {
        return transact([](transaction_type& tx) { return tx.reap(); });
    }
    /// `reap` calling `on_removed(removed)` or `on_removed(removed, tx)` after each removal.
    template <class Hook>
    std::vector<Record> reap(Hook&& on_removed) {
        return transact([&](transaction_type& tx) { return tx.reap(on_removed); });
    }
    /// `reap` reporting failure in `ec`.
    std::optional<std::vector<Record>> reap(std::error_code& ec) {
        return reporting(ec, [&] { return reap(); });
    }
    /// `reap(on_removed)` reporting failure in `ec`.
    template <class Hook>
    std::optional<std::vector<Record>> reap(Hook&& on_removed, std::error_code& ec) {
        return reporting(ec, [&] { return reap(on_removed); });
    }

    // Tombstone operations (procreg/tombstones.hpp): each is one transaction,
    // and exists only when the storage keeps soft-deleted records; on any
    // other storage a call is a compile error saying so.

    /// Moves the record with `key` to the retired tree; idempotent.
    template <class S = Storage>
    tombstone_result retire(std::string_view key) {
        return with_tombstones<S, tombstone_result>([&](auto& tx) { return tx.retire(key); });
    }
    /// `retire` reporting failure in `ec`.
    template <class S = Storage>
    std::optional<tombstone_result> retire(std::string_view key, std::error_code& ec) {
        return reporting(ec, [&] { return retire<S>(key); });
    }

    /// Moves the retired record with `key` back to the active records; idempotent.
    template <class S = Storage>
    tombstone_result unretire(std::string_view key) {
        return with_tombstones<S, tombstone_result>([&](auto& tx) { return tx.unretire(key); });
    }
    /// `unretire` reporting failure in `ec`.
    template <class S = Storage>
    std::optional<tombstone_result> unretire(std::string_view key, std::error_code& ec) {
        return reporting(ec, [&] { return unretire<S>(key); });
    }

    /// Removes both the active and the retired copy of `key`; true when one existed. Idempotent.
    template <class S = Storage>
    bool hard_delete(std::string_view key) {
        return with_tombstones<S, bool>([&](auto& tx) { return tx.hard_delete(key); });
    }
    /// `hard_delete` reporting failure in `ec`.
    template <class S = Storage>
    std::optional<bool> hard_delete(std::string_view key, std::error_code& ec) {
        return reporting(ec, [&] { return hard_delete<S>(key); });
    }

    /// Whether an active file exists for `key` (valid or not).
    template <class S = Storage>
    bool exists(std::string_view key) {
        return with_tombstones<S, bool>([&](auto& tx) { return tx.exists(key); });
    }
    /// `exists` reporting failure in `ec`.
    template <class S = Storage>
    std::optional<bool> exists(std::string_view key, std::error_code& ec) {
        return reporting(ec, [&] { return exists<S>(key); });
    }

    /// Whether an active or a retired file exists for `key` (valid or not).
    template <class S = Storage>
    bool exists_anywhere(std::string_view key) {
        return with_tombstones<S, bool>([&](auto& tx) { return tx.exists_anywhere(key); });
    }
    /// `exists_anywhere` reporting failure in `ec`.
    template <class S = Storage>
    std::optional<bool> exists_anywhere(std::string_view key, std::error_code& ec) {
        return reporting(ec, [&] { return exists_anywhere<S>(key); });
    }

    /// Every valid active record, in storage order, and every file passed
    /// over (unparseable, unsupported schema, key not matching the file
    /// name, ...) with its reason.
    template <class S = Storage>
    active_listing<Record> list_active() {
        return with_tombstones<S, active_listing<Record>>([](auto& tx) { return tx.list_active(); });
    }
    /// `list_active` reporting failure in `ec`.
    template <class S = Storage>
    std::optional<active_listing<Record>> list_active(std::error_code& ec) {
        return reporting(ec, [&] { return list_active<S>(); });
    }

    /// The storage policy.
    Storage& storage() noexcept { return storage_; }
    /// The lock policy object (to take the lock, run a transaction).
    Lock& lock_policy() noexcept { return *lock_; }
    /// The liveness policy.
    const Liveness& liveness() const noexcept { return liveness_; }

private:
    // What every `std::error_code&` overload does (detail::reporting, shared
    // with claims): clears `ec`, runs the throwing `operation()`; on a
    // procreg failure sets `ec` and returns an empty optional, otherwise the
    // result in an optional (nothing for void). Other exceptions propagate.
    template <class Operation>
    static auto reporting(std::error_code& ec, Operation&& operation) {
        return detail::reporting(ec, std::forward<Operation>(operation));
    }

    // Every tombstone operation: `steps` as one transaction when the storage
    // keeps tombstones. On any other storage check_tombstone_storage's
    // one-sentence static_assert is the only error: `steps` (generic, so its
    // body is not instantiated) is never called.
    template <class S, class Result, class Steps>
    Result with_tombstones(Steps&& steps) {
        if constexpr (detail::check_tombstone_storage<S>()) {
            return transact(std::forward<Steps>(steps));
        } else {
            return Result{};
        }
    }

    // Each branch initialises the lock from a prvalue, so a lock that
    // cannot be moved is built in place all the same. Nested, so that a
    // storage without lock_location() (etcd_store) never names it.
    static std::unique_ptr<Lock> make_lock(Storage& storage) {
        if constexpr (detail::has_lock_location<Storage>::value) {
            if constexpr (std::is_constructible_v<Lock, decltype(storage.lock_location())>) {
                return std::unique_ptr<Lock>(new Lock(storage.lock_location()));
            } else {
                return make_lock_without_location(storage);
            }
        } else {
            return make_lock_without_location(storage);
        }
    }

    static std::unique_ptr<Lock> make_lock_without_location(Storage& storage) {
        if constexpr (detail::has_lock_path<Storage>::value) {
            return std::unique_ptr<Lock>(new Lock(storage.lock_path()));
        } else {
            (void)storage;
            static_assert(std::is_default_constructible_v<Lock>,
                          "procreg: the storage has no lock file (lock_path()), so the lock policy must be "
                          "default-constructible");
            return std::make_unique<Lock>();
        }
    }

    // A storage with optimistic concurrency (etcd_store) reports a commit
    // that lost a race with detail::commit_conflict, having written nothing:
    // the steps run again against the new state (so they must act only
    // through the transaction). Local storages never report it.
    template <class Steps>
    decltype(auto) run_locked(Steps&& steps) {
        for (;;) {
            try {
                return run_once(steps);
            } catch (const detail::commit_conflict&) {
            }
        }
    }

    template <class Steps>
    decltype(auto) run_once(Steps& steps) {
        const pid_t locked_by = ::getpid();
        auto session = storage_.template begin<Record>();
        transaction_type tx(session, liveness_);
        using result = std::invoke_result_t<Steps&, transaction_type&>;
        if constexpr (std::is_void_v<result>) {
            steps(tx);
            commit_in(locked_by, session);
        } else {
            result out = steps(tx);
            commit_in(locked_by, session);
            return out;
        }
    }

    // A child forked inside the steps has a copy of the transaction but not
    // the lock, which stays the parent's: it must not write.
    void commit_in(pid_t locked_by, session_type& session) {
        if (::getpid() != locked_by) {
            throw error(errc::forked_child, detail::lock_location_of(storage_),
                        "a transaction cannot be committed by a child forked inside it (the lock is the parent's)");
        }
        session.commit();
    }

    Storage storage_;
    std::unique_ptr<Lock> lock_;  // held by pointer so that the registry moves while a lock cannot
    Liveness liveness_;
};

/// `with_lock<Registry, NewLock>::type` is `Registry` with its lock policy
/// replaced: how a ready-made registry is given another lock, e.g.
/// `procreg::with_lock_t<procreg::algocline::pool_registry, procreg::lock::named_mutex_lock>`.
template <class Registry, class NewLock>
struct with_lock;
/// Specialization for `registry`.
template <class Record, class Lock, class Storage, class Liveness, class NewLock>
struct with_lock<registry<Record, Lock, Storage, Liveness>, NewLock> {
    /// The registry with `NewLock`.
    using type = registry<Record, NewLock, Storage, Liveness>;
};
/// `Registry` with its lock policy replaced by `NewLock`.
template <class Registry, class NewLock>
using with_lock_t = typename with_lock<Registry, NewLock>::type;

/// `with_liveness<Registry, NewLiveness>::type` is `Registry` with its
/// liveness policy replaced, e.g. a preset with `liveness::pidfd_liveness`.
template <class Registry, class NewLiveness>
struct with_liveness;
/// Specialization for `registry`.
template <class Record, class Lock, class Storage, class Liveness, class NewLiveness>
struct with_liveness<registry<Record, Lock, Storage, Liveness>, NewLiveness> {
    /// The registry with `NewLiveness`.
    using type = registry<Record, Lock, Storage, NewLiveness>;
};
/// `Registry` with its liveness policy replaced by `NewLiveness`.
template <class Registry, class NewLiveness>
using with_liveness_t = typename with_liveness<Registry, NewLiveness>::type;

}  // namespace procreg
