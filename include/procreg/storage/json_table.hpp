// procreg/storage/json_table.hpp — the whole table in one JSON file.
//
// Layout: `{"<array_key>": [ {record}, ... ], <other keys kept as found>}`,
// e.g. algocline's `{"sessions": [...]}`. A missing file is an empty table.
//
// Invariants:
// - the file is only ever replaced whole by the atomic replace protocol
//   (detail/file_io.hpp), so a reader, or a process that crashed mid-save,
//   leaves either the old or the new table, never a torn one;
// - a file that exists but does not parse, is too large or too deep, or
//   holds two records with one key, is an error naming the path and the
//   cause — never an empty table — and is left untouched;
// - no commit writes such a file: a record is proven to read back within
//   max_depth less the two levels the file wraps it in, and the rendered
//   table within max_file_bytes, before the replace (errc::invalid_record);
// - top-level keys other than the array, and per-record keys the record type
//   does not know, are written back as they were read;
// - the directory is 0700 and only this user's (detail::open_directory),
//   the file 0600.
//
// The unchanged-file shortcut (`reuse_unchanged`, on by default). Parsing
// and re-encoding the whole table is what makes a transaction on a large
// table slow, so between transactions the storage keeps what the last one
// saw: the decoded records, each record's encoded text, and the identity of
// the file they match — device, inode, size, mtime and ctime, taken by fstat
// on the descriptor the file was read from or written through (never by
// name, so no other file can be substituted). The next session, under the
// lock, compares that identity with an fstatat of the name and on a match
// starts from the kept state without reading the file; anything else (another
// process or registry object replaced the file, it was edited, it is gone)
// reloads as before. A commit encodes only the records that changed and
// reuses the kept text of the others, so its output is byte for byte what a
// full re-encode writes. When another process wrote the file, the reload
// first reads it as an edit of the kept text and, when the edit lies in one
// stretch of records, patches the kept state (detail/read_edit.hpp,
// detail/json_table/patch.hpp); otherwise the direct load
// (detail/json_table/load.hpp) moves over from the kept state every record
// whose bytes are unchanged, reads a plain record in the pretty format
// straight from its bytes, and keeps each record's bytes as its text when
// they are exactly its encoding, so the first save copies them through.
// Invariants of the shortcut:
// - the kept state is always exactly the contents of the file whose identity
//   is kept: it is handed back only by a session that is clean (nothing
//   changed since its load, or everything committed); a session that throws
//   before committing, or whose commit fails, drops it, so a failed
//   transaction can never leave a modified state behind;
// - the kept descriptor pins the inode: while it is open the inode number
//   cannot be freed and given to another file (ext4 reuses numbers at
//   once), so a matching (device, inode) at the name is the very same file.
//   Writers of this format never modify the file in place (they replace
//   it), and any in-place write changes mtime and ctime. The residual risk is
//   a writer outside the protocol that rewrites the file in place, keeping
//   its size, within one tick of the filesystem's timestamp clock (a few ms
//   on ext4 and tmpfs) after our last read or write of it; ctime cannot be
//   set from user space, so this needs both a foreign in-place writer and
//   that timing. Turn `reuse_unchanged` off where such writers exist, or on
//   filesystems whose timestamps or inode numbers are not reliable (some
//   network and FUSE filesystems). The cost is one open descriptor per
//   storage object and, until the next transaction, the space of a
//   replaced file that it pins.
#pragma once

#include <procreg/detail/file_io.hpp>
#include <procreg/detail/located_file.hpp>
#include <procreg/detail/publish.hpp>
#include <procreg/detail/json_codec.hpp>
#include <procreg/detail/json_table/load.hpp>
#include <procreg/detail/json_table/patch.hpp>
#include <procreg/detail/json_table/save.hpp>
#include <procreg/detail/json_table/state.hpp>
#include <procreg/error.hpp>
#include <procreg/record_traits.hpp>
#include <procreg/stored_record.hpp>
#include <procreg/watch/target.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/stat.h>

namespace procreg::storage {

/// Where and how a `json_table` keeps its file.
struct json_table_options {
    /// The table file, e.g. `$XDG_RUNTIME_DIR/app/registry.json`. Its directory
    /// is created (0700) when missing.
    std::filesystem::path file;
    /// The key of the records array in the top-level object.
    std::string array_key = "records";
    /// The lock file; empty means `file` with its extension replaced by `.lock`.
    std::filesystem::path lock_file;
    /// fsync the file before and the directory after each replace. Turn off
    /// on tmpfs, where nothing survives a reboot anyway.
    bool durable = true;
    /// Files larger than this are refused unread (checked with fstat).
    std::size_t max_file_bytes = std::size_t{64} << 20;
    /// Maximum JSON nesting depth accepted.
    std::size_t max_depth = 32;
    /// Ownership and permission rules for the directory.
    directory_policy directory;
    /// How often a commit (under the lock) removes temp files that saves
    /// left behind — e.g. by a writer killed after this object was opened.
    std::chrono::milliseconds temp_sweep_interval = std::chrono::minutes(1);
    /// Keep the decoded table between transactions and skip reading and
    /// parsing the file when it is provably the one this storage last read
    /// or wrote (same device, inode, size, mtime and ctime, inode pinned by
    /// an open descriptor). Turn off if programs outside procreg's protocol
    /// rewrite the file in place, or on a filesystem whose timestamps or
    /// inode numbers are unreliable. See the file comment.
    bool reuse_unchanged = true;
};

/// Storage policy: one JSON file holding every record.
class json_table {
    using file_identity = detail::json_table_impl::file_identity;
    using pinned_file = detail::json_table_impl::pinned_file;
    template <class Record>
    using table_state = detail::json_table_impl::table_state<Record>;

    using kept_base = detail::json_table_impl::kept_base;
    template <class Record>
    using kept = detail::json_table_impl::kept<Record>;

public:
    /// The options type, named uniformly across storages.
    using options = json_table_options;

    /// Opens the table's directory (creating it 0700 when missing) and removes
    /// temp files left by writers that died mid-save (others are removed by
    /// the first save made under the lock). Does not read the table.
    explicit json_table(options opts) : options_(std::move(opts)) {
        open();
    }

    /// The table `file` with every other option at its default: array
    /// "records", lock file beside it (`file` with `.lock`), fsync on.
    explicit json_table(std::filesystem::path file) : options_{} {
        options_.file = std::move(file);
        open();
    }

    /// The table file.
    const std::filesystem::path& path() const noexcept { return options_.file; }
    /// The lock file the registry's lock policy should use.
    const std::filesystem::path& lock_path() const noexcept { return options_.lock_file; }
    /// The lock file, reached through this storage's own directory
    /// descriptor when it lies in that directory (detail/located_file.hpp).
    detail::located_file lock_location() const {
        return detail::locate(options_.lock_file, directory_.get(), directory_path(), options_.directory.allow_shared);
    }
    /// The options in force.
    const options& settings() const noexcept { return options_; }
    /// Change source (procreg/watch/target.hpp): the table file in its directory.
    std::vector<watch_target> watch_targets() const { return {watch_target{directory_path(), name_, {}}}; }

private:
    // What both constructors do once the options are complete.
    void open() {
        if (options_.file.filename().empty()) {
            throw error(errc::invalid_argument, options_.file, "a json_table needs a file path, not a directory");
        }
        name_ = options_.file.filename().string();
        detail::check_storable_name(name_, options_.file);
        if (options_.lock_file.empty()) {
            options_.lock_file = options_.file;
            options_.lock_file.replace_extension(".lock");
        }
        // Every save renames a new inode over the table: a lock on the table
        // file itself would be left on the old inode, locking nothing.
        detail::check_lock_file(options_.lock_file, options_.file);
        directory_ = detail::open_directory(directory_path(), options_.directory);
        sweep_pending_ = detail::sweep_stale_temps(directory_.get(), name_);
        last_sweep_ = std::chrono::steady_clock::now();
    }

public:
    /// One transaction's view of the table: read from disk when created (or
    /// taken over from the previous session when the file is unchanged),
    /// written back (only if changed) by `commit`.
    template <class Record>
    class session {
        using state_type = table_state<Record>;
        using slot = typename state_type::slot;

    public:
        /// Reads the table from disk (a missing file is an empty table), or
        /// takes over the state the previous session left when the file is
        /// the one it describes; called by `json_table::begin` under the
        /// registry's lock.
        explicit session(json_table& table) : table_(&table) {
            std::unique_ptr<kept_base> stale;
            if (!table.template adopt<Record>(state_, file_, stale)) {
                load(stale ? &static_cast<kept<Record>&>(*stale).state : nullptr);
            }
        }

        /// Moves the session (and its claim to hand its state back).
        session(session&& other) noexcept
            : table_(other.table_),
              state_(std::move(other.state_)),
              file_(std::move(other.file_)),
              dirty_(other.dirty_) {
            other.file_.reset();
        }
        session(const session&) = delete;
        session& operator=(const session&) = delete;
        session& operator=(session&&) = delete;

        /// Hands the state to the storage for the next session when it is
        /// exactly the file on disk (nothing changed, or all committed);
        /// otherwise drops it.
        ~session() {
            if (!dirty_ && file_ && table_) table_->keep(std::move(state_), std::move(*file_));
        }

        /// The record with `key`, or null.
        const stored_record<Record>* find(std::string_view key) const {
            const std::size_t at = state_.find(key);
            return at == detail::json_table_impl::key_index::npos ? nullptr : &*state_.slots[at].record;
        }

        /// Calls `visit(const stored_record<Record>&)` for each record, in file order.
        template <class Visit>
        void for_each(Visit&& visit) const {
            for (const auto& s : state_.slots) {
                if (s.record) visit(*s.record);
            }
        }

        /// Adds the record, or replaces the one with the same key. A one-file
        /// table never refuses a write, so the result is always empty.
        std::optional<skipped_file> put(stored_record<Record> entry) {
            dirty_ = true;
            const std::size_t at = state_.find(detail::key_of(entry.value));
            if (at == detail::json_table_impl::key_index::npos) {
                state_.slots.emplace_back().record.emplace(std::move(entry));
                const std::size_t position = state_.slots.size() - 1;
                state_.index.insert(detail::key_of(state_.slots[position].record->value), position, state_.key_at());
            } else {
                slot& s = state_.slots[at];
                s.record = std::move(entry);
                s.forget_text();  // to be encoded again
            }
            return std::nullopt;
        }

        /// Removes the record with `key`; false when there was none.
        bool erase(std::string_view key) {
            const std::size_t at = state_.find(key);
            if (at == detail::json_table_impl::key_index::npos) return false;
            dirty_ = true;
            // A hole keeps the other records' positions (and so the index)
            // valid; holes are compacted away before a save.
            state_.erase_at(at);
            return true;
        }

        /// Number of records.
        std::size_t size() const noexcept { return state_.index.size(); }

        /// The table file, for error messages.
        const std::filesystem::path& path() const noexcept { return table_->path(); }

        /// Writes the table back atomically if anything changed: records
        /// changed in this session are encoded, the others keep the text
        /// they were last written with, or their bytes in the file loaded
        /// when those are exactly their encoding (byte for byte what
        /// encoding them again gives).
        void commit() {
            if (!dirty_) return;
            state_.compact();
            const auto& opts = table_->options_;
            const detail::json_limits limits = detail::json_table_impl::record_limits(opts.max_depth, opts.max_file_bytes, opts.array_key);
            const slot* last_encoded = nullptr;  // names the record in a refusal
            std::string scratch;                 // one buffer for every record's encoding
            const auto layout = detail::json_table_impl::lay_out(state_, opts.array_key, [&](slot& s) {
                if (detail::json_table_impl::encode_slot(state_, s, limits, scratch, path())) last_encoded = &s;
            });
            detail::json_table_impl::check_table_size(layout.size, opts.max_file_bytes,
                                                      last_encoded ? &last_encoded->record->value : nullptr, path());
            const auto now = std::chrono::steady_clock::now();
            if (table_->sweep_pending_ || now - table_->last_sweep_ >= opts.temp_sweep_interval) {
                // Temp files a save left behind — a live process whose
                // cleanup failed, or a writer killed after this object was
                // opened: under the lock no save is running, so all go. At
                // most once per temp_sweep_interval otherwise, to keep a
                // commit's cost flat.
                detail::sweep_stale_temps(table_->directory_.get(), table_->name_, true);
                table_->sweep_pending_ = false;
                table_->last_sweep_ = now;
            }
            // Everything the kept text's adoption needs is made before the
            // file is published: a commit whose file is visible does not throw.
            auto adoption = detail::json_table_impl::prepare_adoption(state_, layout);
            const auto pieces = detail::json_table_impl::piece_texts(state_, layout);
            // From here until success the state on disk is unknown to the
            // session: if anything throws, the destructor drops the state.
            file_.reset();
            detail::unique_fd written;
            try {
                bool left_temp = false;
                detail::atomic_replace_at(table_->directory_.get(), path(), table_->name_.c_str(),
                                          detail::text_pieces{pieces.data(), pieces.size()}, opts.durable,
                                          opts.reuse_unchanged ? &written : nullptr, &left_temp);
                if (left_temp) table_->sweep_pending_ = true;
            } catch (...) {
                table_->sweep_pending_ = true;
                throw;
            }
            dirty_ = false;
            // The records' texts now live in the file's text, made in
            // place: one buffer for the table kept, not one string per
            // changed record.
            detail::json_table_impl::adopt_layout(state_, layout, adoption);
            // The identity of the file just written, from its own descriptor
            // after the rename (rename updates the inode's ctime).
            struct ::stat st {};
            if (written && detail::sys::fstat(written.get(), &st) == 0) {
                file_ = pinned_file{file_identity::of(st), std::move(written)};
            }
        }

    private:
        // Reads the file: by patching the stale state when the file differs
        // from its text in one stretch of records (detail/json_table/
        // patch.hpp), else directly from its bytes when it can (load.hpp),
        // else as one JSON tree, which words any error.
        void load(state_type* stale) {
            const auto& opts = table_->options_;
            auto opened = detail::open_file_at(table_->directory_.get(), path(), table_->name_.c_str(), opts.max_file_bytes);
            if (!opened) return;  // no file yet: an empty table (not kept: nothing to save)
            const auto size = static_cast<std::size_t>(opened->status.st_size);
            bool patched = false;
            if (stale && detail::json_table_impl::can_patch(*stale, opts.max_depth)) {
                // Read as an edit of the kept text, through the state's
                // spare buffer; a middle above an eighth of the table (and
                // above 1 MiB) is more than a patch takes (max_patched
                // records) anyway.
                const std::size_t max_middle = std::max<std::size_t>(std::size_t{1} << 20, stale->bytes.size() / 8);
                const auto edit = detail::read_as_edit(*opened, stale->bytes, stale->spare, max_middle);
                patched = edit && detail::json_table_impl::patch_stale(*stale, *edit, opts.max_depth);
            }
            if (patched) {
                state_ = std::move(*stale);
                // A table that shrank does not keep a buffer of its old size.
                if (detail::json_table_impl::oversized_for(state_.bytes.capacity(), size)) {
                    std::string text;
                    text.reserve(detail::json_table_impl::text_room(size));
                    text = state_.bytes;
                    state_.bytes.swap(text);
                }
            } else {
                state_.bytes = detail::read_opened(*opened, path(), opts.max_file_bytes,
                                                   detail::json_table_impl::text_room(size) - size);
                if (!detail::json_table_impl::load_directly(state_, opts.array_key, opts.max_depth, stale)) {
                    detail::json_table_impl::load_generally(state_, opts.array_key, opts.max_depth, path());
                }
                if (stale) state_.spare = std::move(stale->spare);
            }
            if (opts.reuse_unchanged) file_ = pinned_file{file_identity::of(opened->status), std::move(opened->fd)};
        }

        json_table* table_;
        state_type state_;
        std::optional<pinned_file> file_;  // set while state_ is exactly this file
        bool dirty_ = false;
    };

    /// Starts a session; the caller holds the registry lock.
    template <class Record>
    session<Record> begin() {
        return session<Record>(*this);
    }

private:
    // One address per record type: a kept state is only reused by sessions
    // of the type that made it.
    template <class Record>
    static const void* type_tag() noexcept {
        static const char tag = 0;
        return &tag;
    }

    // Called by a new session, under the lock: moves the kept state into it
    // when the file at the name is the kept one; otherwise hands it over as
    // `stale` (the load reuses the records whose bytes it finds unchanged,
    // detail/json_table/load.hpp). Whatever happens, the storage keeps
    // nothing afterwards, so a session that fails drops it.
    template <class Record>
    bool adopt(table_state<Record>& state, std::optional<pinned_file>& file, std::unique_ptr<kept_base>& stale) {
        std::unique_ptr<kept_base> cached = std::move(kept_);
        if (!cached || cached->type != type_tag<Record>()) return false;
        struct ::stat st {};
        if (detail::sys::fstatat(directory_.get(), name_.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !cached->file.identity.matches(st)) {
            stale = std::move(cached);
            return false;
        }
        state = std::move(static_cast<kept<Record>&>(*cached).state);
        file = std::move(cached->file);
        return true;
    }

    // Called by a clean session's destructor.
    template <class Record>
    void keep(table_state<Record>&& state, pinned_file&& file) noexcept {
        if (!options_.reuse_unchanged || !file.pin) return;
        try {
            kept_ = std::make_unique<kept<Record>>(type_tag<Record>(), std::move(state), std::move(file));
        } catch (...) {
            // out of memory: the next session reads the file
        }
    }

    std::filesystem::path directory_path() const {
        auto parent = options_.file.parent_path();
        return parent.empty() ? std::filesystem::path(".") : parent;
    }

    options options_;
    std::string name_;
    detail::unique_fd directory_;
    bool sweep_pending_ = false;  // a failed save may have left its temp file
    std::chrono::steady_clock::time_point last_sweep_{};  // last sweep of leftover temp files
    std::unique_ptr<kept_base> kept_;  // the unchanged-file shortcut's state and file, or null
};

}  // namespace procreg::storage
