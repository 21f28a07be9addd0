// procreg/storage/record_files.hpp — one JSON file per record, with a `retired/` tombstone tree.
//
// Layout (AgentMux's `registry/store.rs`):
//
//     <root>/<key>.json            active records
//     <root>/retired/<key>.json    soft-deleted ("retired") records
//     <root>/.registry.lock        the default lock file of the registry
//
// Invariants:
// - a key is a file name only if detail/record_key.hpp's rule accepts it
//   (the strict pattern, or with `record_key_rule::file_name` any name safe
//   as `<key>.json`) and it does not name the lock file; anything else is
//   `errc::invalid_key` before any file is touched;
// - a session is lazy: `find(key)` reads that one file, listing reads the
//   directory once, and no file is read twice in one session; nothing is
//   cached across sessions, so the files stay the single source of truth;
// - changes are buffered and written by `commit()` through the shared
//   publication layer (detail/publish.hpp): each file by the atomic replace
//   protocol (detail::atomic_replace_at) and each move by one rename(2)
//   (detail::move_file_at), so no reader ever sees a torn record and a
//   transaction that throws writes nothing;
// - a file this program must not overwrite — it does not parse, or (when a
//   schema field is configured) lacks that field or carries a version above
//   the highest supported — is never replaced or merged, nor overwritten by
//   a move: `put`, and `retire` / `unretire` onto it, refuse with a
//   `skipped_file` naming the file and the reason, and the file stays byte
//   for byte as it was. As the source of `retire` / `unretire` it is moved,
//   as the AgentMux seed moves any file: a rename keeps its bytes. Symbolic
//   links and other unsafe files are never replaced or moved. Only
//   `hard_delete` removes files regardless of their contents (the operator's
//   explicit "drop both copies");
// - a record whose file its readers would skip (above max_file_bytes, past
//   max_depth, not decodable) is errc::invalid_record before anything is
//   written: the read-back proof uses the readers' limits;
// - keys on disk the record type does not know, at every depth, survive a
//   rewrite (detail::encode_over merges the record over the file as read);
// - listing passes over invalid files (unparseable, unsupported schema,
//   undecodable, key different from the file stem, symlinks, sockets and
//   other non-regular files, files this user may not open) and reports
//   each in `skipped()` with its reason, instead of failing or hiding them.
//
// This header, the one users include, holds the options and the storage;
// the session is in record_files/session.hpp, its tombstone steps in
// record_files/tombstones.hpp, the reading of one file in
// record_files/record_file.hpp and the directory listings in
// record_files/scan.hpp (all included at the end, through the session).
#pragma once

#include <procreg/detail/file_io.hpp>
#include <procreg/detail/located_file.hpp>
#include <procreg/detail/publish.hpp>
#include <procreg/detail/json_codec.hpp>
#include <procreg/detail/record_key.hpp>
#include <procreg/detail/sys.hpp>
#include <procreg/error.hpp>
#include <procreg/record_traits.hpp>
#include <procreg/stored_record.hpp>
#include <procreg/tombstones.hpp>
#include <procreg/watch/target.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace procreg::storage {

/// What `erase(key)` (and therefore `reap()`) does with an active record.
enum class erase_action {
    remove,  ///< delete `<root>/<key>.json` (a retired copy, if any, is left alone)
    retire,  ///< move it to `<root>/retired/<key>.json`, as `retire(key)` does
};

/// Where and how a `record_files` storage keeps its files.
struct record_files_options {
    /// The directory of active records, e.g. `~/.agentmux/agents/registry`.
    /// Created (0700, with missing parents) when absent.
    std::filesystem::path root;
    /// Name of the tombstone directory inside `root` (one path component,
    /// matching the record key pattern). Created (0700) when absent.
    std::string retired_dir = "retired";
    /// The lock file for the registry's lock policy; empty means
    /// `<root>/.registry.lock` (a hidden name, never listed as a record).
    std::filesystem::path lock_file;
    /// The top-level field holding the file's schema version, e.g.
    /// "schema_version". When set, a file whose field is missing, is not a
    /// non-negative integer, or is above `max_schema_version` is never
    /// overwritten or moved, and is skipped (with its reason) when read.
    /// When a record being written does not carry the field itself, the
    /// storage writes `max_schema_version`. Unset: no schema guard.
    std::optional<std::string> schema_field;
    /// The highest schema version this program understands (with `schema_field`).
    std::uint64_t max_schema_version = 0;
    /// What erase (and so reap) does with an active record.
    erase_action on_erase = erase_action::remove;
    /// fsync each new file before its rename and the directories after each
    /// change. Turn off on tmpfs, where nothing survives a reboot anyway.
    bool durable = true;
    /// Record files larger than this are skipped unread (checked with fstat).
    std::size_t max_file_bytes = std::size_t{1} << 20;
    /// Maximum JSON nesting depth accepted in a record file.
    std::size_t max_depth = 32;
    /// Ownership and permission rules for `root` and the retired directory.
    directory_policy directory;
    /// Which keys name files (detail/record_key.hpp): the strict pattern, or
    /// every name safe as `<key>.json` (for a seed whose files need it).
    detail::record_key_rule key_rule = detail::record_key_rule::pattern;
    /// With `record_key_rule::file_name`, the longest key accepted (bytes).
    std::size_t max_key_length = detail::max_record_key_length;
};

/// Storage policy: one JSON file per record under a root directory, and
/// soft-deleted records under `<root>/retired/`. Keeps tombstones, so
/// registries on it offer retire / unretire / hard_delete / exists /
/// exists_anywhere / list_active.
class record_files {
public:
    /// The options type, named uniformly across storages.
    using options = record_files_options;

    /// This storage keeps soft-deleted records (see procreg/tombstones.hpp).
    static constexpr bool keeps_tombstones = true;

    static_assert(detail::max_record_key_length <= detail::max_storable_name_length(5),
                  "a record key with its \".json\" must leave room for the temp name of a write");

    /// Opens `root` and `root/retired` (creating both 0700 when missing,
    /// refusing symlinks and directories other users control) and removes
    /// temp files left by writers that died mid-write (this process's own,
    /// left by a save whose cleanup failed, go at its next commit, under
    /// the lock). Reads no record.
    explicit record_files(options opts) : options_(std::move(opts)) { open(); }

    /// The directory `root` with every other option at its default:
    /// tombstones in `root/retired`, lock file `root/.registry.lock`, erase
    /// removes, fsync on, no schema guard.
    explicit record_files(std::filesystem::path root) : options_{} {
        options_.root = std::move(root);
        open();
    }

    /// The root directory of active records.
    const std::filesystem::path& path() const noexcept { return options_.root; }
    /// The directory of retired records.
    const std::filesystem::path& retired_path() const noexcept { return retired_path_; }
    /// The lock file the registry's lock policy should use.
    const std::filesystem::path& lock_path() const noexcept { return options_.lock_file; }
    /// The lock file, reached through this storage's own directory
    /// descriptor when it lies in that directory (detail/located_file.hpp).
    detail::located_file lock_location() const {
        return detail::locate(options_.lock_file, root_.get(), options_.root, options_.directory.allow_shared);
    }
    /// The options in force.
    const options& settings() const noexcept { return options_; }
    /// Change source (procreg/watch/target.hpp): the `.json` files of the
    /// root and of the retired directory.
    std::vector<watch_target> watch_targets() const {
        return {watch_target{options_.root, {}, ".json"}, watch_target{retired_path_, {}, ".json"}};
    }

    /// One transaction's view of the files (procreg/storage/record_files/session.hpp).
    /// Reads lazily (only the files a step needs), buffers changes, and
    /// applies them in `commit()`.
    template <class Record>
    class session;


    /// Starts a session; the caller holds the registry lock. Reads nothing.
    template <class Record>
    session<Record> begin() {
        return session<Record>(*this);
    }

private:
    // What both constructors do once the options are complete.
    void open() {
        if (options_.root.empty()) throw error(errc::invalid_argument, options_.root, "record_files needs a root directory");
        if (options_.max_key_length > detail::max_storable_name_length(5)) {
            throw error(errc::invalid_argument, options_.root,
                        "max_key_length " + std::to_string(options_.max_key_length) + " is above " +
                            std::to_string(detail::max_storable_name_length(5)) +
                            ", the longest key whose file and temp file fit NAME_MAX");
        }
        if (!detail::is_valid_record_key(options_.retired_dir)) {
            throw error(errc::invalid_key, options_.root,
                        "retired_dir " + detail::quote_record_key(options_.retired_dir) +
                            " must be one plain directory name matching " + detail::record_key_pattern);
        }
        if (options_.lock_file.empty()) options_.lock_file = options_.root / ".registry.lock";
        detail::check_lock_file(options_.lock_file, options_.root);
        retired_path_ = options_.root / options_.retired_dir;
        root_ = detail::open_directory(options_.root, options_.directory);
        retired_ = detail::open_directory(retired_path_, options_.directory);
        // Both directories are swept (no short-circuit; clang's -Wall
        // refuses a bitwise | on bools).
        const bool root_left = detail::sweep_temps_of_any_target(root_.get(), ".json", false);
        const bool retired_left = detail::sweep_temps_of_any_target(retired_.get(), ".json", false);
        sweep_own_ = root_left || retired_left;
    }

    options options_;
    std::filesystem::path retired_path_;
    detail::unique_fd root_;
    detail::unique_fd retired_;
    bool sweep_own_ = false;  // temp files of this process may be left: sweep them at the next commit
};

}  // namespace procreg::storage

#include <procreg/storage/record_files/session.hpp>  // and, from there, the members it defines apart
