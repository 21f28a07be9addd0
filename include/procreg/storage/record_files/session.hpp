// procreg/storage/record_files/session.hpp — one transaction's view of a
// record_files directory: the lazy reads, the buffered steps, and the
// commit that publishes them (detail/publish.hpp).
//
// Internal to procreg/storage/record_files.hpp, which includes it and
// whose invariants it keeps; users include that header. The tombstone
// steps are defined in record_files/tombstones.hpp, the reading and
// judging of one file in record_files/record_file.hpp, the directory
// listings in record_files/scan.hpp.
#pragma once

// The storage first: this header defines its members. (Included on its own,
// the storage header includes this one back, which #pragma once skips.)
#include <procreg/storage/record_files.hpp>

#include <procreg/detail/file_io.hpp>
#include <procreg/detail/json_codec.hpp>
#include <procreg/detail/publish.hpp>
#include <procreg/detail/record_key.hpp>
#include <procreg/detail/temp_files.hpp>
#include <procreg/error.hpp>
#include <procreg/stored_record.hpp>
#include <procreg/tombstones.hpp>

#include <boost/json.hpp>

#include <cstddef>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace procreg::storage {

/// One transaction's view of the files. Reads lazily (only the files a
/// step needs), buffers changes, and applies them in `commit()`.
template <class Record>
class record_files::session {
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
    tombstone_result retire(std::string_view key);

    /// Moves `retired/<key>.json` back to `<key>.json`. Idempotent:
    /// without a retired file it does nothing (`unchanged`). As
    /// `retire`: the file moves whatever it holds, but not an unsafe
    /// file, and not over an active file that must not be overwritten.
    tombstone_result unretire(std::string_view key);

    /// Removes both `<key>.json` and `retired/<key>.json`, whatever they
    /// contain; true when at least one existed. Idempotent.
    bool hard_delete(std::string_view key);

    /// Calls `visit(const stored_record<Record>&)` for each valid retired
    /// record, in key order (reads the retired directory; invalid files
    /// are passed over, as listing passes over active ones).
    template <class Visit>
    void for_each_retired(Visit&& visit) const;

    /// Whether `<key>.json` exists, valid or not (the seed's `exists`).
    bool exists(std::string_view key) const { return active_of(key).kind != file_kind::absent; }

    /// Whether `<key>.json` or `retired/<key>.json` exists, valid or not.
    bool exists_anywhere(std::string_view key) const;

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

    // The key is checked here, before any file is touched. No key names the
    // lock file: a lock file with a `.json` name is refused at open
    // (detail::check_lock_file), and every record file's name ends so.
    slot& slot_of(std::string_view key) const {
        const auto& opts = files_->options_;
        detail::check_record_key(key, opts.root, opts.key_rule, opts.max_key_length);
        auto found = slots_.find(key);
        if (found != slots_.end()) return found->second;
        return slots_.emplace(std::string(key), slot{}).first->second;
    }

    // retire (`retiring`) or unretire (record_files/tombstones.hpp).
    tombstone_result move_between(std::string_view key, bool retiring);

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
    file_state read_state(int dirfd, const std::filesystem::path& dir, std::string_view key) const;

    // Empty when the schema field is acceptable, else why not.
    std::string schema_problem(const boost::json::object& object) const;

    // The text of `<key>.json` for `value` merged over `base` (with the
    // schema field when the record lacks it; that object in `encoded`),
    // proven to read back before anything is written.
    std::string encode(const boost::json::object& base, const Record& value, const std::string& key,
                       boost::json::object& encoded) const;

    static std::string without_path(const error& e, const std::filesystem::path& file);

    void add_op(slot& s, std::string_view key, op step) {
        if (s.pending.empty()) dirty_.emplace_back(key);
        s.pending.push_back(std::move(step));
    }

    // The keys of the retired directory's record files, sorted (invalid
    // names are passed over: only for_each_retired lists this directory).
    std::vector<std::string> retired_keys() const;

    // Lists `root` once and reads every record file not yet read.
    void scan() const;


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
            detail::move_file_at(root, files_->options_.root, retired, files_->retired_path_, name,
                                 files_->options_.durable, &left_temp);
            note_left_temp(left_temp);
            return;
        case op_kind::unretire:
            detail::move_file_at(retired, files_->retired_path_, root, files_->options_.root, name,
                                 files_->options_.durable, &left_temp);
            note_left_temp(left_temp);
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

}  // namespace procreg::storage

// The members defined apart, once the session is complete.
#include <procreg/storage/record_files/record_file.hpp>
#include <procreg/storage/record_files/scan.hpp>
#include <procreg/storage/record_files/tombstones.hpp>
