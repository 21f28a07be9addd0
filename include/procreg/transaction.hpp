// procreg/transaction.hpp — the steps a caller takes under one lock.
//
// A transaction is the only way to touch a registry: the registry takes the
// lock, the storage loads the current state from disk, the caller's steps
// run against that state, and the storage saves it atomically before the
// lock is released. If a step throws, nothing is written. A transaction
// never outlives its lock cycle, so no caller can act on a stale copy
// (algocline's "crux invariant").
#pragma once

#include <procreg/detail/ask_liveness.hpp>
#include <procreg/detail/json_strict_parse.hpp>
#include <procreg/detail/owner_identity.hpp>
#include <procreg/detail/policy_checks.hpp>
#include <procreg/error.hpp>
#include <procreg/liveness/pidfd_liveness.hpp>
#include <procreg/record_traits.hpp>
#include <procreg/stored_record.hpp>
#include <procreg/tombstones.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace procreg {


template <class Record, class Lock, class Storage, class Liveness>
class registry;

/// The steps available inside `registry::transact`. Obtained only from a
/// registry; valid only during the callable it was passed to.
template <class Record, class Session, class Liveness>
class transaction {
public:
    /// The storage's session type, for storage-specific steps.
    using session_type = Session;

    /// Used by `registry`; not for direct use.
    transaction(Session& session, const Liveness& liveness) : session_(session), liveness_(liveness) {}

    transaction(const transaction&) = delete;
    transaction& operator=(const transaction&) = delete;

    /// The record with `key`, or null. The pointer is valid until the next mutating step.
    const Record* find(std::string_view key) const {
        const auto* stored = session_.find(key);
        return stored ? &stored->value : nullptr;
    }

    /// The first record, in storage order, for which `pred(const Record&)`
    /// is true, or null: the lookup by a secondary key (e.g. a session id
    /// that must be unique among records). The pointer is valid until the
    /// next mutating step.
    template <class Predicate>
    const Record* find_if(Predicate&& pred) const {
        static_assert(std::is_invocable_r_v<bool, Predicate&, const Record&>,
                      "procreg: find_if needs a predicate callable as bool(const Record&)");
        const Record* found = nullptr;
        session_.for_each([&](const stored_record<Record>& stored) {
            if (!found && pred(stored.value)) found = &stored.value;
        });
        return found;
    }

    /// Whether a record with `key` exists (alive or not).
    bool contains(std::string_view key) const { return session_.find(key) != nullptr; }

    /// Number of records, alive or not.
    std::size_t size() const { return session_.size(); }

    /// Whether `record`'s owner is alive, by the registry's liveness policy
    /// and any identity stored with the record.
    bool alive(const Record& record) const {
        const auto* stored = session_.find(detail::key_of(record));
        static const boost::json::object no_identity;
        return detail::ask_alive(liveness_, detail::pid_of(record), record, stored ? stored->json : no_identity);
    }

    /// Adds `record`. Throws `errc::duplicate_key` when its key exists.
    /// Reads only that key (no conflict check, so no listing).
    void insert(const Record& record) {
        check_not_duplicate(record);
        put_new(record);
    }

    /// Adds `record` unless `conflicts_with(record, live)` is true for a
    /// record whose owner is alive; then throws `errc::conflict` naming the
    /// live record's key. Dead records never conflict. Throws
    /// `errc::duplicate_key` when the key exists.
    template <class ConflictCheck>
    void insert(const Record& record, ConflictCheck&& conflicts_with) {
        static_assert(std::is_invocable_r_v<bool, ConflictCheck&, const Record&, const Record&>,
                      "procreg: a conflict check must be callable as bool(const Record& incoming, const Record& live)");
        const std::string_view key = detail::key_of(record);
        check_not_duplicate(record);
        std::optional<std::string> competitor;
        session_.for_each([&](const stored_record<Record>& live) {
            if (competitor) return;
            if (!conflicts_with(record, live.value)) return;
            if (!detail::ask_alive(liveness_, detail::pid_of(live.value), live)) return;
            competitor = std::string(detail::key_of(live.value));
        });
        if (competitor) {
            throw error(errc::conflict, detail::location_of(session_),
                        detail::quote_untrusted(key) + " conflicts with live record " + detail::quote_untrusted(*competitor),
                        error::details{*competitor, {}, 0});
        }
        put_new(record);
    }

    /// Adds `record` or replaces the record with its key, keeping fields of
    /// the stored record that `Record` does not know. An upsert says "the
    /// process with this pid owns the record now": a stored owner identity
    /// stays only while it still describes that very process (same pid, not
    /// reused, alive); otherwise it is dropped, whichever liveness policy
    /// this registry uses, and this registry's policy captures its own
    /// (detail/owner_identity.hpp). An identity never outlives the process
    /// it was taken for, so a live owner is never judged by a dead one's.
    upsert_result upsert(const Record& record) {
        const auto* existing = session_.find(detail::key_of(record));
        stored_record<Record> next{record, existing ? existing->json : boost::json::object{}};
        const std::uint64_t pid = detail::pid_of(record);
        const bool same_owner = existing && detail::pid_of(existing->value) == pid &&
                                stored_identity_describes(pid, existing->json) &&
                                detail::ask_alive(liveness_, pid, *existing);
        if (!same_owner) detail::drop_owner_identity(next.json);
        // A new owner, or the same one without an identity yet (one where its policy keeps one).
        if (!detail::has_owner_identity(next.json)) liveness_.stamp_identity(pid, next.json);
        const upsert_status status = existing ? upsert_status::replaced : upsert_status::inserted;
        if (auto refused = session_.put(std::move(next))) return {upsert_status::skipped, std::move(refused)};
        return {status, std::nullopt};
    }

    /// Removes the record with `key`; false when there was none.
    bool erase(std::string_view key) { return session_.erase(key); }

    /// Applies `change(Record&)` to the record with `key`; false when there
    /// is none. The change must not alter the key (`errc::invalid_key`).
    /// Unlike `upsert`, the owner identity is dropped and captured again
    /// only when the change alters the pid: editing a dead owner's record (e.g. to reparent
    /// it) must not make whatever process now has its pid look like its owner.
    template <class Change>
    bool modify(std::string_view key, Change&& change) {
        const auto* existing = session_.find(key);
        if (!existing) return false;
        stored_record<Record> next = *existing;
        change(next.value);
        if (detail::key_of(next.value) != key) {
            throw error(errc::invalid_key, detail::location_of(session_),
                        "modify() changed the key of \"" + std::string(key) + "\"; erase and insert instead",
                        error::details{std::string(key), {}, 0});
        }
        if (detail::pid_of(next.value) != detail::pid_of(existing->value)) {
            detail::drop_owner_identity(next.json);
            liveness_.stamp_identity(detail::pid_of(next.value), next.json);
        }
        put_or_throw(std::move(next), key);
        return true;
    }

    /// Calls `visit(const Record&)` for every record.
    template <class Visit>
    void for_each(Visit&& visit) const {
        session_.for_each([&](const stored_record<Record>& stored) { visit(stored.value); });
    }

    /// Copies of every record.
    std::vector<Record> records() const {
        std::vector<Record> out;
        out.reserve(session_.size());
        for_each([&](const Record& record) { out.push_back(record); });
        return out;
    }

    /// Every record with its liveness.
    std::vector<listed<Record>> list() const {
        std::vector<listed<Record>> out;
        out.reserve(session_.size());
        liveness_pass alive(liveness_);
        session_.for_each([&](const stored_record<Record>& stored) {
            out.push_back(listed<Record>{stored.value, alive(stored)});
        });
        return out;
    }

    /// Removes every record whose owner is dead and returns them.
    std::vector<Record> reap() {
        return reap([](const Record&) {});
    }

    /// As `reap()`, calling `on_removed(removed)` or
    /// `on_removed(removed, transaction&)` after each removal, so the caller
    /// can act on it in the same transaction (e.g. reparent its children).
    /// Records are removed in storage order; each hook call sees the
    /// removals before it.
    template <class Hook>
    std::vector<Record> reap(Hook&& on_removed) {
        static_assert(std::is_invocable_v<Hook&, const Record&> ||
                          std::is_invocable_v<Hook&, const Record&, transaction&>,
                      "procreg: a reap hook must be callable as void(const Record&) or "
                      "void(const Record&, transaction&)");
        std::vector<std::string> dead;
        liveness_pass alive(liveness_);
        session_.for_each([&](const stored_record<Record>& stored) {
            if (!alive(stored)) {
                dead.emplace_back(detail::key_of(stored.value));
            }
        });
        std::vector<Record> removed;
        removed.reserve(dead.size());
        for (const auto& key : dead) {
            const auto* stored = session_.find(key);
            if (!stored) continue;  // an earlier hook removed it
            Record record = stored->value;
            session_.erase(key);
            if constexpr (std::is_invocable_v<Hook&, const Record&, transaction&>) {
                on_removed(record, *this);
            } else {
                on_removed(record);
            }
            removed.push_back(std::move(record));
        }
        return removed;
    }

    /// Entries the storage passed over while reading (file-per-record
    /// storages list around a file they cannot read instead of failing).
    template <class S = Session>
    const std::vector<skipped_file>& skipped_files() const {
        static_assert(detail::session_reports_skipped<S>::value,
                      "procreg: skipped_files() needs a storage that reports skipped entries (such as "
                      "storage::record_files); this registry's storage fails instead of skipping");
        return session_.skipped();
    }

    /// The storage's session, for steps only that storage offers.
    Session& storage_session() noexcept { return session_; }
    /// The storage's session, for steps only that storage offers.
    const Session& storage_session() const noexcept { return session_; }

    /// The liveness policy in force.
    const Liveness& liveness() const noexcept { return liveness_; }

    // Tombstone steps: only for storages that keep soft-deleted records
    // (procreg/tombstones.hpp). On any other storage they do not compile.

    /// Moves the record with `key` to the storage's retired tree; idempotent
    /// (`unchanged` when there is no active record). A refusal says which file and why.
    template <class S = Session>
    tombstone_result retire(std::string_view key) {
        return with_tombstones<S, tombstone_result>([&](auto& session) { return session.retire(key); });
    }

    /// Moves the retired record with `key` back to the active records;
    /// idempotent (`unchanged` when there is no retired record).
    template <class S = Session>
    tombstone_result unretire(std::string_view key) {
        return with_tombstones<S, tombstone_result>([&](auto& session) { return session.unretire(key); });
    }

    /// Removes the active and the retired copy of `key`, whatever they
    /// contain; true when at least one existed. Idempotent.
    template <class S = Session>
    bool hard_delete(std::string_view key) {
        return with_tombstones<S, bool>([&](auto& session) { return session.hard_delete(key); });
    }

    /// Whether an active file exists for `key` (valid or not).
    template <class S = Session>
    bool exists(std::string_view key) const {
        return with_tombstones<S, bool>([&](const auto& session) { return session.exists(key); });
    }

    /// Whether an active or a retired file exists for `key` (valid or not).
    template <class S = Session>
    bool exists_anywhere(std::string_view key) const {
        return with_tombstones<S, bool>([&](const auto& session) { return session.exists_anywhere(key); });
    }

    /// Copies of every valid active record (retired ones are not listed),
    /// with every file passed over and why.
    template <class S = Session>
    active_listing<Record> list_active() const {
        return with_tombstones<S, active_listing<Record>>([&](const auto& session) {
            return active_listing<Record>{records(), session.skipped()};
        });
    }

private:
    // Every tombstone step: `step(session)` when the storage keeps
    // tombstones. On any other storage check_tombstone_session's one-sentence
    // static_assert is the only error: `step` (generic, so its body is not
    // instantiated) is never called. Const so that the const steps can use
    // it; a mutating step is itself a non-const member.
    template <class S, class Result, class Step>
    Result with_tombstones(Step&& step) const {
        if constexpr (detail::check_tombstone_session<S>()) {
            S& session = session_;
            return step(session);
        } else {
            return Result{};
        }
    }

    template <class, class, class, class>
    friend class registry;

    // registry::insert's first attempt where the session can create a
    // record only if its key is free, without looking it up first (the
    // create-if-absent capability, docs/design.md): the create is the
    // duplicate check. True when the record is inserted (by the create, or
    // by the ordinary `insert` when the session declines); false when the
    // key was taken, with nothing written: the caller then inserts the
    // ordinary way, which reads what is there and says what it is.
    bool insert_if_absent(const Record& record) {
        stored_record<Record> fresh{record, {}};
        liveness_.stamp_identity(detail::pid_of(record), fresh.json);
        const std::optional<bool> created = session_.create_if_absent(std::move(fresh));
        if (created) return *created;
        insert(record);
        return true;
    }

    // Whether the process identity stored in `json`, if any, describes the
    // live process with `pid`. Those keys are pidfd_liveness's, so it judges
    // them, whatever this registry's own policy (a lease is judged by the
    // registry's own liveness policy, which the caller asks too) — probing
    // as that policy does when it has a probe method (a proc_only registry
    // never calls pidfd_open), else with pidfd_liveness's default.
    bool stored_identity_describes(std::uint64_t pid, const boost::json::object& json) const {
        return !detail::has_process_identity(json) || liveness::identity_judge_for(liveness_).is_alive(pid, json);
    }

    void check_not_duplicate(const Record& record) const {
        const std::string_view key = detail::key_of(record);
        if (session_.find(key)) {
            throw error(errc::duplicate_key, detail::location_of(session_), "key " + detail::quote_untrusted(key) + " exists",
                        error::details{std::string(key), {}, 0});
        }
    }

    void put_new(const Record& record) {
        stored_record<Record> fresh{record, {}};
        liveness_.stamp_identity(detail::pid_of(record), fresh.json);
        put_or_throw(std::move(fresh), detail::key_of(record));
    }

    // Stores `next` where a refusal is an error (insert, modify): the
    // storage's reason, as `errc::unsupported_file` naming `key`. (`upsert`
    // reports a refusal in its result instead.)
    void put_or_throw(stored_record<Record>&& next, std::string_view key) {
        if (auto refused = session_.put(std::move(next))) {
            throw error(errc::unsupported_file, refused->path, refused->reason,
                        error::details{std::string(key), {}, 0});
        }
    }

    Session& session_;
    const Liveness& liveness_;

    // Liveness for one pass over the records (list, reap). A policy whose
    // answer depends on the pid alone (kill_liveness) is asked once per
    // distinct pid: records of one owner are common, and a kill(2) per
    // record was most of a list's cost. The answers are those of one moment
    // of the pass, as a per-record probe's would be. Other policies (a
    // stored identity decides) are asked for every record.
    class liveness_pass {
    public:
        explicit liveness_pass(const Liveness& liveness) : liveness_(liveness) {}
        bool operator()(const stored_record<Record>& stored) {
            const std::uint64_t pid = detail::pid_of(stored.value);
            if constexpr (detail::answers_by_pid_alone<Liveness>::value) {
                // Runs of one owner's records are the common case: the last
                // answer is tried before the map.
                if (last_ && last_->first == pid) return last_->second;
                const auto [it, first] = known_.try_emplace(pid, false);
                if (first) it->second = detail::ask_alive(liveness_, pid, stored);
                last_.emplace(pid, it->second);
                return it->second;
            } else {
                return detail::ask_alive(liveness_, pid, stored);
            }
        }

    private:
        const Liveness& liveness_;
        std::unordered_map<std::uint64_t, bool> known_;  // pid -> alive, for answers_by_pid_alone
        std::optional<std::pair<std::uint64_t, bool>> last_;  // the last pid asked, and its answer
    };
};

}  // namespace procreg
