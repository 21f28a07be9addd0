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
// - changes are buffered and written by `commit()`, each file by the atomic
//   replace protocol (detail::atomic_replace_at) and each move by one
//   rename(2), so no reader ever sees a torn record and a transaction that
//   throws writes nothing;
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

    /// One transaction's view of the files. Reads lazily (only the files a
    /// step needs), buffers changes, and applies them in `commit()`.
    template <class Record>
    class session {
    public:
        /// Sessions of this storage offer the tombstone operations.
        static constexpr bool keeps_tombstones = true;

        /// Used by `record_files::begin`; reads nothing.
        explicit session(record_files& files) : files_(&files) {}

        /// The valid active record with `key`, or null (no file, or a file
        /// that was skipped: see `skipped()`). Reads at most `<key>.json`.
        /// Throws `errc::invalid_key` for a key that is not a safe file name.
        const stored_record<Record>* find(std::string_view key) const {
            file_state& active = active_of(key);
            return active.kind == file_kind::valid ? &*active.record : nullptr;
        }

        /// Calls `visit(const stored_record<Record>&)` for each valid active
        /// record, in key order. Reads the directory (once per session).
        template <class Visit>
        void for_each(Visit&& visit) const {
            scan();
            for (auto& item : slots_) {
                if (item.second.active.kind == file_kind::valid) visit(*item.second.active.record);
            }
        }

        /// Adds or replaces `<key>.json`, merging the record over the file as
        /// it is on disk so unknown keys survive. Returns the refusal, and
        /// changes nothing, when that file must not be overwritten (see the
        /// file comment). Written by `commit()`.
        std::optional<skipped_file> put(stored_record<Record> entry) {
            const std::string key(detail::key_of(entry.value));
            slot& s = slot_of(key);
            file_state& active = load_active(s, key);
            if (!active.writable()) return skipped_file{active_file(key), "not overwritten: " + active.reason};
            // entry.json is the file as this session read it (or empty for a
            // new record), minus what stamp_identity removed on purpose: it
            // must not be merged with the file again. A file that parsed but
            // did not decode still gives its unknown keys.
            boost::json::object base = std::move(entry.json);
            if (active.kind == file_kind::not_a_record) detail::merge_under<Record>(base, active.raw);
            boost::json::object encoded;
            std::string text = encode(base, entry.value, key, encoded);
            active = file_state::holding(stored_record<Record>{std::move(entry.value), std::move(encoded)});
            if (!s.pending.empty() && s.pending.back().kind == op_kind::write_active) {
                s.pending.back().bytes = std::move(text);  // a later write of the same file supersedes
            } else {
                add_op(s, key, op{op_kind::write_active, std::move(text)});
            }
            return std::nullopt;
        }

        /// Creates `<key>.json` now, without reading it first, with a rename
        /// that never replaces (detail::if_target_exists::keep): "is the key
        /// free?" and "create it" are one atomic step and cost no lookup of
        /// their own. Returns true when created; false, having written
        /// nothing, when the file exists (the caller then inserts the
        /// ordinary way, reading the file, so a duplicate, a file not to
        /// overwrite or one to merge over is handled as always); nothing
        /// when it declines: unless this is the session's first step (so no
        /// change of the session's own is ordered before it) or when the
        /// record does not encode (the ordinary insert then reports what an
        /// insert reports).
        std::optional<bool> create_if_absent(stored_record<Record> entry) {
            if (!slots_.empty() || scanned_) return std::nullopt;
            const std::string key(detail::key_of(entry.value));
            slot& s = slot_of(key);
            boost::json::object encoded;
            std::string text;
            try {
                text = encode(entry.json, entry.value, key, encoded);
            } catch (const error& e) {
                if (e.code() != errc::invalid_record) throw;
                return std::nullopt;
            }
            const std::string name = key + ".json";
            bool created = false;
            try {
                created = detail::atomic_write_at(files_->root_.get(), detail::path_ref(files_->options_.root, name),
                                                  name.c_str(), text, files_->options_.durable,
                                                  detail::if_target_exists::keep);
            } catch (...) {
                files_->sweep_own_ = true;  // the failed write may have left its temp file
                throw;
            }
            if (created) s.active = file_state::holding(stored_record<Record>{std::move(entry.value), std::move(encoded)});
            return created;
        }

        /// Removes the valid active record with `key` (or retires it, when
        /// `on_erase` is `erase_action::retire`); false when there is none.
        /// A file that is not a valid record is not a record: it is left alone.
        bool erase(std::string_view key) {
            slot& s = slot_of(key);
            file_state& active = load_active(s, key);
            if (active.kind != file_kind::valid) return false;
            if (files_->options_.on_erase == erase_action::retire) {
                tombstone_result moved = retire(key);
                if (moved.status == tombstone_status::skipped) {
                    throw error(errc::unsupported_file, moved.skipped->path, moved.skipped->reason,
                                error::details{std::string(key), {}, 0});
                }
                return true;
            }
            active = file_state::absent();
            add_op(s, key, op{op_kind::remove_active, {}});
            return true;
        }

        /// Number of valid active records. Reads the directory (once per session).
        std::size_t size() const {
            scan();
            std::size_t count = 0;
            for (const auto& item : slots_) count += item.second.active.kind == file_kind::valid ? 1 : 0;
            return count;
        }

        /// Every file passed over, with its reason: all of them in the active
        /// directory (this reads the directory, once per session), plus any
        /// retired file a step had to read.
        const std::vector<skipped_file>& skipped() const {
            scan();
            return skipped_;
        }

        /// The root directory, for error messages.
        const std::filesystem::path& path() const noexcept { return files_->path(); }

        /// Moves `<key>.json` to `retired/<key>.json`. Idempotent: without an
        /// active file it does nothing (`unchanged`). The file moves whatever
        /// it holds (a rename keeps its bytes: nothing is lost), but not a
        /// symbolic link or other unsafe file, and not over a retired copy
        /// that must not be overwritten (`skipped`).
        tombstone_result retire(std::string_view key) {
            slot& s = slot_of(key);
            file_state& active = load_active(s, key);
            if (active.kind == file_kind::absent) return {tombstone_status::unchanged, std::nullopt};
            if (!active.movable()) {
                return {tombstone_status::skipped, skipped_file{active_file(key), "not retired: " + active.reason}};
            }
            file_state& retired = load_retired(s, key);
            if (!retired.writable()) {
                return {tombstone_status::skipped,
                        skipped_file{retired_file(key), "not overwritten by retire: " + retired.reason}};
            }
            retired = std::move(active);
            active = file_state::absent();
            add_op(s, key, op{op_kind::retire, {}});
            return {tombstone_status::moved, std::nullopt};
        }

        /// Moves `retired/<key>.json` back to `<key>.json`. Idempotent:
        /// without a retired file it does nothing (`unchanged`). As
        /// `retire`: the file moves whatever it holds, but not an unsafe
        /// file, and not over an active file that must not be overwritten.
        tombstone_result unretire(std::string_view key) {
            slot& s = slot_of(key);
            file_state& retired = load_retired(s, key);
            if (retired.kind == file_kind::absent) return {tombstone_status::unchanged, std::nullopt};
            if (!retired.movable()) {
                return {tombstone_status::skipped,
                        skipped_file{retired_file(key), "not unretired: " + retired.reason}};
            }
            file_state& active = load_active(s, key);
            if (!active.writable()) {
                return {tombstone_status::skipped,
                        skipped_file{active_file(key), "not overwritten by unretire: " + active.reason}};
            }
            active = std::move(retired);
            retired = file_state::absent();
            add_op(s, key, op{op_kind::unretire, {}});
            return {tombstone_status::moved, std::nullopt};
        }

        /// Removes both `<key>.json` and `retired/<key>.json`, whatever they
        /// contain; true when at least one existed. Idempotent.
        bool hard_delete(std::string_view key) {
            slot& s = slot_of(key);
            file_state& active = load_active(s, key);
            file_state& retired = load_retired(s, key);
            bool removed = false;
            if (active.kind != file_kind::absent) {
                active = file_state::absent();
                add_op(s, key, op{op_kind::remove_active, {}});
                removed = true;
            }
            if (retired.kind != file_kind::absent) {
                retired = file_state::absent();
                add_op(s, key, op{op_kind::remove_retired, {}});
                removed = true;
            }
            return removed;
        }

        /// Calls `visit(const stored_record<Record>&)` for each valid retired
        /// record, in key order (reads the retired directory; invalid files
        /// are passed over, as listing passes over active ones).
        template <class Visit>
        void for_each_retired(Visit&& visit) const {
            for (const std::string& key : retired_keys()) {
                const file_state& retired = load_retired(slot_of(key), key);
                if (retired.kind == file_kind::valid) visit(*retired.record);
            }
        }

        /// Whether `<key>.json` exists, valid or not (the seed's `exists`).
        bool exists(std::string_view key) const { return active_of(key).kind != file_kind::absent; }

        /// Whether `<key>.json` or `retired/<key>.json` exists, valid or not.
        bool exists_anywhere(std::string_view key) const {
            slot& s = slot_of(key);
            return load_active(s, key).kind != file_kind::absent || load_retired(s, key).kind != file_kind::absent;
        }

        /// Applies the buffered changes: each written file by the atomic
        /// replace protocol, each retire/unretire by one rename, each removal
        /// by one unlink, in the order the steps made them for each key. A
        /// no-op when nothing changed. Each file change is atomic; if one
        /// fails, the changes before it stay applied and the error says which.
        void commit() {
            if (dirty_.empty()) return;
            if (files_->sweep_own_) {
                // Temp files this process left (a save whose cleanup failed,
                // e.g. on a failing disk): under the lock none of its saves
                // is running, so they are garbage. Other live processes'
                // temp files are theirs to remove (record_files also serves
                // writers that rely on atomic rename alone, without the lock).
                detail::sweep_temps_of_any_target(files_->root_.get(), ".json", true);
                detail::sweep_temps_of_any_target(files_->retired_.get(), ".json", true);
                files_->sweep_own_ = false;
            }
            try {
                for (const std::string& key : dirty_) {
                    slot& s = slots_.at(key);
                    for (const op& step : s.pending) apply(key, step);
                    s.pending.clear();
                }
            } catch (...) {
                files_->sweep_own_ = true;  // the failed save may have left its temp file
                throw;
            }
            dirty_.clear();
        }

    private:
        enum class file_kind : unsigned char {
            unknown,             // not read yet
            absent,              // no file
            valid,               // a record
            not_a_record,        // parsed, of a supported schema, but does not decode or has another key:
                                 // skipped, yet may be overwritten (its unknown keys kept) or removed
            must_not_overwrite,  // unparseable or of an unsupported schema: skipped, never replaced; moved
                                 // only as the source of retire / unretire (a rename keeps its bytes)
            unsafe,              // a symbolic link, not a regular file, too large or unreadable: never
                                 // replaced or moved
        };

        // One side (active or retired) of one key, as read in this session
        // and changed by its steps.
        struct file_state {
            file_kind kind = file_kind::unknown;
            std::optional<stored_record<Record>> record;  // when valid
            boost::json::object raw;                      // when not_a_record: kept under a rewrite
            std::string reason;                           // when skipped (not_a_record, must_not_overwrite)

            static file_state absent() { return file_state{file_kind::absent, std::nullopt, {}, {}}; }
            static file_state holding(stored_record<Record> record) {
                return file_state{file_kind::valid, std::move(record), {}, {}};
            }
            bool writable() const noexcept {
                return kind != file_kind::must_not_overwrite && kind != file_kind::unsafe;
            }
            // A move (retire / unretire) may take it: a regular file, whatever it holds.
            bool movable() const noexcept { return kind != file_kind::absent && kind != file_kind::unsafe; }
        };

        enum class op_kind : unsigned char { write_active, remove_active, remove_retired, retire, unretire };
        struct op {
            op_kind kind;
            std::string bytes;  // for write_active
        };

        struct slot {
            file_state active;
            file_state retired;
            std::vector<op> pending;
        };

        std::filesystem::path active_file(std::string_view key) const {
            return files_->options_.root / (std::string(key) + ".json");
        }
        std::filesystem::path retired_file(std::string_view key) const {
            return files_->retired_path_ / (std::string(key) + ".json");
        }

        // The key is checked here, before any file is touched.
        slot& slot_of(std::string_view key) const {
            const auto& opts = files_->options_;
            detail::check_record_key(key, opts.root, opts.key_rule, opts.max_key_length);
            if (opts.lock_file == opts.root / (std::string(key) + ".json")) {
                throw error(errc::invalid_key, opts.root,
                            "record key " + detail::quote_record_key(key) + " names the registry's lock file",
                            error::details{std::string(key), {}, 0});
            }
            auto found = slots_.find(key);
            if (found != slots_.end()) return found->second;
            return slots_.emplace(std::string(key), slot{}).first->second;
        }

        file_state& active_of(std::string_view key) const { return load_active(slot_of(key), key); }

        file_state& load_active(slot& s, std::string_view key) const {
            if (s.active.kind == file_kind::unknown) {
                s.active = read_state(files_->root_.get(), files_->options_.root, key);
            }
            return s.active;
        }

        file_state& load_retired(slot& s, std::string_view key) const {
            if (s.retired.kind == file_kind::unknown) {
                s.retired = read_state(files_->retired_.get(), files_->retired_path_, key);
            }
            return s.retired;
        }

        // Reads and classifies `<dir>/<key>.json` (`dirfd` is `dir` open).
        // Never throws for a file's contents, kind or permissions (those make
        // it `invalid`, reported in skipped_); throws only when the system
        // fails (errc::io_failure). The file's path is built only for a
        // report or an error.
        file_state read_state(int dirfd, const std::filesystem::path& dir, std::string_view key) const {
            const auto& opts = files_->options_;
            const std::string name = std::string(key) + ".json";
            const auto refuse = [&](std::string reason, file_kind kind, boost::json::object raw = {}) {
                skipped_.push_back(skipped_file{dir / name, reason});
                return file_state{kind, std::nullopt, std::move(raw), std::move(reason)};
            };
            std::optional<detail::file_contents> contents;
            try {
                contents = detail::read_file_at(dirfd, detail::path_ref(dir, name), name.c_str(), opts.max_file_bytes);
            } catch (const error& e) {
                // A file this user may not open is passed over like any other
                // unreadable file: one such file must not stop every operation.
                const bool forbidden =
                    e.code() == errc::io_failure && (e.os_error() == EACCES || e.os_error() == EPERM);
                if (forbidden) return refuse(without_path(e, dir / name), file_kind::must_not_overwrite);
                if (e.code() != errc::unsafe_path && e.code() != errc::corrupted_file) throw;
                return refuse(without_path(e, dir / name), file_kind::unsafe);
            }
            if (!contents) return file_state::absent();
            std::string parse_error;
            auto parsed = detail::parse_json(contents->bytes, detail::json_limits{opts.max_depth}, parse_error);
            if (!parsed) return refuse("cannot parse JSON: " + parse_error, file_kind::must_not_overwrite);
            if (!parsed->is_object()) return refuse("top level is not a JSON object", file_kind::must_not_overwrite);
            boost::json::object& object = parsed->as_object();
            if (opts.schema_field) {
                std::string why = schema_problem(object);
                if (!why.empty()) return refuse(std::move(why), file_kind::must_not_overwrite);
            }
            std::optional<Record> value;
            try {
                value.emplace(detail::decode_value<Record>(*parsed, ""));
            } catch (const detail::decode_error& e) {
                return refuse(std::string("cannot decode the record: ") + e.what(), file_kind::not_a_record,
                              std::move(object));
            }
            const std::string_view inner_key = detail::key_of(*value);
            if (inner_key != key) {
                return refuse("the record's key " + detail::quote_record_key(inner_key) +
                                  " differs from the file name's " + detail::quote_record_key(key),
                              file_kind::not_a_record, std::move(object));
            }
            return file_state::holding(stored_record<Record>{std::move(*value), std::move(object)});
        }

        // Empty when the schema field is acceptable, else why not.
        std::string schema_problem(const boost::json::object& object) const {
            const auto& opts = files_->options_;
            const std::string& field = *opts.schema_field;
            const auto found = object.find(field);
            if (found == object.end()) return "no \"" + field + "\" field, so its schema is unknown";
            const boost::json::value& v = found->value();
            std::uint64_t version = 0;
            if (v.is_uint64()) {
                version = v.get_uint64();
            } else if (v.is_int64() && v.get_int64() >= 0) {
                version = static_cast<std::uint64_t>(v.get_int64());
            } else {
                return "\"" + field + "\" is not a non-negative integer";
            }
            if (version > opts.max_schema_version) {
                return "\"" + field + "\" is " + std::to_string(version) + ", above the highest this program " +
                       "supports (" + std::to_string(opts.max_schema_version) + ")";
            }
            return {};
        }

        // The text of `<key>.json` for `value` merged over `base` (with the
        // schema field when the record lacks it; that object in `encoded`),
        // proven to read back before anything is written.
        std::string encode(const boost::json::object& base, const Record& value, const std::string& key,
                           boost::json::object& encoded) const {
            const auto& opts = files_->options_;
            try {
                encoded = detail::merge_over(base, value);
                if (opts.schema_field && !encoded.contains(*opts.schema_field)) {
                    encoded[*opts.schema_field] = opts.max_schema_version;
                }
                std::string text = detail::pretty_print(encoded);
                text += '\n';
                // Held to the limits a reader applies to the file (read_state).
                detail::read_back<Record>(text, detail::json_limits{opts.max_depth, opts.max_file_bytes});
                return text;
            } catch (const detail::decode_error& e) {
                throw error(errc::invalid_record, active_file(key), std::string("cannot store the record: ") + e.what(),
                            error::details{key, {}, 0});
            }
        }

        static std::string without_path(const error& e, const std::filesystem::path& file) {
            std::string text = e.what();
            const std::string prefix = detail::shown_path(file.native()) + ": ";  // as error::what() shows it
            if (text.compare(0, prefix.size(), prefix) == 0) text.erase(0, prefix.size());
            return text;
        }

        void add_op(slot& s, std::string_view key, op step) {
            if (s.pending.empty()) dirty_.emplace_back(key);
            s.pending.push_back(std::move(step));
        }

        // Lists `root` once and reads every record file not yet read.
        // The keys of the retired directory's record files, sorted (invalid
        // names are passed over: only for_each_retired lists this directory).
        std::vector<std::string> retired_keys() const {
            std::vector<std::string> keys;
            DIR* stream = detail::sys::fdopendir_dup(files_->retired_.get());
            if (!stream) detail::throw_os_error(errc::io_failure, files_->retired_path_, "cannot list directory", errno);
            for (;;) {
                errno = 0;
                const dirent* entry = ::readdir(stream);
                if (!entry) break;
                const std::string_view name(entry->d_name);
                if (name.size() <= 5 || name.front() == '.' || name.substr(name.size() - 5) != ".json") continue;
                if (entry->d_type == DT_DIR) continue;
                const std::string_view stem = name.substr(0, name.size() - 5);
                if (detail::is_valid_record_key(stem)) keys.emplace_back(stem);
            }
            const int err = errno;
            ::closedir(stream);
            if (err != 0) detail::throw_os_error(errc::io_failure, files_->retired_path_, "cannot list directory", err);
            std::sort(keys.begin(), keys.end());
            return keys;
        }

        void scan() const {
            if (scanned_) return;
            const auto& root = files_->options_.root;
            std::vector<std::string> keys;
            DIR* stream = detail::sys::fdopendir_dup(files_->root_.get());
            if (!stream) {
                const int err = errno;
                detail::throw_os_error(errc::io_failure, root, "cannot list directory", err);
            }
            for (;;) {
                errno = 0;
                const dirent* entry = ::readdir(stream);
                if (!entry) break;
                const std::string_view name(entry->d_name);
                if (name.size() <= 5 || name.substr(name.size() - 5) != ".json") continue;
                if (entry->d_type == DT_DIR) continue;
                const std::string_view stem = name.substr(0, name.size() - 5);
                const auto& opts = files_->options_;
                if (!detail::is_accepted_record_key(stem, opts.key_rule, opts.max_key_length)) {
                    // Hidden names the rule refuses (procreg's temp files among them) are passed over.
                    if (name.front() == '.') continue;
                    const char* why = opts.key_rule == detail::record_key_rule::pattern
                                          ? detail::record_key_pattern
                                          : detail::file_name_key_problem(stem, opts.max_key_length);
                    skipped_.push_back(skipped_file{root / std::string(name),
                                                    "file name is not a valid record key (" + std::string(why) + ")"});
                    continue;
                }
                keys.emplace_back(stem);
            }
            const int err = errno;
            ::closedir(stream);
            if (err != 0) detail::throw_os_error(errc::io_failure, root, "cannot list directory", err);
            for (const std::string& key : keys) load_active(slots_[key], key);
            scanned_ = true;
        }

        // Moves `name` from the directory `from` (descriptor `from_dir`) to
        // `to`. A failed directory fsync moves it back (detail::throw_unsynced:
        // the one rule of docs/errors.md).
        void move_file(int from_dir, const std::filesystem::path& from, int to_dir, const std::filesystem::path& to,
                       const std::string& name) const {
            const bool durable = files_->options_.durable;
            // A move may replace the file at its destination; until both
            // directories are synced that file stays reachable under a
            // private name, so that an undo restores it too.
            std::string kept;
            if (durable) {
                kept = detail::temp_prefix(name) + detail::temp_writer_tag();
                if (detail::sys::linkat(to_dir, name.c_str(), to_dir, kept.c_str(), 0) != 0) kept.clear();
            }
            if (detail::sys::renameat(from_dir, name.c_str(), to_dir, name.c_str()) != 0) {
                const int err = errno;
                if (!kept.empty()) (void)detail::discard_private(to_dir, kept);
                detail::throw_os_error(errc::io_failure, from / name, "cannot move to " + (to / name).string(), err);
            }
            if (!durable) return;
            for (const auto& [dirfd, dir] : {std::pair<int, const std::filesystem::path*>{to_dir, &to},
                                             std::pair<int, const std::filesystem::path*>{from_dir, &from}}) {
                if (detail::sys::fsync(dirfd) != 0) {
                    const int err = errno;
                    bool undone = detail::sys::renameat(to_dir, name.c_str(), from_dir, name.c_str()) == 0;
                    if (undone && !kept.empty()) {
                        undone = detail::sys::renameat(to_dir, kept.c_str(), to_dir, name.c_str()) == 0;
                    } else if (!kept.empty()) {
                        (void)detail::discard_private(to_dir, kept);
                    }
                    detail::throw_unsynced(detail::path_ref(*dir, name), undone, err);
                }
            }
            if (!kept.empty()) note_left_temp(!detail::discard_private(to_dir, kept));
        }

        // Records that a private name could not be removed after a
        // success: this process's temp files go at the next commit.
        void note_left_temp(bool left) const {
            if (left) files_->sweep_own_ = true;
        }

        void apply(const std::string& key, const op& step) const {
            const std::string name = key + ".json";
            const int root = files_->root_.get();
            const int retired = files_->retired_.get();
            bool left_temp = false;
            switch (step.kind) {
            case op_kind::write_active:
                detail::atomic_replace_at(root, detail::path_ref(files_->options_.root, name), name.c_str(), step.bytes,
                                          files_->options_.durable, nullptr, &left_temp);
                note_left_temp(left_temp);
                return;
            case op_kind::remove_active:
                (void)detail::remove_file_durably_at(root, detail::path_ref(files_->options_.root, name), name.c_str(),
                                                     files_->options_.durable, &left_temp);
                note_left_temp(left_temp);
                return;
            case op_kind::remove_retired:
                (void)detail::remove_file_durably_at(retired, detail::path_ref(files_->retired_path_, name),
                                                     name.c_str(), files_->options_.durable, &left_temp);
                note_left_temp(left_temp);
                return;
            case op_kind::retire:
                move_file(root, files_->options_.root, retired, files_->retired_path_, name);
                return;
            case op_kind::unretire:
                move_file(retired, files_->retired_path_, root, files_->options_.root, name);
                return;
            }
        }

        record_files* files_;
        // std::map: ordered listing, and pointers returned by find() stay
        // valid while other keys are added.
        mutable std::map<std::string, slot, std::less<>> slots_;
        mutable std::vector<skipped_file> skipped_;
        mutable bool scanned_ = false;
        std::vector<std::string> dirty_;  // keys with pending ops, in first-change order
    };

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
