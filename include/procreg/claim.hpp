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
#pragma once

#include <procreg/detail/json_codec.hpp>
#include <procreg/detail/json_strict_parse.hpp>
#include <procreg/error.hpp>
#include <procreg/record_traits.hpp>
#include <procreg/stored_record.hpp>

#include <boost/json/serialize.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include <unistd.h>

namespace procreg {

/// What acquire does when the recorded holder has the acquirer's own pid.
enum class own_pid {
    refuse,  ///< in use, like any live holder (INSOMNIA)
    retake,  ///< take it over (trusty-memory: a restarted daemon with a recycled pid, or a second acquire)
};

/// What a claim handle does when destroyed while it still holds the claim.
enum class on_destroy {
    release,  ///< remove the claim if it is still ours (trusty-memory's `DaemonLock` drop)
    keep,     ///< nothing: the claim stays until released explicitly or taken over as stale (INSOMNIA)
};

/// What a release did.
enum class release_status {
    released,  ///< the claim was ours and is gone
    absent,    ///< there was no claim (removed by hand, or this handle had already released)
    not_ours,  ///< another holder's claim is there now; it was left alone
};

/// The status's name, for logs.
inline const char* to_string(release_status status) noexcept {
    switch (status) {
    case release_status::released: return "released";
    case release_status::absent: return "absent";
    case release_status::not_ours: return "not_ours";
    }
    return "?";
}

/// `errc::in_use` from a claim: `pid()` is the live holder, `owner_name()`
/// its name when the record type has one, `key()` the claim's key.
class claim_in_use : public error {
public:
    /// Builds the error for `holder_pid` holding the claim `key` in `file`.
    claim_in_use(std::filesystem::path file, const std::string& detail, std::string key, std::uint64_t holder_pid,
                 std::optional<std::string> owner_name)
        : error(errc::in_use, std::move(file), detail, error::details{std::move(key), holder_pid, 0}),
          owner_name_(std::move(owner_name)) {}

    /// The live holder's name, when its record has one.
    const std::optional<std::string>& owner_name() const noexcept { return owner_name_; }

private:
    std::optional<std::string> owner_name_;
};

/// How a claim decides.
template <class Record>
struct claim_options {
    /// What to do when the holder's pid is the acquirer's.
    own_pid same_pid = own_pid::refuse;
    /// How many times acquire decides again when a writer outside the lock
    /// changed the claim file while it was deciding.
    int attempts = 4;
    /// The sentence of an in-use error, from the live holder and the claim
    /// file; empty means "held by live pid <pid> (\"<name>\")".
    std::function<std::string(const Record& holder, const std::filesystem::path& file)> describe_holder;
};

/// The member `claim::acquire` adds to its record in a storage without
/// `file_token()` (e.g. a `json_table` slot): a random 128-bit hex string,
/// new at every acquire, which makes the record the proof of this very
/// acquisition. Readers that ignore unknown keys are not affected.
inline constexpr std::string_view claim_nonce_key = "procreg_claim_nonce";

namespace detail {

/// 128 random bits as 32 hex digits. Only uniqueness matters: should the
/// system have no random source, the bits are pid, time and a counter.
inline std::string random_nonce() {
    static const char hex[] = "0123456789abcdef";
    static std::atomic<std::uint32_t> counter{0};
    std::uint32_t words[4] = {};
    try {
        std::random_device device;
        for (auto& word : words) word = static_cast<std::uint32_t>(device());
    } catch (const std::exception&) {
        const auto now = static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
        words[0] = static_cast<std::uint32_t>(::getpid());
        words[1] = static_cast<std::uint32_t>(now);
        words[2] = static_cast<std::uint32_t>(now >> 32);
        words[3] = counter.fetch_add(1, std::memory_order_relaxed);
    }
    std::string out;
    for (auto bits : words) {
        for (int digit = 0; digit < 8; ++digit, bits >>= 4) out += hex[bits & 0xf];
    }
    return out;
}

template <class Record, class = void>
struct traits_has_name : std::false_type {};
template <class Record>
struct traits_has_name<Record,
                       std::void_t<decltype(std::string(record_traits<Record>::name(std::declval<const Record&>())))>>
    : std::true_type {};

/// The holder's name, from the optional `record_traits<Record>::name`.
template <class Record>
std::optional<std::string> owner_name_of(const Record& record) {
    if constexpr (traits_has_name<Record>::value) {
        return std::string(record_traits<Record>::name(record));
    } else {
        (void)record;
        return std::nullopt;
    }
}

/// Evidence that the claim on disk is the one a handle wrote. Storages with
/// `file_token()` (claim_file) give the file identity, which pins the file;
/// for the others it is the record's JSON as it would be written, made
/// unique by `mark` (a fresh `claim_nonce_key`) at every acquire.
template <class Session, class = void>
struct claim_evidence {
    using type = std::string;
    template <class Record>
    static std::optional<type> of(const Session& session, std::string_view key) {
        const stored_record<Record>* stored = session.find(key);
        if (!stored) return std::nullopt;
        return boost::json::serialize(encode_over(stored->json, stored->value));
    }
    /// Gives the record just inserted under `key` a fresh nonce.
    template <class Record>
    static void mark(Session& session, std::string_view key) {
        const stored_record<Record>* stored = session.find(key);
        if (!stored) return;
        stored_record<Record> marked = *stored;
        marked.json[claim_nonce_key] = random_nonce();
        if (auto refused = session.put(std::move(marked))) {
            throw error(errc::unsupported_file, refused->path, refused->reason,
                        error::details{std::string(key), {}, 0});
        }
    }
};
template <class Session>
struct claim_evidence<Session, std::void_t<decltype(*std::declval<const Session&>().file_token())>> {
    using type = std::decay_t<decltype(*std::declval<const Session&>().file_token())>;
    template <class Record>
    static std::optional<type> of(const Session& session, std::string_view /*key*/) {
        return session.file_token();
    }
    /// Nothing to add: every publish is a new file, and the token pins it.
    template <class Record>
    static void mark(Session& /*session*/, std::string_view /*key*/) {}
};

/// A storage's report that its file changed under it (see file comment).
inline bool is_foreign_change(const error& e) noexcept { return e.code() == errc::changed_outside_lock; }

}  // namespace detail

template <class Registry, on_destroy Destroy>
class claim;

/// Ownership of a claim. Move-only. Destroying it releases the claim if
/// `Destroy` is `on_destroy::release` (errors swallowed: a claim left
/// behind is stale once this process is dead).
template <class Registry, on_destroy Destroy>
class claim_handle {
public:
    /// The record type.
    using record_type = typename Registry::record_type;
    /// What proves the claim on disk is this handle's.
    using evidence_type = typename detail::claim_evidence<typename Registry::session_type>::type;

    claim_handle(const claim_handle&) = delete;
    claim_handle& operator=(const claim_handle&) = delete;

    /// Takes over `other`'s ownership; `other` no longer holds anything.
    claim_handle(claim_handle&& other) noexcept
        : registry_(std::move(other.registry_)),
          key_(std::move(other.key_)),
          path_(std::move(other.path_)),
          record_(std::move(other.record_)),
          evidence_(std::exchange(other.evidence_, evidence_type{})),
          held_(std::exchange(other.held_, false)),
          acquired_by_(other.acquired_by_) {}

    /// Finishes this handle as its destructor would, then takes over `other`'s ownership.
    claim_handle& operator=(claim_handle&& other) noexcept {
        if (this != &other) {
            finish();
            registry_ = std::move(other.registry_);
            key_ = std::move(other.key_);
            path_ = std::move(other.path_);
            record_ = std::move(other.record_);
            evidence_ = std::exchange(other.evidence_, evidence_type{});
            held_ = std::exchange(other.held_, false);
            acquired_by_ = other.acquired_by_;
        }
        return *this;
    }

    /// Releases the claim if `Destroy` says so and it is still held.
    ~claim_handle() { finish(); }

    /// The record this handle wrote.
    const record_type& record() const noexcept { return record_; }
    /// The storage's file (the claim file).
    const std::filesystem::path& path() const noexcept { return path_; }
    /// The claim's key.
    const std::string& key() const noexcept { return key_; }
    /// Whether this handle still holds the claim (not released, dismissed or
    /// moved from). Always false in a process forked from the holder: the
    /// claim is the acquiring process's.
    bool held() const noexcept { return held_ && in_acquiring_process(); }
    /// The registry the claim lives in (not on a moved-from handle).
    Registry& registry() const noexcept { return *registry_; }

    /// Removes the claim, under the registry lock, if it is still the one
    /// this handle wrote; otherwise leaves whatever is there. Afterwards the
    /// handle holds nothing. Throws `procreg::error` on an I/O failure (the
    /// handle then still holds, so the release can be retried). In a process
    /// forked from the holder, touches nothing and returns `not_ours`.
    release_status release() {
        if (!held_) return release_status::absent;
        if (!in_acquiring_process()) return release_status::not_ours;
        using evidence = detail::claim_evidence<typename Registry::session_type>;
        release_status status = release_status::absent;
        try {
            status = registry_->transact([&](typename Registry::transaction_type& tx) {
                auto& session = tx.storage_session();
                const auto current = evidence::template of<record_type>(session, key_);
                if (!current) return release_status::absent;
                if (!(*current == evidence_)) return release_status::not_ours;
                if (!tx.erase(key_)) return release_status::not_ours;
                session.commit();
                return release_status::released;
            });
        } catch (const error& e) {
            if (!detail::is_foreign_change(e)) throw;
            status = release_status::not_ours;  // replaced by a writer outside the lock while releasing
        }
        forget();
        return status;
    }

    /// As `release()`, reporting a failure in `ec` instead of throwing:
    /// then no status (the handle still holds, and the release can be retried).
    std::optional<release_status> release(std::error_code& ec) {
        return detail::reporting(ec, [&] { return release(); });
    }

    /// Stops holding without touching the file: the claim stays on disk
    /// and becomes stale when this process exits.
    void dismiss() noexcept { forget(); }

private:
    friend class claim<Registry, Destroy>;

    claim_handle(std::shared_ptr<Registry> registry, std::string key, record_type record, evidence_type evidence)
        : registry_(std::move(registry)),
          key_(std::move(key)),
          path_(registry_->storage().path()),
          record_(std::move(record)),
          evidence_(std::move(evidence)),
          held_(true) {}

    // Releases only in the process that acquired: a forked child that
    // unwinds, throws or exits must not remove its parent's claim.
    void finish() noexcept {
        if constexpr (Destroy == on_destroy::release) {
            if (held()) {
                try {
                    std::error_code ignored;
                    (void)release(ignored);
                } catch (...) {  // a destructor must not throw; the claim goes stale with this process
                }
            }
        }
        forget();
    }

    bool in_acquiring_process() const noexcept { return acquired_by_ == ::getpid(); }

    // Holds nothing any more; unpins the file, if the evidence held it.
    void forget() noexcept {
        held_ = false;
        evidence_ = evidence_type{};
    }

    std::shared_ptr<Registry> registry_;
    std::string key_;
    std::filesystem::path path_;
    record_type record_;
    evidence_type evidence_{};  // meaningful while held
    bool held_ = false;
    pid_t acquired_by_ = ::getpid();  // the process that acquired: the only one that may release
};

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
