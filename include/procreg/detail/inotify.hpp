// procreg/detail/inotify.hpp — directory watches for procreg's watcher.
//
// One inotify instance watching directories (never files: an atomic replace
// swaps the file's inode, and a watch on the old inode would go quiet). Each
// watch carries the entry filters (procreg::watch_target) that say which
// names matter; `drain` reads everything queued and says only what the
// watcher must do about it — read the state again, or rebuild the watches
// because a directory went away or the queue overflowed.
//
// Invariant: no event is interpreted as "nothing happened" unless it is
// provably about an entry no filter matches; anything unexpected (overflow,
// a watch the kernel dropped, a directory moved or deleted) asks for a
// rebuild, which the watcher follows with a full resync.
//
// inotify is not I/O on a registry, so it does not go through detail::sys.
#pragma once

#include <procreg/detail/file_io.hpp>
#include <procreg/error.hpp>
#include <procreg/watch/target.hpp>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <sys/inotify.h>
#include <unistd.h>

namespace procreg::detail {

/// What a drain of the queue asks of the watcher.
struct inotify_news {
    bool changed = false;  ///< a watched entry changed: read the state again
    bool rebuild = false;  ///< overflow, or a watched directory replaced or gone: rewatch, reopen and resync
};

/// A set of directory watches with their entry filters.
class directory_watches {
public:
    /// Entry events of a watched directory (no IN_MODIFY: writers of these
    /// formats replace files, and in-place writers close them: IN_CLOSE_WRITE).
    static constexpr std::uint32_t entry_mask =
        IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR | IN_EXCL_UNLINK;
    /// Events of the directory itself.
    static constexpr std::uint32_t self_mask = IN_DELETE_SELF | IN_MOVE_SELF;

    /// A fresh, empty inotify instance (non-blocking, close-on-exec).
    directory_watches() : fd_(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
        if (fd_ < 0) throw_os_error(errc::io_failure, std::filesystem::path(), "inotify_init1 failed", errno);
    }

    /// Closing an inotify instance waits for the kernel's RCU grace period
    /// (10-20 ms measured, see docs/watch.md): a wait that just got its
    /// event (acquire_within) must not pay that before returning. So the
    /// descriptor is closed by a short detached thread, or here when no
    /// thread can be started.
    ~directory_watches() {
        if (fd_ < 0) return;
        const int fd = fd_;
        try {
            std::thread([fd] { (void)::close(fd); }).detach();
            return;
        } catch (...) {
        }
        (void)::close(fd);
    }

    directory_watches(const directory_watches&) = delete;
    directory_watches& operator=(const directory_watches&) = delete;

    /// The descriptor to poll for readability.
    int fd() const noexcept { return fd_; }

    /// Watches `target.directory` for entries matching the target, and its
    /// parent for the directory's own name (its replacement). Returns false
    /// when the directory does not exist (the parent watch then still
    /// reports its creation); other failures throw.
    bool add(const watch_target& target) {
        const std::filesystem::path& dir = target.directory;
        std::filesystem::path parent = dir.parent_path();
        if (parent.empty()) parent = ".";
        const std::string own_name = dir.filename().string();
        if (!own_name.empty() && own_name != "." && own_name != "..") {
            // A directory named by "." cannot be replaced under its name.
            (void)add_one(parent, watch_target{parent, own_name, {}}, entry_mask, true);
        }
        return add_one(dir, target, entry_mask | self_mask, false);
    }

    /// Reads every queued event; never blocks.
    inotify_news drain() {
        inotify_news news;
        alignas(struct inotify_event) char buffer[16 * 1024];
        for (;;) {
            const ssize_t got = ::read(fd_, buffer, sizeof buffer);
            if (got < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) return news;
                throw_os_error(errc::io_failure, std::filesystem::path(), "cannot read inotify events", errno);
            }
            if (got == 0) return news;
            for (std::size_t at = 0; at < static_cast<std::size_t>(got);) {
                const auto* event = reinterpret_cast<const struct inotify_event*>(buffer + at);
                at += sizeof(struct inotify_event) + event->len;
                classify(*event, news);
            }
        }
    }

private:
    struct filter {
        watch_target target;
        bool is_parent = false;  // matches the watched directory's own name in its parent
    };

    bool add_one(const std::filesystem::path& dir, const watch_target& target, std::uint32_t mask, bool is_parent) {
        // IN_MASK_ADD: one inode watched for two reasons (retired/'s parent
        // is the root) keeps both masks; its filters accumulate.
        const int wd = ::inotify_add_watch(fd_, dir.c_str(), mask | IN_MASK_ADD);
        if (wd < 0) {
            if (errno == ENOENT || errno == ENOTDIR) return false;
            throw_os_error(errc::io_failure, dir, "cannot watch the directory", errno);
        }
        filters_[wd].push_back(filter{target, is_parent});
        return true;
    }

    void classify(const struct inotify_event& event, inotify_news& news) const {
        if (event.mask & IN_Q_OVERFLOW) {
            news.rebuild = true;
            return;
        }
        if (event.mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)) {
            // IN_IGNORED after a self event or an unmount: the watch is gone.
            news.rebuild = true;
            return;
        }
        const auto found = filters_.find(event.wd);
        if (found == filters_.end() || event.len == 0) return;
        const std::string_view name(event.name, ::strnlen(event.name, event.len));
        for (const filter& f : found->second) {
            if (!f.target.matches(name)) continue;
            if (f.is_parent) {
                news.rebuild = true;  // the watched directory itself was replaced, created or removed
            } else {
                news.changed = true;
            }
        }
    }

    int fd_;  // owned; see the destructor
    std::unordered_map<int, std::vector<filter>> filters_;
};

}  // namespace procreg::detail
