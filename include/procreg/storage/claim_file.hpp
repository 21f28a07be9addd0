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
//   first phase) cannot be overwritten. Both steps are the shared
//   publication layer's (detail/publish.hpp: write_temp_at,
//   link_if_absent), as for every file storage;
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
// The formats are in claim_file/formats.hpp, the acquire/release protocol
// (the session and its commit) in claim_file/session.hpp; this header, the
// one users include, includes both. See docs/storage-claim-file.md for the
// protocol and what it guarantees against programs that do not take the lock.
#pragma once

#include <procreg/detail/file_io.hpp>
#include <procreg/detail/json_strict_parse.hpp>
#include <procreg/detail/located_file.hpp>
#include <procreg/detail/temp_files.hpp>
#include <procreg/error.hpp>
#include <procreg/record_traits.hpp>
#include <procreg/storage/claim_file/formats.hpp>
#include <procreg/stored_record.hpp>
#include <procreg/watch/target.hpp>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/stat.h>

namespace procreg::storage {

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

/// The limits a claim file is read with, and so written with.
inline detail::json_limits limits_of(const claim_file_options& opts) {
    return detail::json_limits{opts.max_depth, opts.max_file_bytes};
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

    /// One transaction's view of the claim (procreg/storage/claim_file/session.hpp):
    /// read when created, published by `commit` (only if changed) with the
    /// compare-and-swap protocol above.
    template <class Record>
    class session;

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

#include <procreg/storage/claim_file/session.hpp>
