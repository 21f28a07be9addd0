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
// - top-level keys other than the array, and per-record keys the record type
//   does not know, are written back as they were read;
// - the directory is 0700 and only this user's (detail::open_directory),
//   the file 0600.
#pragma once

#include <procreg/detail/file_io.hpp>
#include <procreg/detail/json_codec.hpp>
#include <procreg/error.hpp>
#include <procreg/record_traits.hpp>
#include <procreg/stored_record.hpp>

#include <boost/json.hpp>

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

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
    detail::directory_policy directory;
};

/// Storage policy: one JSON file holding every record.
class json_table {
public:
    /// The options type, named uniformly across storages.
    using options = json_table_options;

    /// Opens the table's directory (creating it 0700 when missing) and removes
    /// temp files left by writers that died mid-save (others are removed by
    /// the first save made under the lock). Does not read the table.
    explicit json_table(options opts) : options_(std::move(opts)) {
        if (options_.file.filename().empty()) {
            throw error(errc::invalid_key, options_.file, "a json_table needs a file path, not a directory");
        }
        if (options_.lock_file.empty()) {
            options_.lock_file = options_.file;
            options_.lock_file.replace_extension(".lock");
        }
        name_ = options_.file.filename().string();
        directory_ = detail::open_directory(directory_path(), options_.directory);
        sweep_pending_ = detail::sweep_stale_temps(directory_.get(), name_);
    }

    /// The table file.
    const std::filesystem::path& path() const noexcept { return options_.file; }
    /// The lock file the registry's lock policy should use.
    const std::filesystem::path& lock_path() const noexcept { return options_.lock_file; }
    /// The options in force.
    const options& settings() const noexcept { return options_; }

    /// One transaction's view of the table: read from disk when created,
    /// written back (only if changed) by `commit`.
    template <class Record>
    class session {
    public:
        /// Reads the table from disk (a missing file is an empty table);
        /// called by `json_table::begin` under the registry's lock.
        explicit session(json_table& table) : table_(&table) { load(); }

        /// The record with `key`, or null.
        const stored_record<Record>* find(std::string_view key) const {
            const auto it = index_.find(std::string(key));
            return it == index_.end() ? nullptr : &entries_[it->second];
        }

        /// Calls `visit(const stored_record<Record>&)` for each record, in file order.
        template <class Visit>
        void for_each(Visit&& visit) const {
            for (const auto& entry : entries_) visit(entry);
        }

        /// Adds the record, or replaces the one with the same key. A one-file
        /// table never refuses a write, so the result is always empty.
        std::optional<skipped_file> put(stored_record<Record> entry) {
            std::string key(detail::key_of(entry.value));
            const auto it = index_.find(key);
            if (it == index_.end()) {
                index_.emplace(std::move(key), entries_.size());
                entries_.push_back(std::move(entry));
            } else {
                entries_[it->second] = std::move(entry);
            }
            dirty_ = true;
            return std::nullopt;
        }

        /// Removes the record with `key`; false when there was none.
        bool erase(std::string_view key) {
            const auto it = index_.find(std::string(key));
            if (it == index_.end()) return false;
            const std::size_t position = it->second;
            entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(position));
            index_.erase(it);
            for (auto& slot : index_) {
                if (slot.second > position) --slot.second;
            }
            dirty_ = true;
            return true;
        }

        /// Number of records.
        std::size_t size() const noexcept { return entries_.size(); }

        /// Files passed over while reading: a one-file table never skips, it fails.
        const std::vector<skipped_file>& skipped() const noexcept { return skipped_; }

        /// The table file, for error messages.
        const std::filesystem::path& path() const noexcept { return table_->path(); }

        /// Writes the table back atomically if anything changed.
        void commit() {
            if (!dirty_) return;
            boost::json::array records;
            records.reserve(entries_.size());
            for (const auto& entry : entries_) {
                try {
                    records.emplace_back(detail::encode_over(entry.json, entry.value));
                } catch (const detail::decode_error& e) {
                    throw error(errc::io_failure, path(), std::string("cannot encode a record: ") + e.what(),
                                error::details{std::string(detail::key_of(entry.value)), {}, 0});
                }
            }
            top_[table_->options_.array_key] = std::move(records);
            std::string text = detail::pretty_print(top_);
            if (table_->sweep_pending_) {
                // Temp files a live process left (a save whose cleanup
                // failed): under the lock no save is running, so all go.
                detail::sweep_stale_temps(table_->directory_.get(), table_->name_, true);
                table_->sweep_pending_ = false;
            }
            try {
                detail::atomic_replace_at(table_->directory_.get(), path(), table_->name_.c_str(), text,
                                          table_->options_.durable);
            } catch (...) {
                table_->sweep_pending_ = true;
                throw;
            }
            dirty_ = false;
        }

    private:
        void load() {
            const auto& opts = table_->options_;
            auto contents = detail::read_file_at(table_->directory_.get(), path(), table_->name_.c_str(),
                                                 opts.max_file_bytes);
            if (!contents) return;  // no file yet: an empty table
            std::string parse_error;
            auto parsed = detail::parse_json(contents->bytes, detail::json_limits{opts.max_depth}, parse_error);
            if (!parsed) throw error(errc::corrupted_file, path(), "cannot parse JSON: " + parse_error);
            if (!parsed->is_object()) throw error(errc::corrupted_file, path(), "top level is not a JSON object");
            top_ = std::move(parsed->as_object());
            auto found = top_.find(opts.array_key);
            if (found == top_.end()) return;  // other keys only: kept, table empty
            if (!found->value().is_array()) {
                throw error(errc::corrupted_file, path(), "\"" + opts.array_key + "\" is not an array");
            }
            boost::json::array& array = found->value().as_array();
            entries_.reserve(array.size());
            index_.reserve(array.size());
            for (std::size_t i = 0; i < array.size(); ++i) {
                const std::string where = opts.array_key + "[" + std::to_string(i) + "]";
                if (!array[i].is_object()) throw error(errc::corrupted_file, path(), where + ": not an object");
                Record value = [&]() -> Record {
                    try {
                        return detail::decode_value<Record>(array[i], where);
                    } catch (const detail::decode_error& e) {
                        throw error(errc::corrupted_file, path(), e.what());
                    }
                }();
                std::string key(detail::key_of(value));
                if (!index_.emplace(key, entries_.size()).second) {
                    throw error(errc::corrupted_file, path(),
                                where + ": duplicate key \"" + key + "\"", error::details{key, {}, 0});
                }
                entries_.push_back(stored_record<Record>{std::move(value), std::move(array[i].as_object())});
            }
            array.clear();
        }

        json_table* table_;
        boost::json::object top_;
        std::vector<stored_record<Record>> entries_;
        std::unordered_map<std::string, std::size_t> index_;
        std::vector<skipped_file> skipped_;
        bool dirty_ = false;
    };

    /// Starts a session; the caller holds the registry lock.
    template <class Record>
    session<Record> begin() {
        return session<Record>(*this);
    }

private:
    std::filesystem::path directory_path() const {
        auto parent = options_.file.parent_path();
        return parent.empty() ? std::filesystem::path(".") : parent;
    }

    options options_;
    std::string name_;
    detail::unique_fd directory_;
    bool sweep_pending_ = false;  // a failed save may have left its temp file
};

}  // namespace procreg::storage
