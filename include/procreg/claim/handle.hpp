// procreg/claim/handle.hpp — `claim_handle`: the proof that this process holds a claim.
//
// A handle is what `claim::acquire` returns. It releases the claim when
// destroyed (`on_destroy::release`) or only when told to (`on_destroy::keep`);
// `dismiss()` lets it go without touching the file.
//
// Invariants: a handle removes the claim only while the claim on disk is
// still the one it wrote (procreg/claim/evidence.hpp), under the registry
// lock; and it acts only in the process that acquired it: in a forked child
// it holds nothing, its destructor does nothing and `release()` returns
// `not_ours`.
#pragma once

#include <procreg/claim/evidence.hpp>
#include <procreg/claim/options.hpp>
#include <procreg/error.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include <sys/types.h>
#include <unistd.h>

namespace procreg {

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

}  // namespace procreg
