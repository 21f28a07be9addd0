// tests/support/memory_storage.hpp — a storage without files: the proof that
// the storage contract (docs/design.md) asks nothing a file system gives.
//
// The records of a registry live in process memory, in a `memory_store`
// shared by every registry object opened on it, as the JSON objects the
// records encode to — so unknown keys and stamped owner identities survive
// a rewrite as they do on disk. A session copies the store when it begins
// (under the registry's lock) and hands its copy back at commit. It has
// exactly the required members (find, for_each, put, erase, size, commit)
// and no capability: no path, no lock file, no skipped entries, no
// tombstones, no create-if-absent. Its lock is `memory_lock`, a mutex of
// the store, passed to the registry explicitly.
#pragma once

#include <procreg/detail/json_codec.hpp>
#include <procreg/record_traits.hpp>
#include <procreg/stored_record.hpp>

#include <boost/json/object.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace procreg_test {

/// The shared state: records by key, and the mutex that serializes transactions.
struct memory_store {
    std::map<std::string, boost::json::object, std::less<>> records;  ///< key -> the record's JSON
    std::mutex mutex;                                                 ///< what memory_lock locks
};

/// A lock policy over a store's mutex (Lockable).
class memory_lock {
public:
    /// Locks `store`'s mutex.
    explicit memory_lock(std::shared_ptr<memory_store> store) : store_(std::move(store)) {}
    void lock() { store_->mutex.lock(); }
    bool try_lock() { return store_->mutex.try_lock(); }
    void unlock() { store_->mutex.unlock(); }

private:
    std::shared_ptr<memory_store> store_;
};

/// The storage policy.
class memory_storage {
public:
    /// A storage over `store`.
    explicit memory_storage(std::shared_ptr<memory_store> store) : store_(std::move(store)) {}

    /// One transaction's copy of the records.
    template <class Record>
    class session {
    public:
        /// Decodes every stored record; called under the registry's lock.
        explicit session(memory_store& store) : store_(&store) {
            for (const auto& [key, json] : store.records) {
                Record value = procreg::detail::decode_value<Record>(json, key);
                records_.emplace(key, procreg::stored_record<Record>{std::move(value), json});
            }
        }

        const procreg::stored_record<Record>* find(std::string_view key) const {
            const auto found = records_.find(key);
            return found == records_.end() ? nullptr : &found->second;
        }
        template <class Visit>
        void for_each(Visit&& visit) const {
            for (const auto& [key, stored] : records_) visit(stored);
        }
        /// Stores `entry` (never refuses: nothing here must not be overwritten).
        std::optional<procreg::skipped_file> put(procreg::stored_record<Record> entry) {
            std::string key(procreg::detail::key_of(entry.value));
            // Encoded (and proven to read back) now, as a file storage does before writing.
            entry.json = procreg::detail::encode_over(entry.json, entry.value);
            records_.insert_or_assign(std::move(key), std::move(entry));
            dirty_ = true;
            return std::nullopt;
        }
        bool erase(std::string_view key) {
            const auto found = records_.find(key);
            if (found == records_.end()) return false;
            records_.erase(found);
            dirty_ = true;
            return true;
        }
        std::size_t size() const { return records_.size(); }
        /// Hands the copy back to the store.
        void commit() {
            if (!dirty_) return;
            std::map<std::string, boost::json::object, std::less<>> out;
            for (const auto& [key, stored] : records_) out.emplace(key, stored.json);
            store_->records = std::move(out);
            dirty_ = false;
        }

    private:
        memory_store* store_;
        std::map<std::string, procreg::stored_record<Record>, std::less<>> records_;
        bool dirty_ = false;
    };

    /// Begins a session (the registry calls this under its lock).
    template <class Record>
    session<Record> begin() {
        return session<Record>(*store_);
    }

private:
    std::shared_ptr<memory_store> store_;
};

}  // namespace procreg_test
