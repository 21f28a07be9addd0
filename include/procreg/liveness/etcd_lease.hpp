// procreg/liveness/etcd_lease.hpp — "is the owner alive?" by an etcd lease, across machines.
//
// An owner process holds a lease (`etcd_lease_keeper`) that a background
// thread keeps alive at a third of its TTL. The records it writes through a
// registry with `etcd_lease` liveness are put with that lease
// (storage/etcd_store.hpp), so when the process dies, or is cut off longer
// than the TTL, etcd deletes them: every other process, on any machine,
// stops seeing them within the TTL. A record is alive when its key carries a
// lease: a key read at a revision exists, so its lease was granted then.
//
// Invariants:
// - a lost lease (expired during a partition or a pause, or revoked) is
//   never renewed under its old id: the keeper reports the loss (state(),
//   and the on_lost callback), every later write through it fails with
//   `errc::io_failure`, and renew() takes a new lease (a new id), after
//   which the owner registers its records again;
// - the keeper's destructor revokes the lease, so a clean shutdown removes
//   the owner's records at once;
// - the keeper is not inherited across fork(): the thread stays with the
//   parent; a child that owns records builds its own keeper;
// - pids play no part: two owners with the same pid (pid namespaces, two
//   machines) are two leases.
#pragma once

#include <procreg/detail/etcd_client.hpp>
#include <procreg/detail/owner_identity.hpp>
#include <procreg/error.hpp>

#include <boost/json.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace procreg::liveness {

/// Where an owner's lease stands.
enum class lease_state {
    held,     ///< granted and kept alive
    lost,     ///< expired (not kept alive in time) or revoked by someone else: renew() takes a new one
    revoked,  ///< revoked by this keeper (revoke() or the destructor)
};

/// Options of an `etcd_lease_keeper`.
struct etcd_lease_options {
    /// The cluster (the same one as the registry's storage).
    detail::etcd_connection connection;
    /// The lease's TTL: records vanish at most about this long after their owner dies.
    std::chrono::seconds ttl{10};
    /// Called (from the keep-alive thread) with the lost lease's id when the lease is lost.
    std::function<void(std::int64_t lost_lease)> on_lost;
};

/// An owner's lease, kept alive by a background thread (see the file comment).
class etcd_lease_keeper {
public:
    /// Grants a lease and starts keeping it alive. Throws `errc::io_failure` when etcd refuses or does not answer.
    explicit etcd_lease_keeper(etcd_lease_options opts)
        : options_(std::move(opts)), client_(options_.connection) {
        if (options_.ttl < std::chrono::seconds(2)) options_.ttl = std::chrono::seconds(2);
        grant();
        thread_ = std::thread([this] { keep_alive_loop(); });
    }

    etcd_lease_keeper(const etcd_lease_keeper&) = delete;
    etcd_lease_keeper& operator=(const etcd_lease_keeper&) = delete;

    /// Stops the keep-alive and revokes the lease (best effort): the owner's records vanish at once.
    ~etcd_lease_keeper() {
        {
            std::lock_guard<std::mutex> hold(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        if (thread_.joinable()) thread_.join();
        try {
            revoke();
        } catch (const error&) {
            // etcd unreachable: the lease expires within its TTL instead.
        }
    }

    /// The current lease id (0 when none is held).
    std::int64_t id() const {
        std::lock_guard<std::mutex> hold(mutex_);
        return state_locked() == lease_state::held ? id_ : 0;
    }

    /// Where the lease stands. A lease not kept alive for longer than its
    /// TTL (e.g. this process was stopped) is `lost` even before etcd says so.
    lease_state state() const {
        std::lock_guard<std::mutex> hold(mutex_);
        return state_locked();
    }

    /// The TTL granted.
    std::chrono::seconds ttl() const noexcept { return options_.ttl; }

    /// Takes a new lease (never the old id) and keeps it alive; returns its
    /// id. The old lease, if still held, is revoked first. The owner then
    /// registers its records again.
    std::int64_t renew() {
        try {
            revoke();
        } catch (const error&) {
        }
        grant();
        wake_.notify_all();
        return id();
    }

    /// Revokes the lease: its records vanish at once. Later writes fail until renew().
    void revoke() {
        std::int64_t lease = 0;
        {
            std::lock_guard<std::mutex> hold(mutex_);
            if (state_ != lease_state::held) return;
            lease = id_;
            state_ = lease_state::revoked;
        }
        detail::etcd_status status;
        client_.call("/v3/lease/revoke", boost::json::object{{"ID", std::to_string(lease)}}, status);
        if (status.code != 0 && status.code != 5) {  // 5: already gone
            throw error(errc::io_failure, client_.display(),
                        "cannot revoke lease " + std::to_string(lease) + ": " +
                            detail::quote_untrusted(status.message, 200),
                        error::details{{}, {}, EIO});
        }
    }

    /// The lease to put records with; throws `errc::io_failure` naming the
    /// lost lease when none is held.
    std::int64_t lease_for_write() const {
        std::lock_guard<std::mutex> hold(mutex_);
        const lease_state now = state_locked();
        if (now != lease_state::held) {
            throw error(errc::io_failure, client_.display(),
                        "lease " + std::to_string(id_) +
                            (now == lease_state::lost ? " was lost (not kept alive within its TTL)"
                                                      : " was revoked") +
                            ": the owner must renew() its lease and register again",
                        error::details{{}, {}, ENOENT});
        }
        return id_;
    }

private:
    using clock = std::chrono::steady_clock;

    lease_state state_locked() const {
        if (state_ == lease_state::held && clock::now() - last_kept_ > options_.ttl) return lease_state::lost;
        return state_;
    }

    void grant() {
        const auto asked = clock::now();
        const boost::json::value answer =
            client_.call_ok("/v3/lease/grant", boost::json::object{{"TTL", std::to_string(options_.ttl.count())}});
        const std::int64_t lease = detail::etcd_client::int_field(answer.as_object(), "ID");
        if (lease == 0) {
            throw error(errc::io_failure, client_.display(), "lease grant answered without an ID",
                        error::details{{}, {}, EPROTO});
        }
        std::lock_guard<std::mutex> hold(mutex_);
        id_ = lease;
        state_ = lease_state::held;
        last_kept_ = asked;
        reported_ = false;
    }

    void mark_lost(std::int64_t lease) {
        {
            std::lock_guard<std::mutex> hold(mutex_);
            if (id_ != lease || reported_) return;
            if (state_ == lease_state::held) state_ = lease_state::lost;
            reported_ = true;
        }
        if (options_.on_lost) options_.on_lost(lease);
    }

    void keep_alive_loop() {
        std::unique_lock<std::mutex> hold(mutex_);
        for (;;) {
            wake_.wait_until(hold, last_kept_ + options_.ttl / 3, [&] { return stopping_; });
            if (stopping_) return;
            const std::int64_t lease = id_;
            const lease_state now = state_locked();
            if (now != lease_state::held) {
                const bool report = now == lease_state::lost && !reported_;
                hold.unlock();
                if (report) mark_lost(lease);
                hold.lock();
                if (state_locked() != lease_state::held && !stopping_) {
                    wake_.wait(hold, [&] { return stopping_ || state_locked() == lease_state::held; });
                }
                continue;
            }
            hold.unlock();
            const auto asked = clock::now();
            bool expired = false;
            try {
                detail::etcd_status status;
                const boost::json::value answer = client_.call(
                    "/v3/lease/keepalive", boost::json::object{{"ID", std::to_string(lease)}}, status);
                if (status.code == 0) {
                    const auto* result = answer.as_object().if_contains("result");
                    // etcd answers an expired or unknown lease with TTL 0 (omitted).
                    expired = !result || !result->is_object() ||
                              detail::etcd_client::int_field(result->get_object(), "TTL") <= 0;
                    if (!expired) {
                        std::lock_guard<std::mutex> relock(mutex_);
                        if (id_ == lease && state_ == lease_state::held && clock::now() - last_kept_ <= options_.ttl) {
                            last_kept_ = asked;
                        }
                    }
                } else if (status.code == 5) {
                    expired = true;
                }
            } catch (const error&) {
                // No member answered: try again soon; the TTL decides loss.
            }
            if (expired) mark_lost(lease);
            hold.lock();
            if (!expired && !stopping_) {
                // Retry a failed keep-alive sooner than a third of the TTL.
                wake_.wait_for(hold, std::chrono::milliseconds(200), [&] { return stopping_; });
            }
        }
    }

    etcd_lease_options options_;
    detail::etcd_client client_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::int64_t id_ = 0;
    lease_state state_ = lease_state::revoked;
    clock::time_point last_kept_{};
    bool reported_ = false;
    bool stopping_ = false;
    std::thread thread_;
};

/// Liveness by etcd leases: a record is alive when its key carries a lease
/// (an expired lease's keys are gone). Records written through it are put
/// with the keeper's lease. Without a keeper the registry can read and reap
/// but not own records.
class etcd_lease {
public:
    /// A record exists only while its owner's lease does: a watcher sees the
    /// owner's end as its records' removal (detail::records_end_with_owner).
    static constexpr bool records_end_with_owner = true;
    /// Reads only the lease key of the stored record (detail/ask_liveness.hpp).
    static constexpr bool judges_by_stored_identity = true;

    /// An observer: reads liveness, owns nothing (writes of owned records fail).
    etcd_lease() = default;
    /// An owner: its records are put with `keeper`'s lease.
    explicit etcd_lease(std::shared_ptr<etcd_lease_keeper> keeper) : keeper_(std::move(keeper)) {}

    /// True when the record's key carries a lease (a granted one, as of the read).
    bool is_alive(std::uint64_t /*pid*/, const boost::json::object& stored) const {
        const auto* lease = stored.if_contains(detail::owner_etcd_lease_key);
        return lease && lease->is_string() && !lease->get_string().empty() && lease->get_string() != "0";
    }

    /// Stamps the keeper's lease, so the record is put with it. Throws
    /// `errc::io_failure` when the lease is lost, or there is no keeper.
    void stamp_identity(std::uint64_t /*pid*/, boost::json::object& stored) const {
        if (!keeper_) {
            throw error(errc::io_failure, "etcd://",
                        "this registry's etcd_lease liveness has no lease keeper, so it cannot own records",
                        error::details{{}, {}, EINVAL});
        }
        stored[detail::owner_etcd_lease_key] = std::to_string(keeper_->lease_for_write());
    }

    /// The keeper, if any.
    const std::shared_ptr<etcd_lease_keeper>& keeper() const noexcept { return keeper_; }

private:
    std::shared_ptr<etcd_lease_keeper> keeper_;
};

}  // namespace procreg::liveness
