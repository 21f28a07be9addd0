// procreg/claim.hpp — single-holder claims: "at most one live owner" over any registry.
//
// A claim is one key of a registry that at most one live process may hold
// (a daemon's pid lock, a consolidation lock). `claim::acquire(record)`
// succeeds when nobody holds the key or the holder is dead (stale takeover)
// and otherwise throws `claim_in_use`, an `errc::in_use` error carrying the
// holder's pid and, when `record_traits<Record>` has `name(const Record&)`,
// its name. Success returns a `claim_handle`: the proof of ownership, which
// releases the claim when destroyed (`on_destroy::release`) or only when told
// to (`on_destroy::keep`).
//
// Invariants:
// - the decision (read holder, probe liveness, write the new holder) is one
//   registry transaction, so it happens under the registry lock against the
//   state on disk: two processes racing for the same stale claim cannot both
//   win (tests/seed/claim_race_test.cpp proves it with real processes);
// - a handle removes the claim only while it is still the one it wrote:
//   same file (device, inode, bytes) for storages that expose a
//   `file_token()` — the handle keeps that file open, so its inode cannot be
//   reused by a later claim — and the same JSON otherwise, where every
//   acquire writes a fresh random `procreg_claim_nonce` into the record so
//   that two acquisitions of an identical record differ. A claim taken over
//   by someone else, or taken again by this process (`own_pid::retake`), is
//   never deleted by an older handle's release;
// - a handle acts only in the process that acquired it: in a forked child
//   it holds nothing, its destructor does nothing and `release()` returns
//   `not_ours`, so a child that unwinds or exits never frees its parent's
//   claim for a third process;
// - a storage that finds its file changed by a writer outside the lock
//   reports `errc::changed_outside_lock`; acquire then decides again (a
//   bounded number of times) against the new state.
//
// Usable with any storage: a `storage::claim_file` (one record per file) or
// a slot of a `storage::json_table`.
//
// Layout: the options, outcomes and in-use error are procreg/claim/options.hpp,
// the evidence a handle keeps procreg/claim/evidence.hpp, the handle
// procreg/claim/handle.hpp; this header holds `claim`, which decides.
#pragma once

#include <procreg/claim/evidence.hpp>
#include <procreg/claim/handle.hpp>
#include <procreg/claim/options.hpp>
#include <procreg/detail/quote_untrusted.hpp>
#include <procreg/error.hpp>
#include <procreg/record_traits.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

namespace procreg {

/// A single-holder claim on the key `key` of a registry.
template <class Registry, on_destroy Destroy = on_destroy::release>
class claim {
public:
    /// The registry type.
    using registry_type = Registry;
    /// The record type.
    using record_type = typename Registry::record_type;
    /// How the claim decides.
    using options = claim_options<record_type>;
    /// What a successful acquire returns.
    using handle = claim_handle<Registry, Destroy>;

    /// A claim on `key` in `registry`, which the claim keeps (and shares
    /// with every handle it gives out).
    claim(Registry registry, std::string key, options opts = options{})
        : claim(std::make_shared<Registry>(std::move(registry)), std::move(key), std::move(opts)) {}

    /// A claim on `key` in `registry` (shared with every handle it gives out).
    claim(std::shared_ptr<Registry> registry, std::string key, options opts = options{})
        : registry_(std::move(registry)), key_(std::move(key)), options_(std::move(opts)) {
        if (!registry_) throw error(errc::invalid_argument, {}, "a claim needs a registry, not a null pointer");
        if (options_.attempts < 1) options_.attempts = 1;
    }

    /// Records `record` as the holder if there is none or the holder is dead
    /// (or, with `own_pid::retake`, has `record`'s pid). Throws
    /// `claim_in_use` when a live process holds it, `errc::invalid_key` when
    /// `record`'s key is not the claim's, and other `procreg::error`s for
    /// I/O failures and files that must not be overwritten.
    handle acquire(const record_type& record) {
        if (detail::key_of(record) != key_) {
            throw error(errc::invalid_key, registry_->storage().path(),
                        "record key \"" + std::string(detail::key_of(record)) + "\" is not the claim's key \"" +
                            key_ + "\"",
                        error::details{key_, {}, 0});
        }
        for (int attempt = 1;; ++attempt) {
            try {
                auto evidence = registry_->transact(
                    [&](typename Registry::transaction_type& tx) { return take(tx, record); });
                return handle(registry_, key_, record, std::move(evidence));
            } catch (const claim_in_use&) {
                throw;
            } catch (const error& e) {
                if (!detail::is_foreign_change(e) || attempt >= options_.attempts) throw;
            }
        }
    }

    /// As `acquire`, reporting failure in `ec` (`errc::in_use` when held).
    std::optional<handle> acquire(const record_type& record, std::error_code& ec) {
        return detail::reporting(ec, [&] { return acquire(record); });
    }

    /// The recorded holder, alive or not (read under the lock).
    std::optional<record_type> holder() {
        return registry_->transact([&](typename Registry::transaction_type& tx) -> std::optional<record_type> {
            const record_type* found = tx.find(key_);
            return found ? std::optional<record_type>(*found) : std::nullopt;
        });
    }

    /// `holder` reporting failure in `ec`: empty on failure, else the holder or none.
    std::optional<std::optional<record_type>> holder(std::error_code& ec) {
        return detail::reporting(ec, [&] { return holder(); });
    }

    /// The recorded holder if it is alive.
    std::optional<record_type> live_holder() {
        return registry_->transact([&](typename Registry::transaction_type& tx) -> std::optional<record_type> {
            const record_type* found = tx.find(key_);
            return found && tx.alive(*found) ? std::optional<record_type>(*found) : std::nullopt;
        });
    }
    /// `live_holder` reporting failure in `ec`: empty on failure, else the live holder or none.
    std::optional<std::optional<record_type>> live_holder(std::error_code& ec) {
        return detail::reporting(ec, [&] { return live_holder(); });
    }

    /// The registry.
    Registry& registry() const noexcept { return *registry_; }
    /// The claim's key.
    const std::string& key() const noexcept { return key_; }
    /// The options in force.
    const options& settings() const noexcept { return options_; }

private:
    using evidence = detail::claim_evidence<typename Registry::session_type>;

    typename handle::evidence_type take(typename Registry::transaction_type& tx, const record_type& record) const {
        if (const record_type* existing = tx.find(key_)) {
            const std::uint64_t holder_pid = detail::pid_of(*existing);
            const bool own = options_.same_pid == own_pid::retake && holder_pid == detail::pid_of(record);
            if (!own && tx.alive(*existing)) {
                throw claim_in_use(registry_->storage().path(), describe(*existing), key_, holder_pid,
                                   detail::owner_name_of(*existing));
            }
            tx.erase(key_);  // stale: a fresh record, not one merged with the dead holder's fields
        }
        tx.insert(record);
        auto& session = tx.storage_session();
        evidence::template mark<record_type>(session, key_);
        session.commit();  // now, to learn what was written; the registry's own commit is then a no-op
        auto written = evidence::template of<record_type>(session, key_);
        if (!written) {
            throw error(errc::io_failure, registry_->storage().path(), "the claim was written but cannot be found");
        }
        return std::move(*written);
    }

    std::string describe(const record_type& holder) const {
        if (options_.describe_holder) return options_.describe_holder(holder, registry_->storage().path());
        std::string out = "held by live pid " + std::to_string(detail::pid_of(holder));
        // The name was read from the claim: escaped, so it cannot forge log lines.
        if (auto name = detail::owner_name_of(holder)) out += " (" + detail::quote_untrusted(*name, 256) + ")";
        return out;
    }

    std::shared_ptr<Registry> registry_;
    std::string key_;
    options options_;
};

}  // namespace procreg
