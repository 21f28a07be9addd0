// procreg/storage/claim_file/session.hpp — the acquire/release protocol of
// a claim file: one transaction's view of the claim, and how `commit`
// publishes it.
//
// A commit is a compare-and-swap on the claim name: (1) the new claim is
// written whole under a private name (detail::write_temp_at); (2) the claim
// that was read and judged is moved aside and checked to be that very file
// (device, inode, bytes), else put back (errc::changed_outside_lock);
// (3) the new claim is linked into place, which fails if anyone created the
// name meanwhile (detail::link_if_absent); (4) the directory is fsynced,
// and if that fails the new claim is taken out and the judged one put back.
// The invariants are those of procreg/storage/claim_file.hpp, which
// includes this (users include that header, never this one).
#pragma once

// The storage first: this header defines its members. (Included on its own,
// the storage header includes this one back, which #pragma once skips.)
#include <procreg/storage/claim_file.hpp>

#include <procreg/detail/file_io.hpp>
#include <procreg/detail/json_codec.hpp>
#include <procreg/detail/publish.hpp>
#include <procreg/detail/sys.hpp>
#include <procreg/detail/temp_files.hpp>
#include <procreg/error.hpp>
#include <procreg/storage/claim_file/formats.hpp>
#include <procreg/stored_record.hpp>

#include <cerrno>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace procreg::storage {

/// One transaction's view of the claim: read when created, published by
/// `commit` (only if changed) with the compare-and-swap protocol above.
template <class Format>
template <class Record>
class claim_file<Format>::session {
public:
    /// Loads the claim; the caller holds the registry lock.
    explicit session(claim_file<Format>& owner) : owner_(&owner) { load(); }

    /// The claim if its key is `key`, else null.
    const stored_record<Record>* find(std::string_view key) const {
        return slot_ && detail::key_of(slot_->value) == key ? &*slot_ : nullptr;
    }

    /// Calls `visit(const stored_record<Record>&)` for the claim, if any.
    template <class Visit>
    void for_each(Visit&& visit) const {
        if (slot_) visit(*slot_);
    }

    /// Sets the claim. Refused (file untouched) when the file holds a claim
    /// with another key — a claim file has one slot — or when the format
    /// cannot hold the record. Throws `errc::invalid_record` when the
    /// claim would not read back under this storage's options (too big,
    /// too deep, or not decodable): every reader would take it for
    /// unparseable — stale, or an error — while its writer holds it.
    std::optional<skipped_file> put(stored_record<Record> entry) {
        const std::string_view key = detail::key_of(entry.value);
        if (slot_ && detail::key_of(slot_->value) != key) {
            return skipped_file{path(), "the claim file holds the claim " +
                                            detail::quote_untrusted(detail::key_of(slot_->value)) +
                                            "; a claim file holds one record"};  // escaped: read from the file
        }
        const auto refuse = [&](const std::string& why) {
            throw error(errc::invalid_record, path(), "cannot store the claim: " + why,
                        error::details{std::string(key), {}, 0});
        };
        std::string why;
        std::optional<std::string> bytes;
        try {
            bytes = Format::serialize(detail::merge_over(entry.json, entry.value), why);
        } catch (const detail::decode_error& e) {
            refuse(e.what());
        }
        if (!bytes) {
            return skipped_file{path(), std::string("cannot write the claim in the ") + Format::name +
                                            " format: " + why};
        }
        // The read-back proof on the very bytes to be published, as
        // load() and peek() will read them.
        if (!detail_claim::decode_claim<Format, Record>(*bytes, detail_claim::limits_of(owner_->options_), why)) {
            refuse("it would not read back: " + why);
        }
        slot_ = std::move(entry);
        pending_ = std::move(bytes);
        dirty_ = true;
        return std::nullopt;
    }

    /// Removes the claim if its key is `key`; false otherwise.
    bool erase(std::string_view key) {
        if (!find(key)) return false;
        slot_.reset();
        pending_.reset();
        dirty_ = true;
        return true;
    }

    /// 0 or 1.
    std::size_t size() const noexcept { return slot_ ? 1 : 0; }

    /// An unparseable claim treated as stale, if there was one.
    const std::vector<skipped_file>& skipped() const noexcept { return skipped_; }

    /// The claim file, for error messages.
    const std::filesystem::path& path() const noexcept { return owner_->path(); }

    /// The claim file as this session last read or wrote it; nothing
    /// when there is no file. Compared by claim handles so that they
    /// remove a claim only while it is still theirs.
    const std::optional<claim_file_token>& file_token() const noexcept { return token_; }

    /// Publishes the change, if any. On `errc::changed_outside_lock` the
    /// file was changed by a writer that does not take the lock; nothing
    /// of this session was published and the caller should decide again.
    void commit() {
        if (!dirty_) return;
        if (owner_->sweep_pending_) {
            // Private files a live process left (its own failed cleanup,
            // or one seen at open): under the lock no commit is running,
            // so all of them are garbage.
            detail::sweep_stale_temps(owner_->directory_.get(), owner_->name_, true);
            owner_->sweep_pending_ = false;
        }
        try {
            publish();
        } catch (...) {
            owner_->sweep_pending_ = true;  // a failed commit may have left private files
            throw;
        }
    }

private:
    void publish() {
        const int dirfd = owner_->directory_.get();
        const char* name = owner_->name_.c_str();
        const bool durable = owner_->options_.durable;

        // 1. The new claim, complete and on disk, under a private name
        // (detail/publish.hpp). Its descriptor pins the inode for the
        // token (see claim_file_token): a handle's proof of ownership.
        std::string temp;
        std::optional<claim_file_token> written;
        if (pending_) {
            detail::written_temp file = detail::write_temp_at(dirfd, path(), owner_->name_, *pending_, durable,
                                                              detail::keep_descriptor::pinned);
            temp = std::move(file.name);
            written = claim_file_token::of(file.status, *pending_,
                                           std::make_shared<const detail::unique_fd>(std::move(file.kept)));
        }
        const auto drop_temp = [&] {
            if (!temp.empty()) discard(dirfd, temp);
        };

        // 2. Move the claim we judged out of the way and check it is that claim.
        std::string evicted;
        if (token_) {
            evicted = detail::private_name(owner_->name_);
            if (detail::sys::renameat(dirfd, name, dirfd, evicted.c_str()) != 0) {
                const int err = errno;
                drop_temp();
                if (err == ENOENT) changed("the claim file disappeared");
                detail::throw_os_error(errc::io_failure, path(), "cannot move the old claim aside", err);
            }
            if (!is_file(dirfd, evicted, *token_)) {
                // Someone replaced it after we read it: give it back.
                const bool restored = detail::sys::linkat(dirfd, evicted.c_str(), dirfd, name, 0) == 0;
                discard(dirfd, evicted);
                drop_temp();
                changed(restored ? "the claim file was replaced after it was read"
                                 : "the claim file was replaced after it was read, and a third writer "
                                   "created another one before it could be put back");
            }
        }

        // 3. Publish: create if absent by link(2), which fails if anyone
        // created the name meanwhile (detail::link_if_absent; the temp
        // name goes either way).
        if (pending_) {
            bool left_temp = false;
            const int err = detail::link_if_absent(dirfd, temp, name, &left_temp);
            if (left_temp) owner_->sweep_pending_ = true;
            if (err != 0) {
                if (!evicted.empty()) {
                    // Failed: the judged claim goes back (unless the name was taken meanwhile).
                    if (err != EEXIST) (void)detail::sys::linkat(dirfd, evicted.c_str(), dirfd, name, 0);
                    discard(dirfd, evicted);
                }
                if (err == EEXIST) changed("another writer created the claim file meanwhile");
                detail::throw_os_error(errc::io_failure, path(),
                                       "cannot link the new claim into place (the file system must support "
                                       "hard links)",
                                       err);
            }
        }

        // 4. Make it durable. If that fails the caller is told the commit
        // failed, so the state must be the one before it: take the new
        // claim out again and put the judged one back (we hold the lock;
        // without that, a process refused its own pid could not acquire
        // again until it exits).
        if (durable && detail::sys::fsync(dirfd) != 0) {
            const int err = errno;
            const bool undone = undo(dirfd, written, evicted);
            detail::throw_os_error(errc::io_failure, path(),
                                   undone ? "fsync of the directory failed; the change was undone"
                                          : "fsync of the directory failed, and the change could not be undone: "
                                            "the claim file may hold the new claim, or none",
                                   err);
        }
        // The judged claim is superseded; failing to remove its private
        // copy harms nothing (see `discard`).
        if (!evicted.empty()) discard(dirfd, evicted);

        token_ = std::move(written);
        dirty_ = false;
    }

    // Reverts a publish whose directory fsync failed: moves the claim
    // `written` (if any) aside and removes it, after checking it is that
    // file (a writer outside the lock may have replaced it meanwhile:
    // then it is put back and left alone), then links the judged claim
    // `evicted` (if any) back. True when the claim name is as before.
    bool undo(int dirfd, const std::optional<claim_file_token>& written, const std::string& evicted) {
        const char* name = owner_->name_.c_str();
        bool restored = true;
        if (written) {
            const std::string aside = detail::private_name(owner_->name_);
            if (detail::sys::renameat(dirfd, name, dirfd, aside.c_str()) != 0) {
                restored = errno == ENOENT;  // already gone: nothing of ours to take out
            } else if (!is_file(dirfd, aside, *written)) {
                (void)detail::sys::linkat(dirfd, aside.c_str(), dirfd, name, 0);
                restored = false;
            }
            discard(dirfd, aside);
        }
        if (restored && !evicted.empty()) {
            restored = detail::sys::linkat(dirfd, evicted.c_str(), dirfd, name, 0) == 0;
        }
        if (!evicted.empty()) discard(dirfd, evicted);
        return restored;
    }

    // Removes a private name (a temp file, an evicted claim). A failure
    // (after one retry: detail::discard_private) is left to the next
    // commit's sweep under the lock, or to the next open once this
    // process is dead: a leftover private file is garbage, never a claim.
    void discard(int dirfd, const std::string& private_file) const {
        if (!detail::discard_private(dirfd, private_file)) owner_->sweep_pending_ = true;
    }

    void load() {
        const auto& opts = owner_->options_;
        detail::unique_fd kept;
        auto contents = detail::read_file_at(owner_->directory_.get(), path(), owner_->name_.c_str(),
                                             opts.max_file_bytes, &kept);
        if (!contents) return;
        token_ = claim_file_token::of(contents->status, contents->bytes,
                                      std::make_shared<const detail::unique_fd>(std::move(kept)));
        std::string why;
        slot_ = detail_claim::decode_claim<Format, Record>(contents->bytes, detail_claim::limits_of(opts), why);
        if (slot_) return;
        if (opts.unparseable == unparseable_claim::error) {
            throw error(errc::corrupted_file, path(),
                        std::string("cannot read the claim (") + Format::name + " format): " + why);
        }
        skipped_.push_back(skipped_file{path(), "unparseable claim, treated as stale: " + why});
    }

    // Whether the private name `moved` is the very file `expected` (same
    // device, inode and bytes; `expected` pins its inode, so equal
    // numbers cannot belong to a newer file).
    bool is_file(int dirfd, const std::string& moved, const claim_file_token& expected) const {
        try {
            auto contents = detail::read_file_at(dirfd, path(), moved.c_str(), owner_->options_.max_file_bytes);
            if (!contents) return false;
            return claim_file_token::of(contents->status, std::move(contents->bytes)) == expected;
        } catch (const error&) {
            return false;  // a symlink, a directory, a huge file: not what we read
        }
    }

    [[noreturn]] void changed(const std::string& what) const {
        throw error(errc::changed_outside_lock, path(),
                    what + " by a writer that does not take " + owner_->lock_path().string() +
                        "; nothing was written, decide again");
    }

    claim_file<Format>* owner_;
    std::optional<stored_record<Record>> slot_;
    std::optional<std::string> pending_;
    std::optional<claim_file_token> token_;
    std::vector<skipped_file> skipped_;
    bool dirty_ = false;
};

}  // namespace procreg::storage
