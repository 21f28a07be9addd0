// procreg/watch/watcher.hpp — events from a registry, without polling.
//
// `procreg::watcher<Registry>` (or `procreg::watch(registry)`) reports what
// happens to a registry's records: added, changed, removed, retired,
// unretired (watch/event.hpp) and owner_died. It is generic: the storage
// says where its records lie (`watch_targets()`, watch/target.hpp) and the
// liveness policy says how to wait for an owner's exit (`watch_owner(pid)`);
// neither is named here.
//
// How: one epoll descriptor (detail/epoll.hpp) combines an inotify instance
// watching each target directory and its parent (detail/inotify.hpp), one
// pidfd per distinct live owner, and — only where some live owner cannot be
// pinned (no pidfd_open, or a liveness policy without `watch_owner`) — a
// timer firing every `watch_options::owner_poll_interval`. When inotify says
// a watched entry changed, the watcher reads the whole state through an
// ordinary read-only transaction (one lock cycle, no writes) and diffs it
// with the state it saw last (`diff_snapshots`). When a pidfd polls
// readable, the owner has exited: its records are reported `owner_died`
// without any write to the registry.
// A storage without directories offers a change feed instead (watch/
// target.hpp), whose descriptor takes inotify's place; with a liveness
// policy whose records end with their owner no owner is pinned.
//
// Invariants:
// - nothing is missed: the watches exist before the first read; an inotify
//   queue overflow, a watch the kernel dropped, or a watched directory
//   replaced, removed or created triggers a rebuild of the watches and a
//   full resync (never silence); a read that fails is retried on the next call;
// - the watcher never writes, and holds the registry lock only for one read;
// - with pidfds and inotify available nothing wakes the watcher but an
//   event: no timer exists, so an idle watcher costs no CPU;
// - a watcher copied into a forked child (fork safety) never consumes its
//   parent's events: on its first use in the child it drops the inherited
//   descriptors (without touching the shared epoll instance) and opens its
//   own, then resyncs.
#pragma once

#include <procreg/detail/ask_liveness.hpp>
#include <procreg/detail/epoll.hpp>
#include <procreg/detail/file_io.hpp>
#include <procreg/detail/inotify.hpp>
#include <procreg/detail/json_codec.hpp>
#include <procreg/detail/policy_checks.hpp>
#include <procreg/detail/polling.hpp>
#include <procreg/error.hpp>
#include <procreg/record_traits.hpp>
#include <procreg/stored_record.hpp>
#include <procreg/watch/event.hpp>
#include <procreg/watch/target.hpp>

#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <type_traits>
#include <utility>
#include <vector>

#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

namespace procreg {

/// How a watcher behaves where it must poll.
struct watch_options {
    /// Where an owner cannot be pinned by a pidfd (kernel before 5.3, a
    /// liveness policy without `watch_owner`, pidfd_probe::proc_only), the
    /// state is read again this often while such an owner is alive, so its
    /// death is reported at most this late. Unused otherwise.
    std::chrono::milliseconds owner_poll_interval{100};
};

/// What a watcher has done so far (for tests, benchmarks and logs).
struct watch_stats {
    std::uint64_t reads = 0;     ///< full reads of the state (one lock cycle each)
    /// Watches rebuilt (queue overflow, watch lost, directory replaced), or
    /// a full resync after a change feed lost track (history compacted).
    std::uint64_t rebuilds = 0;
};

/// Reports what happens to the records of a registry. See the file comment.
/// One thread at a time, like the registry it reads through.
template <class Registry>
class watcher {
    using storage_type = typename Registry::storage_type;
    using liveness_type = typename Registry::liveness_type;
    static constexpr bool fed = detail::has_change_feed<storage_type>::value;
    static_assert(detail::is_change_source<storage_type>::value || fed,
                  "procreg: watching needs a storage that is a change source (offers watch_targets() or "
                  "open_change_feed())");

public:
    using record_type = typename Registry::record_type;    ///< the record type
    using event_type = watch_event<record_type>;          ///< what next() returns
    using snapshot_type = watch_snapshot<record_type>;    ///< the state a watcher keeps

    /// Starts watching `registry` (which must outlive the watcher) and reads
    /// its current state; existing records are the starting point, not events.
    explicit watcher(Registry& registry, watch_options opts = watch_options{})
        : source_(&registry), reading_(&registry), options_(opts) {
        open_sources();
        directories_ = identify_directories();
        seen_ = read_state();  // the starting point: no events
        watch_owners();
    }

    watcher(const watcher&) = delete;
    watcher& operator=(const watcher&) = delete;

    /// The next event, waiting up to `timeout` for one (zero: only what is
    /// ready now); nothing when none came in time. Throws `procreg::error`
    /// when reading the registry fails (the next call reads again).
    template <class Rep, class Period>
    std::optional<event_type> next(const std::chrono::duration<Rep, Period>& timeout) {
        adopt_process();
        const auto deadline = detail::deadline_after(timeout);
        for (bool first = true;; first = false) {
            if (!pending_.empty()) {
                event_type out = std::move(pending_.front());
                pending_.pop_front();
                return out;
            }
            if (rebuild_needed_) rebuild();
            if (resync_needed_) {
                resync();
                continue;
            }
            const auto now = std::chrono::steady_clock::now();
            if (!first && now >= deadline) return std::nullopt;
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(std::max(deadline - now, now - now));
            const int wait_ms = static_cast<int>(std::min<std::int64_t>(left.count(), INT_MAX));
            for (const std::uint64_t tag : poller_->wait(wait_ms)) handle(tag);
        }
    }

    /// The next event if one is ready now (never blocks): call it until it
    /// returns nothing each time `native_handle()` polls readable.
    std::optional<event_type> try_next() { return next(std::chrono::milliseconds(0)); }

    /// A descriptor that polls readable when an event may be ready (an epoll
    /// descriptor: put it in an epoll set, poll(2) or a Boost.Asio
    /// `posix::stream_descriptor`). A forked child gets its own on first use.
    int native_handle() {
        adopt_process();
        return poller_->fd();
    }

    /// The state after every event delivered or pending.
    const snapshot_type& current() const noexcept { return seen_; }

    /// Whether `pid` is known to have exited (its pidfd polled readable).
    bool owner_exited(std::uint64_t pid) const { return exited_.count(pid) != 0; }

    /// Whether some live owner is watched by polling (no pidfd for it).
    bool polls_owners() const noexcept { return static_cast<bool>(timer_); }

    /// The options in force.
    const watch_options& settings() const noexcept { return options_; }

    /// What the watcher has done so far.
    const watch_stats& stats() const noexcept { return stats_; }

private:
    static constexpr std::uint64_t inotify_tag = 0;                   // pids are > 0
    static constexpr std::uint64_t timer_tag = ~std::uint64_t{0};    // pids are < 2^32

    using directory_id = std::pair<dev_t, ino_t>;

    void open_sources() {
        poller_.emplace();
        open_watches();
        made_by_ = ::getpid();
    }

    void open_watches() {
        if constexpr (fed) {
            if (feed_) poller_->remove(feed_->fd());
            feed_ = reading_->storage().open_change_feed();
            poller_->add(feed_->fd(), inotify_tag);
        } else {
            open_directory_watches();
        }
    }

    void open_directory_watches() {
        if (watches_) poller_->remove(watches_->fd());
        watches_.emplace();
        for (const watch_target& target : reading_->storage().watch_targets()) (void)watches_->add(target);
        poller_->add(watches_->fd(), inotify_tag);
    }

    // In a forked child: the descriptors are shared with the parent, and
    // removing them from the shared epoll instance would blind the parent.
    // They are closed (the child's copies only) and the child starts afresh.
    void adopt_process() {
        if (made_by_ == ::getpid()) return;
        owner_fds_.clear();
        timer_.reset();
        watches_.reset();
        if constexpr (fed) feed_ = nullptr;
        poller_.reset();
        open_sources();
        resync_needed_ = true;
    }

    void handle(std::uint64_t tag) {
        if constexpr (fed) {
            if (tag == inotify_tag) {
                change_news news = feed_->drain();
                if (news.resync) ++stats_.rebuilds;
                if (news.changed || news.resync) resync_needed_ = true;
                for (auto& key : news.owner_gone) owners_gone_.insert(std::move(key));
                return;
            }
        }
        if (tag == inotify_tag) {
            const detail::inotify_news news = watches_->drain();
            if (news.rebuild) rebuild_needed_ = true;
            if (news.changed || news.rebuild) resync_needed_ = true;
        } else if (tag == timer_tag) {
            std::uint64_t expirations = 0;
            (void)!::read(timer_.get(), &expirations, sizeof expirations);
            resync_needed_ = true;
        } else {
            owner_gone(tag);
        }
    }

    // Watches again from scratch (the kernel dropped a watch, the queue
    // overflowed, or a watched directory was replaced) and, when a directory
    // at a target's path is no longer the one the registry reads, reads
    // through a registry opened afresh on the same settings.
    // Flags are cleared only when done: a rebuild that throws (a directory
    // that cannot be opened yet) is tried again by the next call.
    void rebuild() {
        resync_needed_ = true;
        ++stats_.rebuilds;
        open_watches();
        const auto now_there = identify_directories();
        if (now_there != directories_) {
            missing_ = now_there.empty() || !now_there.front();
            // While no directory is at the path the state is reported empty.
            if (!missing_) reopen();
            directories_ = identify_directories();
        }
        rebuild_needed_ = false;
    }

    void reopen() {
        if constexpr (std::is_constructible_v<Registry, storage_type, liveness_type>) {
            auto fresh = std::make_unique<Registry>(storage_type(source_->storage().settings()), source_->liveness());
            reopened_ = std::move(fresh);
            reading_ = reopened_.get();
            open_watches();  // the reopened storage may have created a missing directory
        }
    }

    std::vector<std::optional<directory_id>> identify_directories() const {
        std::vector<std::optional<directory_id>> out;
        if constexpr (!fed) {  // a change feed follows the storage itself: no directories
            for (const watch_target& target : reading_->storage().watch_targets()) {
                struct ::stat st {};
                if (::stat(target.directory.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
                    out.emplace_back(directory_id{st.st_dev, st.st_ino});
                } else {
                    out.emplace_back(std::nullopt);
                }
            }
        }
        return out;
    }

    // Reads the state under the lock and queues the difference.
    void resync() {
        snapshot_type next = missing_ ? snapshot_type{} : read_state();
        report_owners_gone(seen_, next, owners_gone_, pending_);  // then the diff says removed
        owners_gone_.clear();
        diff_snapshots(seen_, next, pending_);
        seen_ = std::move(next);
        resync_needed_ = false;
        watch_owners();
    }

    snapshot_type read_state() {
        ++stats_.reads;
        return reading_->transact([&](typename Registry::transaction_type& tx) {
            snapshot_type out;
            const auto& session = tx.storage_session();
            const auto& liveness = tx.liveness();
            session.for_each([&](const stored_record<record_type>& stored) {
                const std::uint64_t pid = detail::pid_of(stored.value);
                const bool alive = !owner_exited(pid) && detail::ask_alive(liveness, pid, stored);
                out.active.emplace(std::string(detail::key_of(stored.value)),
                                   watched_record<record_type>{stored.value, text_of(stored), pid, alive});
            });
            if constexpr (detail::lists_retired<typename Registry::session_type>::value) {
                session.for_each_retired([&](const stored_record<record_type>& stored) {
                    out.retired.emplace(std::string(detail::key_of(stored.value)),
                                        watched_record<record_type>{stored.value, text_of(stored),
                                                                    detail::pid_of(stored.value), false});
                });
            }
            return out;
        });
    }

    static std::string text_of(const stored_record<record_type>& stored) {
        return boost::json::serialize(detail::encode_over(stored.json, stored.value));
    }

    // One pidfd per distinct live owner; owners no record names any more
    // are let go; a timer only while some live owner has no pidfd. Pid 0 is
    // no owner (a record without a pid, alive by its liveness policy's
    // rule): there is no process to watch, and its state only changes by a
    // write, which inotify reports.
    void watch_owners() {
        std::set<std::uint64_t> wanted;
        if constexpr (!detail::records_end_with_owner<liveness_type>::value) {
            for (const auto& item : seen_.active) {
                if (item.second.alive && item.second.pid != 0) wanted.insert(item.second.pid);
            }
        }
        for (auto it = owner_fds_.begin(); it != owner_fds_.end();) {
            if (wanted.count(it->first)) {
                ++it;
                continue;
            }
            poller_->remove(it->second.get());
            it = owner_fds_.erase(it);
        }
        std::set<std::uint64_t> named;
        for (const auto& item : seen_.active) named.insert(item.second.pid);
        for (auto it = exited_.begin(); it != exited_.end();) it = named.count(*it) ? std::next(it) : exited_.erase(it);
        bool unpinned = false;
        for (const std::uint64_t pid : wanted) {
            if (owner_fds_.count(pid)) continue;
            int fd = -1;
            if constexpr (detail::can_watch_owner<liveness_type>::value) fd = reading_->liveness().watch_owner(pid);
            if (fd >= 0) {
                detail::unique_fd owned(fd);
                poller_->add(owned.get(), pid);
                owner_fds_.emplace(pid, std::move(owned));
            } else if (errno == ESRCH && detail::can_watch_owner<liveness_type>::value) {
                owner_gone(pid);  // exited between the read and now
            } else {
                unpinned = true;
            }
        }
        set_timer(unpinned);
    }

    void set_timer(bool on) {
        if (on == static_cast<bool>(timer_)) return;
        if (!on) {
            poller_->remove(timer_.get());
            timer_.reset();
            return;
        }
        detail::unique_fd timer(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
        if (!timer) detail::throw_os_error(errc::io_failure, source_->storage().path(), "timerfd_create failed", errno);
        const auto interval = std::max(options_.owner_poll_interval, std::chrono::milliseconds(1));
        struct ::itimerspec spec {};
        spec.it_interval.tv_sec = static_cast<time_t>(interval.count() / 1000);
        spec.it_interval.tv_nsec = static_cast<long>(interval.count() % 1000) * 1000000L;
        spec.it_value = spec.it_interval;
        if (::timerfd_settime(timer.get(), 0, &spec, nullptr) != 0) {
            detail::throw_os_error(errc::io_failure, source_->storage().path(), "timerfd_settime failed", errno);
        }
        poller_->add(timer.get(), timer_tag);
        timer_ = std::move(timer);
    }

    // `pid` has exited: every live record it owns is reported owner_died.
    void owner_gone(std::uint64_t pid) {
        const auto found = owner_fds_.find(pid);
        if (found != owner_fds_.end()) {
            poller_->remove(found->second.get());
            owner_fds_.erase(found);
        }
        exited_.insert(pid);
        for (auto& item : seen_.active) {
            watched_record<record_type>& r = item.second;
            if (r.pid != pid || !r.alive) continue;
            r.alive = false;
            pending_.push_back(event_type{watch_event_kind::owner_died, item.first, r.record, pid, false});
        }
    }

    Registry* source_;                       // the caller's registry
    std::unique_ptr<Registry> reopened_;     // after its directory was replaced: one on the new directory
    Registry* reading_;                      // what is read: source_ or reopened_
    watch_options options_;
    std::optional<detail::event_poller> poller_;
    std::optional<detail::directory_watches> watches_;
    typename detail::change_feed_of<storage_type>::type feed_{};  // a storage's own change feed, if it has one
    std::set<std::string> owners_gone_;                            // keys the feed says went with their owner
    detail::unique_fd timer_;                              // only while some live owner has no pidfd
    std::map<std::uint64_t, detail::unique_fd> owner_fds_;  // pid -> pidfd
    std::set<std::uint64_t> exited_;                       // owners whose pidfd said they exited
    std::vector<std::optional<directory_id>> directories_;  // what the targets' paths were when read
    snapshot_type seen_;
    std::deque<event_type> pending_;
    watch_stats stats_;
    bool resync_needed_ = false;
    bool rebuild_needed_ = false;
    bool missing_ = false;  // the first target directory is gone: the state is empty
    pid_t made_by_ = 0;
};

/// A watcher of `registry`.
template <class Registry>
watcher<Registry> watch(Registry& registry, watch_options opts = watch_options{}) {
    return watcher<Registry>(registry, opts);
}

}  // namespace procreg
