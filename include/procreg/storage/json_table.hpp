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
// full re-encode writes. After a reload (another process wrote the file) a
// record has no kept text yet: the first save encodes it and, when that
// text is exactly the record's bytes in the file just loaded (found by
// `record_texts`), skips the read-back proof a changed record needs, since
// the load parsed and decoded those very bytes within the same limits.
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
#include <procreg/error.hpp>
#include <procreg/record_traits.hpp>
#include <procreg/stored_record.hpp>
#include <procreg/watch/target.hpp>

#include <boost/json.hpp>

#include <chrono>
#include <cstddef>
#include <ctime>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
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
    // What identifies one version of the table file. With the inode pinned
    // by an open descriptor, (device, inode) names one file; size, mtime and
    // ctime change with any write to it.
    struct file_identity {
        dev_t device = 0;
        ino_t inode = 0;
        off_t size = 0;
        struct timespec modified {};
        struct timespec changed {};

        static file_identity of(const struct ::stat& st) noexcept {
            return file_identity{st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim};
        }
        bool matches(const struct ::stat& st) const noexcept {
            return S_ISREG(st.st_mode) && st.st_dev == device && st.st_ino == inode && st.st_size == size &&
                   st.st_mtim.tv_sec == modified.tv_sec && st.st_mtim.tv_nsec == modified.tv_nsec &&
                   st.st_ctim.tv_sec == changed.tv_sec && st.st_ctim.tv_nsec == changed.tv_nsec;
        }
    };

    // One version of the table file: its identity, and the descriptor
    // (always open) that pins its inode. Taken only with `reuse_unchanged`.
    struct pinned_file {
        file_identity identity;
        detail::unique_fd pin;
    };

    // One session's records, in file order.
    template <class Record>
    struct table_state {
        /// A record with its text as last written (empty: to be encoded at
        /// the next save). An erased record leaves a hole (no record), so
        /// positions in `index` stay valid until the next save compacts them.
        struct slot {
            std::optional<stored_record<Record>> record;  ///< the record; empty for a hole
            std::string text;                             ///< its text as last written, or empty
            /// For a record loaded and not changed since: its position in
            /// the file's records array (`loaded`); else `not_loaded`.
            std::size_t loaded_index = not_loaded;
        };
        static constexpr std::size_t not_loaded = static_cast<std::size_t>(-1);
        boost::json::object top;                             // the file's top level, records array emptied
        std::vector<slot> slots;                             // file order, with holes
        std::unordered_map<std::string, std::size_t> index;  // key -> position in slots, one per record
        std::string loaded;            // the bytes of the file loaded, until the first save takes the records' texts
        std::size_t loaded_count = 0;  // how many records `loaded` holds

        void compact() {
            if (index.size() == slots.size()) return;  // no holes
            std::size_t to = 0;
            for (std::size_t from = 0; from < slots.size(); ++from) {
                if (!slots[from].record) continue;
                if (to != from) {
                    slots[to] = std::move(slots[from]);
                    index[std::string(detail::key_of(slots[to].record->value))] = to;
                }
                ++to;
            }
            slots.resize(to);
        }
    };

    // The state a clean session handed back, with the file it is exactly
    // the contents of and the record type it was made for.
    struct kept_base {
        kept_base(const void* type_tag, pinned_file&& f) : type(type_tag), file(std::move(f)) {}
        virtual ~kept_base() = default;
        const void* type;  // type_tag<Record>() of the derived kept<Record>
        pinned_file file;
    };
    template <class Record>
    struct kept final : kept_base {
        kept(table_state<Record>&& s, pinned_file&& f)
            : kept_base(type_tag<Record>(), std::move(f)), state(std::move(s)) {}
        table_state<Record> state;
    };

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
        using slot = typename table_state<Record>::slot;

    public:
        /// Reads the table from disk (a missing file is an empty table), or
        /// takes over the state the previous session left when the file is
        /// the one it describes; called by `json_table::begin` under the
        /// registry's lock.
        explicit session(json_table& table) : table_(&table) {
            if (!table.template adopt<Record>(state_, file_)) load();
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
            const auto it = state_.index.find(std::string(key));
            return it == state_.index.end() ? nullptr : &*state_.slots[it->second].record;
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
            std::string key(detail::key_of(entry.value));
            const auto it = state_.index.find(key);
            if (it == state_.index.end()) {
                state_.index.emplace(std::move(key), state_.slots.size());
                state_.slots.emplace_back().record.emplace(std::move(entry));
            } else {
                slot& s = state_.slots[it->second];
                s.record = std::move(entry);
                s.text.clear();  // to be encoded again
                s.loaded_index = table_state<Record>::not_loaded;
            }
            return std::nullopt;
        }

        /// Removes the record with `key`; false when there was none.
        bool erase(std::string_view key) {
            const auto it = state_.index.find(std::string(key));
            if (it == state_.index.end()) return false;
            dirty_ = true;
            // A hole keeps the other records' positions (and so the index)
            // valid; holes are compacted away before a save.
            slot& s = state_.slots[it->second];
            s.record.reset();
            s.text = std::string();
            state_.index.erase(it);
            return true;
        }

        /// Number of records.
        std::size_t size() const noexcept { return state_.index.size(); }

        /// The table file, for error messages.
        const std::filesystem::path& path() const noexcept { return table_->path(); }

        /// Writes the table back atomically if anything changed: records
        /// changed in this session are encoded, the others keep the text
        /// they were last written with (byte for byte what encoding them
        /// again gives).
        void commit() {
            if (!dirty_) return;
            state_.compact();
            const auto& opts = table_->options_;
            const detail::json_limits limits = record_limits(opts);
            const slot* last_encoded = nullptr;  // names the record in a refusal
            std::string scratch;                 // one buffer for every record's text
            // The loaded records' bytes in the file, found only now that a
            // save needs them (a transaction that only reads never scans).
            std::vector<std::string_view> loaded_texts;
            if (!state_.loaded.empty()) {
                loaded_texts = record_texts(state_.loaded, opts.array_key);
                if (loaded_texts.size() != state_.loaded_count) loaded_texts.clear();
            }
            for (slot& s : state_.slots) {
                if (!s.text.empty()) continue;
                if (encode(s, limits, loaded_texts, scratch)) last_encoded = &s;
            }
            loaded_texts.clear();
            state_.loaded = std::string();  // every record has its text now
            const std::string text = render(opts.array_key);
            if (text.size() > opts.max_file_bytes) {
                // Each record fits on its own, the table does not: refused
                // before anything is written, as readers would refuse the file.
                std::string key = last_encoded ? std::string(detail::key_of(last_encoded->record->value)) : "";
                const std::string what =
                    (key.empty() ? std::string("cannot store the table")
                                 : "cannot store the record " + detail::quote_untrusted(key)) +
                    ": the table would be " + std::to_string(text.size()) + " bytes, above the limit of " +
                    std::to_string(opts.max_file_bytes) + " bytes (max_file_bytes) that readers accept";
                throw error(errc::invalid_record, path(), what, error::details{std::move(key), {}, 0});
            }
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
            // From here until success the state on disk is unknown to the
            // session: if anything throws, the destructor drops the state.
            file_.reset();
            detail::unique_fd written;
            try {
                bool left_temp = false;
                detail::atomic_replace_at(table_->directory_.get(), path(), table_->name_.c_str(), text,
                                          opts.durable, opts.reuse_unchanged ? &written : nullptr, &left_temp);
                if (left_temp) table_->sweep_pending_ = true;
            } catch (...) {
                table_->sweep_pending_ = true;
                throw;
            }
            dirty_ = false;
            // The identity of the file just written, from its own descriptor
            // after the rename (rename updates the inode's ctime).
            struct ::stat st {};
            if (written && detail::sys::fstat(written.get(), &st) == 0) {
                file_ = pinned_file{file_identity::of(st), std::move(written)};
            }
        }

    private:
        // The limits one record's text is held to: the file's, less what the
        // file adds around it. render() nests a record two levels down (the
        // top-level object, the array) and writes at least
        // `{\n  "<array_key>": [\n    ` and `\n  ]\n}` around it. The size
        // of the whole table is checked once rendered (commit).
        static detail::json_limits record_limits(const options& opts) {
            detail::json_limits limits{opts.max_depth, opts.max_file_bytes};
            limits.outer_depth = 2;
            limits.outer_bytes = 18 + boost::json::serialize(boost::json::string_view(opts.array_key)).size();
            return limits;
        }

        // Gives a changed record the text it will have in the file, once
        // that very text is proven to read back. The record then holds what
        // reading it back gives (value and object), as a fresh load of the
        // file would: the unchanged-file shortcut serves what the file says.
        // A record loaded unchanged whose text encodes to the very bytes the
        // file holds for it keeps them without the proof: the load that
        // made it parsed and decoded those bytes within the same limits
        // (the file's size and depth, two levels down), which is what the
        // proof would do again. Returns false for that case (nothing new).
        bool encode(slot& s, const detail::json_limits& limits, const std::vector<std::string_view>& loaded_texts,
                    std::string& text) {
            stored_record<Record>& entry = *s.record;
            if constexpr (detail::encodes_plainly<Record>::value) {
                // The usual case written without a JSON tree: when the file
                // holds exactly the record's members in order (the bytes
                // equal), its object has no other key for a merge to add,
                // so this is also what the merge below would write.
                if (s.loaded_index < loaded_texts.size()) {
                    text.clear();
                    detail::append_plain_pretty(text, entry.value, 2);
                    if (text == loaded_texts[s.loaded_index]) {
                        s.loaded_index = table_state<Record>::not_loaded;
                        s.text.assign(text);
                        return false;
                    }
                }
            }
            try {
                const boost::json::value merged(detail::merge_over(entry.json, entry.value));
                text.clear();
                detail::pretty_print_into(text, merged, 2);  // indent level 2: inside the top-level object's array
                const std::size_t position = s.loaded_index;
                s.loaded_index = table_state<Record>::not_loaded;
                if (position < loaded_texts.size() && text == loaded_texts[position]) {
                    s.text.assign(text);
                    return false;
                }
                detail::read_back<Record>(text, limits, &entry.value, &entry.json);
                s.text.assign(text);
                return true;
            } catch (const detail::decode_error& e) {
                const std::string key(detail::key_of(entry.value));
                throw error(errc::invalid_record, path(),
                            "cannot store the record " + detail::quote_untrusted(key) + ": " + e.what(),
                            error::details{key, {}, 0});
            }
        }

        void load() {
            const auto& opts = table_->options_;
            detail::unique_fd opened;
            auto contents = detail::read_file_at(table_->directory_.get(), path(), table_->name_.c_str(),
                                                 opts.max_file_bytes, opts.reuse_unchanged ? &opened : nullptr);
            if (!contents) return;  // no file yet: an empty table (not kept: nothing to save)
            std::string parse_error;
            auto parsed = detail::parse_json(contents->bytes, detail::json_limits{opts.max_depth}, parse_error);
            if (!parsed) throw error(errc::corrupted_file, path(), "cannot parse JSON: " + parse_error);
            if (!parsed->is_object()) throw error(errc::corrupted_file, path(), "top level is not a JSON object");
            state_.top = std::move(parsed->as_object());
            auto found = state_.top.find(opts.array_key);
            if (found != state_.top.end()) {
                if (!found->value().is_array()) {
                    throw error(errc::corrupted_file, path(), "\"" + opts.array_key + "\" is not an array");
                }
                boost::json::array& array = found->value().as_array();
                state_.slots.reserve(array.size());
                state_.index.reserve(array.size());
                for (std::size_t i = 0; i < array.size(); ++i) {
                    // The field path for error messages is built only when
                    // one is needed: decoding runs without it, and a failure
                    // decodes that record again with it for the message.
                    const auto where = [&] { return opts.array_key + "[" + std::to_string(i) + "]"; };
                    if (!array[i].is_object()) throw error(errc::corrupted_file, path(), where() + ": not an object");
                    Record value = [&]() -> Record {
                        try {
                            return detail::decode_value<Record>(array[i], std::string());
                        } catch (const detail::decode_error&) {
                        }
                        try {
                            return detail::decode_value<Record>(array[i], where());
                        } catch (const detail::decode_error& e) {
                            throw error(errc::corrupted_file, path(), e.what());
                        }
                    }();
                    std::string key(detail::key_of(value));
                    if (!state_.index.emplace(key, state_.slots.size()).second) {
                        throw error(errc::corrupted_file, path(), where() + ": duplicate key " + detail::quote_untrusted(key),
                                    error::details{key, {}, 0});
                    }
                    slot& s = state_.slots.emplace_back();
                    s.record.emplace(stored_record<Record>{std::move(value), std::move(array[i].as_object())});
                    s.loaded_index = i;  // its bytes are compared with its encoding at the first save
                }
                array.clear();
                state_.loaded_count = state_.slots.size();
                state_.loaded = std::move(contents->bytes);
            }
            if (opened) file_ = pinned_file{file_identity::of(contents->status), std::move(opened)};
        }

        // The bytes of each element of the top-level member `array_key` in
        // `file`, a text that has parsed as JSON (so only well-formed input
        // is scanned). Empty when a top-level key holds an escape (the
        // raw text would not say which key it is): the records are then
        // encoded afresh, as they were before this was kept.
        static std::vector<std::string_view> record_texts(std::string_view file, const std::string& array_key) {
            std::vector<std::string_view> out;
            std::size_t at = 0;
            const auto skip_space = [&] {
                while (at < file.size() && (file[at] == ' ' || file[at] == '\n' || file[at] == '\r' || file[at] == '\t')) ++at;
            };
            const auto skip_string = [&] {  // at the opening quote; returns whether it held an escape
                bool escaped = false;
                for (++at; file[at] != '"'; ++at) {
                    if (file[at] == '\\') {
                        escaped = true;
                        ++at;
                    }
                }
                ++at;
                return escaped;
            };
            const auto skip_value = [&] {
                if (file[at] == '"') {
                    skip_string();
                    return;
                }
                if (file[at] != '{' && file[at] != '[') {  // a number or a literal
                    while (at < file.size() && file[at] != ',' && file[at] != '}' && file[at] != ']' && file[at] != ' ' &&
                           file[at] != '\n' && file[at] != '\r' && file[at] != '\t')
                        ++at;
                    return;
                }
                std::size_t depth = 0;
                do {
                    if (file[at] == '"') {
                        skip_string();
                        continue;
                    }
                    if (file[at] == '{' || file[at] == '[') ++depth;
                    if (file[at] == '}' || file[at] == ']') --depth;
                    ++at;
                } while (depth > 0);
            };
            skip_space();
            if (at >= file.size() || file[at] != '{') return out;
            ++at;
            for (;;) {
                skip_space();
                if (file[at] != '"') return out;  // `}`: no such member
                const std::size_t key_start = at + 1;
                if (skip_string()) return {};
                const std::string_view key = file.substr(key_start, at - 1 - key_start);
                skip_space();
                ++at;  // ':'
                skip_space();
                if (key == array_key) {
                    if (file[at] != '[') return {};
                    ++at;
                    for (;;) {
                        skip_space();
                        if (file[at] == ']') return out;
                        const std::size_t start = at;
                        skip_value();
                        out.push_back(file.substr(start, at - start));
                        skip_space();
                        if (file[at] == ',') ++at;
                    }
                }
                skip_value();
                skip_space();
                if (file[at] == ',') ++at;
            }
        }

        // The file as detail::pretty_print writes the top-level object with
        // the records array in it (the array takes its place among the other
        // keys, or comes last when the file had none), from the records' texts.
        std::string render(const std::string& array_key) {
            if (state_.top.find(array_key) == state_.top.end()) state_.top[array_key] = boost::json::array();
            std::size_t total = 64;
            for (const auto& s : state_.slots) total += s.text.size() + 6;
            std::string out;
            out.reserve(total);
            out += '{';
            bool first_key = true;
            for (const auto& item : state_.top) {
                if (!first_key) out += ',';
                first_key = false;
                out += "\n  ";
                out += boost::json::serialize(boost::json::string_view(item.key()));
                out += ": ";
                if (item.key() != array_key) {
                    detail::pretty_print_into(out, item.value(), 1);
                } else if (state_.slots.empty()) {
                    out += "[]";
                } else {
                    out += '[';
                    bool first = true;
                    for (const auto& s : state_.slots) {  // compacted: no holes
                        if (!first) out += ',';
                        first = false;
                        out += "\n    ";
                        out += s.text;
                    }
                    out += "\n  ]";
                }
            }
            out += "\n}";
            return out;
        }

        json_table* table_;
        table_state<Record> state_;
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
    // when the file at the name is the kept one. Whatever happens, the
    // storage keeps nothing afterwards, so a session that fails drops it.
    template <class Record>
    bool adopt(table_state<Record>& state, std::optional<pinned_file>& file) {
        const std::unique_ptr<kept_base> cached = std::move(kept_);
        if (!cached || cached->type != type_tag<Record>()) return false;
        struct ::stat st {};
        if (detail::sys::fstatat(directory_.get(), name_.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return false;
        if (!cached->file.identity.matches(st)) return false;
        state = std::move(static_cast<kept<Record>&>(*cached).state);
        file = std::move(cached->file);
        return true;
    }

    // Called by a clean session's destructor.
    template <class Record>
    void keep(table_state<Record>&& state, pinned_file&& file) noexcept {
        if (!options_.reuse_unchanged || !file.pin) return;
        try {
            kept_ = std::make_unique<kept<Record>>(std::move(state), std::move(file));
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
