// procreg/storage/claim_file.hpp — a single-holder claim kept in one small file.
//
// A claim file holds at most one record: the current holder of something
// that only one process may own (trusty-memory's `daemon.lock` holding
// "<pid>\n", INSOMNIA's `_staging/.consolidation.lock` holding a JSON
// object). How the record looks on disk is a format policy
// (`pid_text_format`, `json_record_format`); everything else is shared.
//
// Invariants:
// - every decision is taken under the registry lock (a flock on a sibling
//   file that is never renamed or unlinked), so two procreg processes never
//   both replace the same claim;
// - the claim file is never rewritten in place. A new claim is a complete,
//   fsynced temp file that is hard-linked to the claim name (link fails if
//   the name exists), so a reader sees no file or a whole claim, and a
//   writer outside our lock that creates the claim with O_EXCL (trusty's
//   first phase) cannot be overwritten;
// - a claim is replaced or removed only after it has been moved to a private
//   name and found to be the very file (device, inode and bytes) that was
//   read and judged: if another writer changed it meanwhile, the file is put
//   back and the commit fails with `errc::changed_outside_lock` — the caller
//   re-reads and decides again (py-filelock's rename-and-recheck). A file's
//   identity (`claim_file_token`) keeps the file open, so its inode number
//   cannot be reused for a newer claim while anyone relies on it;
// - a commit that reports failure leaves the claim as it was: if linking the
//   new claim or the final directory fsync fails, the new claim is taken out
//   again and the judged one put back (when the failing disk lets us; an
//   fsync error says whether it did);
// - a claim is published only once its very bytes read back under this
//   storage's options (max_file_bytes, max_depth, decoding); otherwise
//   errc::invalid_record and nothing is written — every reader would take
//   it for unparseable (so, in stale mode, for no holder) while its writer
//   holds it;
// - a file that cannot be parsed is an error naming it (procreg's default),
//   or, where the seed says so, a stale claim reported through `skipped()`;
// - the directory is opened once by descriptor (0700, owner checked, no
//   symlinks); every file is reached relative to it.
//
// See docs/storage-claim-file.md for the protocol and what it guarantees
// against programs that do not take the lock.
#pragma once

#include <procreg/detail/file_io.hpp>
#include <procreg/detail/located_file.hpp>
#include <procreg/detail/publish.hpp>
#include <procreg/detail/json_codec.hpp>
#include <procreg/detail/json_strict_parse.hpp>
#include <procreg/error.hpp>
#include <procreg/record_traits.hpp>
#include <procreg/stored_record.hpp>
#include <procreg/watch/target.hpp>

#include <boost/json.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace procreg::storage {

/// Claim format: the plain text `<pid>\n` of trusty-memory's `daemon.lock`.
/// The record seen by the registry is the JSON object `{"pid": <pid>}`.
struct pid_text_format {
    /// Name used in error messages.
    static constexpr const char* name = "pid text";

    /// Reads "<pid>" surrounded by optional whitespace (what Rust's
    /// `trim().parse::<u32>()` accepts, a leading '+' included). Returns
    /// nothing, with the reason in `why`, for an empty or malformed file.
    static std::optional<boost::json::object> parse(std::string_view bytes, const detail::json_limits& /*limits*/,
                                                    std::string& why) {
        const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
        while (!bytes.empty() && is_space(bytes.front())) bytes.remove_prefix(1);
        while (!bytes.empty() && is_space(bytes.back())) bytes.remove_suffix(1);
        if (bytes.empty()) {
            why = "the file is empty";
            return std::nullopt;
        }
        std::string_view digits = bytes;
        if (digits.front() == '+') digits.remove_prefix(1);
        if (digits.empty()) {
            why = "not a pid";
            return std::nullopt;
        }
        std::uint64_t pid = 0;
        for (const char c : digits) {
            if (c < '0' || c > '9') {
                why = "not a pid: " + detail::quote_untrusted(bytes, 32);  // escaped: file bytes in a log line
                return std::nullopt;
            }
            const auto digit = static_cast<std::uint64_t>(c - '0');
            if (pid > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) {
                why = "pid out of range";
                return std::nullopt;
            }
            pid = pid * 10 + digit;
        }
        boost::json::object out;
        out["pid"] = pid;
        return out;
    }

    /// Writes `<pid>\n`. Refuses (returns nothing, reason in `why`) a record
    /// with any non-null field besides a non-negative integer `pid`: the
    /// format has no room for it and dropping it silently would lose data.
    /// Keys starting with `procreg_` are procreg's own bookkeeping (the owner
    /// identity a liveness policy stamps) and are dropped instead: such a
    /// claim is then judged by its pid alone, as one the seed wrote.
    static std::optional<std::string> serialize(const boost::json::object& record, std::string& why) {
        const auto found = record.find("pid");
        if (found == record.end()) {
            why = "the record has no \"pid\" field";
            return std::nullopt;
        }
        for (const auto& item : record) {
            if (item.key() == "pid" || item.value().is_null()) continue;  // null (an empty optional) loses nothing
            if (item.key().substr(0, 8) == "procreg_") continue;          // bookkeeping: see above
            why = "the pid text format holds only a pid; the record also has " +
                  detail::quote_untrusted(item.key());
            return std::nullopt;
        }
        const boost::json::value& pid = found->value();
        if (pid.is_uint64()) return std::to_string(pid.get_uint64()) + "\n";
        if (pid.is_int64() && pid.get_int64() >= 0) return std::to_string(pid.get_int64()) + "\n";
        why = "\"pid\" is not a non-negative integer";
        return std::nullopt;
    }
};

/// Claim format: one JSON object, pretty-printed like serde_json's
/// `to_string_pretty` without a trailing newline (INSOMNIA's lock file).
struct json_record_format {
    /// Name used in error messages.
    static constexpr const char* name = "JSON record";

    /// Parses one JSON object within the depth limit.
    static std::optional<boost::json::object> parse(std::string_view bytes, const detail::json_limits& limits,
                                                    std::string& why) {
        auto parsed = detail::parse_json(bytes, limits, why);
        if (!parsed) {
            why = "cannot parse JSON: " + why;
            return std::nullopt;
        }
        if (!parsed->is_object()) {
            why = "the top level is not a JSON object";
            return std::nullopt;
        }
        return std::move(parsed->as_object());
    }

    /// Pretty-prints the object.
    static std::optional<std::string> serialize(const boost::json::object& record, std::string& /*why*/) {
        return detail::pretty_print(record);
    }
};

/// What a claim file that cannot be parsed means.
enum class unparseable_claim {
    error,  ///< `errc::corrupted_file`, file untouched (procreg's default: never overwrite what you don't understand)
    stale,  ///< no holder: the next acquire replaces it (both seeds), reported through `skipped()`
};

/// Where and how a `claim_file` keeps its file.
struct claim_file_options {
    /// The claim file, e.g. `~/.local/share/trusty-memory/daemon.lock`. Its
    /// directory is created (0700) when missing.
    std::filesystem::path file;
    /// The registry lock file; empty means `<dir>/.<name>.flock` (`<dir>/<name>.flock`
    /// when the name already starts with a dot). Never renamed or unlinked.
    std::filesystem::path lock_file;
    /// What a file that cannot be parsed means.
    unparseable_claim unparseable = unparseable_claim::error;
    /// fsync the new claim before publishing it and the directory after.
    bool durable = true;
    /// Claim files larger than this are refused unread (checked with fstat).
    std::size_t max_file_bytes = std::size_t{1} << 20;
    /// Maximum JSON nesting depth accepted.
    std::size_t max_depth = 32;
    /// Ownership and permission rules for the directory.
    directory_policy directory;
};

/// Identity of one claim file as read or written: a replaced or rewritten
/// file differs in at least one of these. Used to remove a claim only while
/// it is still the one a process wrote. A token holds an open descriptor
/// of its file (shared by its copies): while any copy lives, the inode stays
/// allocated even once the file is unlinked, so no later claim can get the
/// same device and inode (and, with the same pid, the same bytes) and pass
/// for this one.
struct claim_file_token {
    std::uint64_t device = 0;  ///< st_dev
    std::uint64_t inode = 0;   ///< st_ino
    std::string bytes;         ///< the whole contents
    /// The open descriptor that keeps `inode` from being reused; not compared.
    std::shared_ptr<const detail::unique_fd> pin;

    /// Same file, same contents.
    friend bool operator==(const claim_file_token& a, const claim_file_token& b) {
        return a.device == b.device && a.inode == b.inode && a.bytes == b.bytes;
    }
    /// Not the same file or not the same contents.
    friend bool operator!=(const claim_file_token& a, const claim_file_token& b) { return !(a == b); }

    /// The token of the file `status` describes, holding `bytes` (and `pin`, if any).
    static claim_file_token of(const struct ::stat& status, std::string bytes,
                               std::shared_ptr<const detail::unique_fd> pin = nullptr) {
        return claim_file_token{static_cast<std::uint64_t>(status.st_dev), static_cast<std::uint64_t>(status.st_ino),
                                std::move(bytes), std::move(pin)};
    }
};

/// What a claim file holds, read without taking the lock.
enum class claim_state {
    absent,       ///< no file (or no directory)
    unparseable,  ///< a file that is empty or not a claim in the format
    present,      ///< a readable claim
};

/// The result of `claim_file::peek`.
template <class Record>
struct claim_peek {
    claim_state state = claim_state::absent;  ///< what was found
    std::optional<Record> record;             ///< the claim, when `state == claim_state::present`
    std::string reason;                       ///< why it is unparseable, when it is
};

namespace detail_claim {

template <class Format, class = void>
struct is_format : std::false_type {};
template <class Format>
struct is_format<Format,
                 std::enable_if_t<std::is_same_v<decltype(Format::parse(std::string_view{},
                                                                        std::declval<const detail::json_limits&>(),
                                                                        std::declval<std::string&>())),
                                                 std::optional<boost::json::object>> &&
                                  std::is_same_v<decltype(Format::serialize(std::declval<const boost::json::object&>(),
                                                                            std::declval<std::string&>())),
                                                 std::optional<std::string>> &&
                                  std::is_convertible_v<decltype(Format::name), const char*>>> : std::true_type {};

/// A fresh name `.<target>.tmp-<pid>-<n>-<noise>[-ns<namespace>]` in the
/// temp-file namespace of `target` (`detail::temp_writer_tag`), so
/// `detail::sweep_stale_temps` removes it if its maker dies.
inline std::string private_name(std::string_view target) {
    return detail::temp_prefix(target) + detail::temp_writer_tag();
}

/// The limits a claim file is read with, and so written with.
inline detail::json_limits limits_of(const claim_file_options& opts) {
    return detail::json_limits{opts.max_depth, opts.max_file_bytes};
}

/// Parses and decodes claim bytes; nothing (reason in `why`) when they are
/// not a `Record` in `Format` within `limits`.
template <class Format, class Record>
std::optional<stored_record<Record>> decode_claim(std::string_view bytes, const detail::json_limits& limits,
                                                  std::string& why) {
    if (bytes.size() > limits.max_bytes) {  // whatever the format: the reader's fstat check
        why = "too big: " + std::to_string(bytes.size()) + " bytes, above the limit of " +
              std::to_string(limits.max_bytes) + " bytes";
        return std::nullopt;
    }
    auto object = Format::parse(bytes, limits, why);
    if (!object) return std::nullopt;
    try {
        Record value = detail::decode_value<Record>(boost::json::value(*object), "");
        return stored_record<Record>{std::move(value), std::move(*object)};
    } catch (const detail::decode_error& e) {
        why = e.what();
        return std::nullopt;
    }
}

}  // namespace detail_claim

/// Storage policy: one claim (at most one record) in one file, in `Format`.
template <class Format>
class claim_file {
    static_assert(detail_claim::is_format<Format>::value,
                  "procreg: a claim format needs static parse(string_view, const json_limits&, string&) -> "
                  "optional<json::object>, static serialize(const json::object&, string&) -> optional<string>, "
                  "and a static name");

public:
    /// The options type, named uniformly across storages.
    using options = claim_file_options;
    /// The on-disk format.
    using format_type = Format;

    /// Opens the claim's directory (creating it 0700 when missing) and removes
    /// private files left by processes that died mid-commit (those of live
    /// processes go at the next commit, under the lock). Reads nothing.
    explicit claim_file(options opts) : options_(std::move(opts)) {
        name_ = file_name(options_.file);
        if (options_.lock_file.empty()) options_.lock_file = default_lock_file(options_.file);
        // A lock file at the claim's name would be an empty, unparseable claim.
        detail::check_lock_file(options_.lock_file, options_.file);
        directory_ = detail::open_directory(directory_path(options_.file), options_.directory);
        sweep_pending_ = detail::sweep_stale_temps(directory_.get(), name_);
    }

    /// The claim file.
    const std::filesystem::path& path() const noexcept { return options_.file; }
    /// The lock file the registry's lock policy should use.
    const std::filesystem::path& lock_path() const noexcept { return options_.lock_file; }
    /// The lock file a claim file at `file` gets when `claim_file_options::lock_file`
    /// is empty (for tools that must take the same lock without opening the claim).
    static std::filesystem::path default_lock_path(const std::filesystem::path& file) {
        return default_lock_file(file);
    }
    /// The lock file, reached through this storage's own directory
    /// descriptor when it lies in that directory (detail/located_file.hpp).
    detail::located_file lock_location() const {
        return detail::locate(options_.lock_file, directory_.get(), directory_path(options_.file),
                              options_.directory.allow_shared);
    }
    /// The options in force.
    const options& settings() const noexcept { return options_; }
    /// Change source (procreg/watch/target.hpp): the claim file in its directory.
    std::vector<watch_target> watch_targets() const {
        return {watch_target{directory_path(options_.file), name_, {}}};
    }

    /// Reads the claim without taking the lock and without creating anything
    /// (not even the directory). Safe because claims are published whole (a
    /// reader sees the old file or the new one). Missing file or directory is
    /// `absent`; an empty or malformed file is `unparseable`; any other
    /// failure (I/O error, symlink, not a regular file, unsafe directory,
    /// oversized file) throws.
    template <class Record>
    static claim_peek<Record> peek(const options& opts) {
        (void)file_name(opts.file);  // refuses a directory path
        directory_policy policy = opts.directory;
        policy.create = false;
        detail::unique_fd dir;
        try {
            dir = detail::open_directory(directory_path(opts.file), policy);
        } catch (const error& e) {
            if (e.os_error() == ENOENT) return {};
            throw;
        }
        return peek_at<Record>(dir.get(), opts.file, opts);
    }

    /// As the static `peek`, through this storage's open directory.
    template <class Record>
    claim_peek<Record> peek() const {
        return peek_at<Record>(directory_.get(), options_.file, options_);
    }

    /// One transaction's view of the claim: read when created, published by
    /// `commit` (only if changed) with the compare-and-swap protocol above.
    template <class Record>
    class session {
    public:
        /// Loads the claim; the caller holds the registry lock.
        explicit session(claim_file& owner) : owner_(&owner) { load(); }

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

            // 1. The new claim, complete and on disk, under a private name.
            std::string temp;
            std::optional<claim_file_token> written;
            if (pending_) {
                written = write_private(dirfd, temp, *pending_, durable);
            }
            const auto drop_temp = [&] {
                if (!temp.empty()) discard(dirfd, temp);
            };

            // 2. Move the claim we judged out of the way and check it is that claim.
            std::string evicted;
            if (token_) {
                evicted = detail_claim::private_name(owner_->name_);
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

            // 3. Publish: link fails if anyone created the name meanwhile.
            if (pending_) {
                if (detail::sys::linkat(dirfd, temp.c_str(), dirfd, name, 0) != 0) {
                    const int err = errno;
                    drop_temp();
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
                drop_temp();
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
                const std::string aside = detail_claim::private_name(owner_->name_);
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
        // is retried once at once, then left to the next commit's sweep
        // under the lock, or to the next open once this process is dead: a
        // leftover private file is garbage, never a claim.
        void discard(int dirfd, const std::string& private_name) const {
            for (int attempt = 0; attempt < 2; ++attempt) {
                if (detail::sys::unlinkat(dirfd, private_name.c_str(), 0) == 0 || errno == ENOENT) return;
            }
            owner_->sweep_pending_ = true;
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

        claim_file_token write_private(int dirfd, std::string& temp, const std::string& bytes, bool durable) {
            int fd = -1;
            for (int attempt = 0; attempt < 64 && fd < 0; ++attempt) {
                temp = detail_claim::private_name(owner_->name_);
                fd = detail::sys::openat(dirfd, temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                         0600);
                if (fd < 0 && errno != EEXIST) {
                    const int err = errno;
                    temp.clear();
                    detail::throw_os_error(errc::io_failure, path(), "cannot create a temp file", err);
                }
            }
            if (fd < 0) {
                temp.clear();
                detail::throw_os_error(errc::io_failure, path(), "cannot create a unique temp file", EEXIST);
            }
            detail::unique_fd handle(fd);
            // `err` is the errno of the failed call, read before this runs (see detail::throw_os_error).
            const auto fail = [&](std::string_view what, int err) {
                handle.reset();
                discard(dirfd, temp);
                temp.clear();
                detail::throw_os_error(errc::io_failure, path(), what, err);
            };
            if (const int err = detail::write_all(fd, bytes)) fail("cannot write the new claim", err);
            if (durable && detail::sys::fsync(fd) != 0) {
                const int err = errno;
                fail("fsync of the new claim failed; nothing was changed", err);
            }
            struct ::stat st {};
            if (detail::sys::fstat(fd, &st) != 0) {
                const int err = errno;
                fail("cannot stat the new claim", err);
            }
            // A duplicate of the descriptor pins the inode for the token (see
            // claim_file_token): a handle's proof of ownership. Taken before
            // the close, as atomic_replace_at's keep_open, so it is this file
            // by construction (a reopen by name could meet a substitute).
            detail::unique_fd pin(detail::sys::dup_cloexec(fd));
            if (!pin) {
                const int err = errno;
                fail("cannot keep the new claim open", err);
            }
            if (detail::sys::close(handle.release()) != 0) {
                const int err = errno;
                fail("closing the new claim failed; nothing was changed", err);
            }
            return claim_file_token::of(st, bytes, std::make_shared<const detail::unique_fd>(std::move(pin)));
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

        claim_file* owner_;
        std::optional<stored_record<Record>> slot_;
        std::optional<std::string> pending_;
        std::optional<claim_file_token> token_;
        std::vector<skipped_file> skipped_;
        bool dirty_ = false;
    };

    /// Starts a session; the caller holds the registry lock.
    template <class Record>
    session<Record> begin() {
        return session<Record>(*this);
    }

private:
    static std::string file_name(const std::filesystem::path& file) {
        if (file.filename().empty()) {
            throw error(errc::invalid_argument, file, "a claim_file needs a file path, not a directory");
        }
        std::string name = file.filename().string();
        detail::check_storable_name(name, file);
        return name;
    }

    static std::filesystem::path directory_path(const std::filesystem::path& file) {
        auto parent = file.parent_path();
        return parent.empty() ? std::filesystem::path(".") : parent;
    }

    static std::filesystem::path default_lock_file(const std::filesystem::path& file) {
        std::string name = file.filename().string();
        if (name.front() != '.') name.insert(name.begin(), '.');
        return directory_path(file) / (name + ".flock");
    }

    template <class Record>
    static claim_peek<Record> peek_at(int dirfd, const std::filesystem::path& file, const options& opts) {
        const std::string name = file_name(file);
        auto contents = detail::read_file_at(dirfd, file, name.c_str(), opts.max_file_bytes);
        claim_peek<Record> out;
        if (!contents) return out;
        auto stored = detail_claim::decode_claim<Format, Record>(contents->bytes, detail_claim::limits_of(opts),
                                                                 out.reason);
        if (!stored) {
            out.state = claim_state::unparseable;
            return out;
        }
        out.state = claim_state::present;
        out.record = std::move(stored->value);
        return out;
    }

    options options_;
    std::string name_;
    detail::unique_fd directory_;
    bool sweep_pending_ = false;  // private files of a live process may be left: sweep at the next commit
};

}  // namespace procreg::storage
