// procreg/storage/etcd_store.hpp — records as keys of an etcd v3 cluster, for registries spanning machines.
//
// Layout (docs/etcd.md):
//
//     <prefix>/<key>    the record's JSON, exactly as record_files writes
//                       `<root>/<key>.json` (unknown fields kept), put with
//                       its owner's lease (liveness/etcd_lease.hpp), or
//                       with none for a registry without owners
//     <prefix>.owners/<lease>   empty, put with that lease before the first
//                       record written with it: etcd deletes it in the revision
//                       that deletes the owner's records when the lease
//                       ends, which tells a watcher an owner's end from an
//                       explicit delete (detail/etcd_watch_stream.hpp)
//
// Invariants:
// - a transaction is serializable across processes and machines by
//   optimistic concurrency: every read of a session is at one revision (the
//   first read's), and `commit()` is one etcd txn that compares the
//   `mod_revision` of every key read (0 for a key read as absent, so an
//   insert is create-only) and, when the session listed the prefix, that no
//   key under it changed since. When a compare fails nothing is written and
//   the session throws detail::commit_conflict: the registry runs the steps
//   again. So the registry's lock is `lock::no_lock`, and a duplicate key
//   is `errc::duplicate_key`, never an overwrite;
// - a session is lazy: `find(key)` reads that one key, listing reads the
//   prefix once, and no key is read twice in one session; nothing is cached
//   across sessions, so etcd stays the single source of truth;
// - a transaction that only reads writes nothing (no txn);
// - a value this program must not overwrite (does not parse, key differs
//   from the key's name, ...) is passed over with its reason in
//   `skipped()` and never replaced: `put` refuses it;
// - the key's lease is shown to the liveness policy as the record's owner
//   identity (detail::owner_etcd_lease_key), and is never stored in the value.
#pragma once

#include <procreg/detail/etcd_client.hpp>
#include <procreg/detail/etcd_watch_stream.hpp>
#include <procreg/detail/commit_conflict.hpp>
#include <procreg/detail/json_codec.hpp>
#include <procreg/detail/owner_identity.hpp>
#include <procreg/detail/record_key.hpp>
#include <procreg/error.hpp>
#include <procreg/record_traits.hpp>
#include <procreg/stored_record.hpp>

#include <boost/json.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace procreg::storage {

/// Where and how an `etcd_store` keeps its records.
struct etcd_store_options {
    /// The cluster: endpoints, timeout of every call, credentials.
    detail::etcd_connection connection;
    /// The key prefix, e.g. "/pool/workers"; records are `<prefix>/<key>`.
    /// Must not be empty and must not end with '/'.
    std::string prefix;
    /// Values larger than this are skipped unread.
    std::size_t max_value_bytes = std::size_t{1} << 20;
    /// Maximum JSON nesting depth accepted in a value.
    std::size_t max_depth = 32;
};

/// Storage policy: one etcd key per record under a prefix, transactions by
/// compare-and-commit. Use with `lock::no_lock` (the storage serializes
/// transactions itself) and `liveness::etcd_lease` or `liveness::always_alive`.
class etcd_store {
public:
    /// The options type, named uniformly across storages.
    using options = etcd_store_options;

    /// Connects (authenticating when credentials are given); reads no record.
    explicit etcd_store(options opts) : options_(std::move(opts)) {
        while (!options_.prefix.empty() && options_.prefix.back() == '/') options_.prefix.pop_back();
        client_ = std::make_shared<detail::etcd_client>(options_.connection);
        display_ = client_->display() + (options_.prefix.empty() || options_.prefix.front() != '/' ? "/" : "") +
                   options_.prefix;
        if (options_.prefix.empty()) {
            throw error(errc::unsafe_path, display_, "etcd_store needs a non-empty key prefix");
        }
    }

    /// `etcd://host:port[,host:port]/prefix`, the registry's name in messages.
    const std::filesystem::path& path() const noexcept { return display_; }
    /// The same name: there is no lock file (see `lock::no_lock`).
    const std::filesystem::path& lock_path() const noexcept { return display_; }
    /// The options in force.
    const options& settings() const noexcept { return options_; }
    /// The client, for callers that need another etcd call.
    detail::etcd_client& client() noexcept { return *client_; }

    /// One transaction's view of the prefix at one revision.
    template <class Record>
    class session {
    public:
        /// Used by `etcd_store::begin`; reads nothing.
        explicit session(etcd_store& store) : store_(&store) {}

        /// The valid record with `key`, or null. Reads at most that key.
        const stored_record<Record>* find(std::string_view key) const {
            slot& s = load(key);
            return s.kind == slot_kind::valid ? &*s.record : nullptr;
        }

        /// Calls `visit(const stored_record<Record>&)` for each valid record, in key order.
        template <class Visit>
        void for_each(Visit&& visit) const {
            scan();
            for (auto& item : slots_) {
                if (item.second.kind == slot_kind::valid) visit(*item.second.record);
            }
        }

        /// Adds or replaces the record, merging it over the value as read so
        /// unknown fields survive; put with the lease in `entry.json`'s
        /// owner identity (none without). Refuses a value that must not be overwritten.
        std::optional<skipped_file> put(stored_record<Record> entry) {
            const std::string key(detail::key_of(entry.value));
            slot& s = load(key);
            if (s.kind == slot_kind::must_not_overwrite) return skipped_file{where(key), "not overwritten: " + s.reason};
            boost::json::object base = std::move(entry.json);
            if (s.kind == slot_kind::not_a_record) detail::merge_under<Record>(base, s.raw);
            const std::int64_t lease = lease_in(base);
            base.erase(detail::owner_etcd_lease_key);
            boost::json::object encoded;
            try {
                encoded = detail::merge_over(base, entry.value);
                s.text = detail::pretty_print(encoded);
                s.text += '\n';
                detail::read_back<Record>(s.text, detail::json_limits{store_->options_.max_depth});
            } catch (const detail::decode_error& e) {
                throw error(errc::invalid_record, where(key), std::string("cannot store the record: ") + e.what(),
                            error::details{key, {}, 0});
            }
            if (lease != 0) encoded[detail::owner_etcd_lease_key] = std::to_string(lease);
            s.kind = slot_kind::valid;
            s.record.emplace(stored_record<Record>{std::move(entry.value), std::move(encoded)});
            s.put_lease = lease;
            s.change = change_kind::put;
            return std::nullopt;
        }

        /// Removes the valid record with `key`; false when there is none.
        bool erase(std::string_view key) {
            slot& s = load(key);
            if (s.kind != slot_kind::valid) return false;
            s.kind = slot_kind::absent;
            s.record.reset();
            s.change = change_kind::remove;
            return true;
        }

        /// Number of valid records (lists the prefix, once per session).
        std::size_t size() const {
            scan();
            std::size_t count = 0;
            for (const auto& item : slots_) count += item.second.kind == slot_kind::valid ? 1 : 0;
            return count;
        }

        /// Every value passed over, with its reason.
        const std::vector<skipped_file>& skipped() const {
            scan();
            return skipped_;
        }

        /// `etcd://.../prefix`, for error messages.
        const std::filesystem::path& path() const noexcept { return store_->path(); }

        /// The revision the session reads at (0 before its first read).
        std::int64_t revision() const noexcept { return revision_; }

        /// Writes every change as one txn, guarded by the compares of
        /// everything read (see the file comment); throws
        /// detail::commit_conflict, writing nothing, when one fails.
        void commit() {
            boost::json::array compare;
            boost::json::array success;
            for (const auto& item : slots_) {
                const slot& s = item.second;
                const std::string key = store_->full_key(item.first);
                if (s.read) {
                    compare.push_back(boost::json::object{{"key", detail::base64_encode(key)},
                                                          {"target", "MOD"},
                                                          {"result", "EQUAL"},
                                                          {"mod_revision", std::to_string(s.mod_revision)}});
                }
                if (s.change == change_kind::put) {
                    boost::json::object put{{"key", detail::base64_encode(key)},
                                            {"value", detail::base64_encode(s.text)}};
                    if (s.put_lease != 0) put["lease"] = std::to_string(s.put_lease);
                    success.push_back(boost::json::object{{"request_put", std::move(put)}});
                } else if (s.change == change_kind::remove) {
                    success.push_back(
                        boost::json::object{{"request_delete_range", {{"key", detail::base64_encode(key)}}}});
                }
            }
            if (success.empty()) return;
            std::set<std::int64_t> leases;
            for (const auto& item : slots_) {
                if (item.second.change == change_kind::put && item.second.put_lease != 0) leases.insert(item.second.put_lease);
            }
            store_->mark_owners(leases);
            if (scanned_) {
                // No key under the prefix was created or changed after the listing.
                compare.push_back(boost::json::object{{"key", detail::base64_encode(store_->range_start())},
                                                      {"range_end", detail::base64_encode(store_->range_end())},
                                                      {"target", "MOD"},
                                                      {"result", "LESS"},
                                                      {"mod_revision", std::to_string(revision_ + 1)}});
            }
            boost::json::object request{{"compare", std::move(compare)}, {"success", std::move(success)}};
            detail::etcd_status status;
            const boost::json::value answer = store_->client_->call("/v3/kv/txn", request, status, false);
            if (status.code != 0) {
                const bool lease_gone = status.code == 5;  // NotFound: "requested lease not found"
                // Unavailable / DeadlineExceeded ("request timed out", "leader changed"): may apply later.
                const bool unknown = status.code == 14 || status.code == 4;
                throw error(errc::io_failure, path(),
                            (lease_gone ? "the owner's lease is gone (expired or revoked), nothing was written: "
                             : unknown  ? "txn not confirmed, it may or may not have been applied: "
                                        : "txn refused, nothing was written: ") +
                                detail::quote_untrusted(status.message, 200),
                            error::details{{}, {}, lease_gone ? ENOENT : unknown ? ETIMEDOUT : EIO});
            }
            const auto* succeeded = answer.as_object().if_contains("succeeded");
            if (!succeeded || !succeeded->is_bool() || !succeeded->get_bool()) throw detail::commit_conflict{};
        }

    private:
        enum class slot_kind { unknown, absent, valid, not_a_record, must_not_overwrite };
        enum class change_kind { none, put, remove };

        struct slot {
            slot_kind kind = slot_kind::unknown;
            bool read = false;              // compared at commit
            std::int64_t mod_revision = 0;  // as read; 0 for an absent key
            std::optional<stored_record<Record>> record;
            boost::json::object raw;  // a value that parsed but did not decode
            std::string reason;       // why a value was passed over
            change_kind change = change_kind::none;
            std::string text;             // the value to put
            std::int64_t put_lease = 0;   // the lease to put it with (0: none)
        };

        std::filesystem::path where(std::string_view key) const {
            return std::filesystem::path(store_->display_.string() + "/" + std::string(key));
        }

        static std::int64_t lease_in(const boost::json::object& object) {
            const auto* lease = object.if_contains(detail::owner_etcd_lease_key);
            if (!lease || !lease->is_string()) return 0;
            try {
                return std::stoll(std::string(lease->get_string()));
            } catch (const std::exception&) {
                return 0;
            }
        }

        // Range over [key, range_end) at the session's revision; the first
        // read fixes that revision. A compacted revision restarts the transaction.
        boost::json::array range(const std::string& key, const std::string& range_end) const {
            boost::json::object request{{"key", detail::base64_encode(key)}};
            if (!range_end.empty()) request["range_end"] = detail::base64_encode(range_end);
            if (revision_ != 0) request["revision"] = std::to_string(revision_);
            detail::etcd_status status;
            const boost::json::value answer = store_->client_->call("/v3/kv/range", request, status);
            if (status.code == 11) throw detail::commit_conflict{};  // OutOfRange: compacted
            if (status.code != 0) {
                throw error(errc::io_failure, path(),
                            "range refused: " + detail::quote_untrusted(status.message, 200) + " (gRPC code " +
                                std::to_string(status.code) + ")",
                            error::details{{}, {}, EIO});
            }
            if (revision_ == 0) revision_ = detail::etcd_client::revision_of(answer);
            const auto* kvs = answer.as_object().if_contains("kvs");
            return kvs && kvs->is_array() ? kvs->get_array() : boost::json::array{};
        }

        slot& load(std::string_view key) const {
            detail::check_record_key(key, store_->path());
            auto found = slots_.find(key);
            if (found != slots_.end() && found->second.kind != slot_kind::unknown) return found->second;
            slot& s = slots_[std::string(key)];
            if (scanned_) {
                s.kind = slot_kind::absent;
                s.read = true;
                return s;
            }
            const boost::json::array kvs = range(store_->full_key(key), {});
            s.read = true;
            if (kvs.empty()) {
                s.kind = slot_kind::absent;
            } else {
                classify(s, key, kvs.front().as_object());
            }
            return s;
        }

        void scan() const {
            if (scanned_) return;
            const boost::json::array kvs = range(store_->range_start(), store_->range_end());
            for (const auto& item : kvs) {
                const auto& kv = item.as_object();
                const auto* key64 = kv.if_contains("key");
                auto full = key64 && key64->is_string() ? detail::base64_decode(key64->get_string()) : std::nullopt;
                if (!full) continue;
                const std::string key = full->substr(store_->range_start().size());
                if (!detail::is_valid_record_key(key)) {
                    skipped_.push_back(skipped_file{where(key), "key name is not a valid record key (" +
                                                                    std::string(detail::record_key_pattern) + ")"});
                    continue;
                }
                slot& s = slots_[key];
                if (s.kind != slot_kind::unknown) continue;  // read (or changed) earlier in this session
                s.read = true;
                classify(s, key, kv);
            }
            for (auto& item : slots_) {
                if (item.second.kind == slot_kind::unknown) {
                    item.second.kind = slot_kind::absent;
                    item.second.read = true;
                }
            }
            scanned_ = true;
        }

        // What one key holds: a record, or a value passed over and why.
        void classify(slot& s, std::string_view key, const boost::json::object& kv) const {
            s.mod_revision = detail::etcd_client::int_field(kv, "mod_revision");
            const std::int64_t lease = detail::etcd_client::int_field(kv, "lease");
            const auto refuse = [&](std::string reason, slot_kind k) {
                skipped_.push_back(skipped_file{where(key), reason});
                s.kind = k;
                s.reason = std::move(reason);
            };
            const auto* value64 = kv.if_contains("value");
            std::optional<std::string> text = value64 && value64->is_string()
                                                  ? detail::base64_decode(value64->get_string())
                                                  : std::optional<std::string>(std::string());
            if (!text) return refuse("the value is not base64", slot_kind::must_not_overwrite);
            if (text->size() > store_->options_.max_value_bytes) {
                return refuse("the value is larger than " + std::to_string(store_->options_.max_value_bytes) + " bytes",
                              slot_kind::must_not_overwrite);
            }
            std::string parse_error;
            auto parsed = detail::parse_json(*text, detail::json_limits{store_->options_.max_depth}, parse_error);
            if (!parsed) return refuse("cannot parse JSON: " + parse_error, slot_kind::must_not_overwrite);
            if (!parsed->is_object()) return refuse("top level is not a JSON object", slot_kind::must_not_overwrite);
            boost::json::object& object = parsed->as_object();
            object.erase(detail::owner_etcd_lease_key);
            if (lease != 0) object[detail::owner_etcd_lease_key] = std::to_string(lease);
            std::optional<Record> value;
            try {
                value.emplace(detail::decode_value<Record>(*parsed, ""));
            } catch (const detail::decode_error& e) {
                s.raw = std::move(object);
                return refuse(std::string("cannot decode the record: ") + e.what(), slot_kind::not_a_record);
            }
            const std::string_view inner_key = detail::key_of(*value);
            if (inner_key != key) {
                s.raw = std::move(object);
                return refuse("the record's key " + detail::quote_record_key(inner_key) + " differs from the key's name " +
                                  detail::quote_record_key(key),
                              slot_kind::not_a_record);
            }
            s.kind = slot_kind::valid;
            s.record.emplace(stored_record<Record>{std::move(*value), std::move(object)});
        }

        etcd_store* store_;
        mutable std::map<std::string, slot, std::less<>> slots_;
        mutable std::vector<skipped_file> skipped_;
        mutable bool scanned_ = false;
        mutable std::int64_t revision_ = 0;
    };

    /// A change feed of the prefix (watch/watcher.hpp): etcd's watch stream,
    /// confirmed before this returns, so it reports every later change.
    std::unique_ptr<detail::etcd_watch_stream> open_change_feed() const {
        return std::make_unique<detail::etcd_watch_stream>(options_.connection, range_start(), range_end(),
                                                           owners_prefix());
    }

    /// Starts a session. Reads nothing.
    template <class Record>
    session<Record> begin() {
        return session<Record>(*this);
    }

private:
    std::string full_key(std::string_view key) const { return options_.prefix + "/" + std::string(key); }
    std::string range_start() const { return options_.prefix + "/"; }
    std::string range_end() const { return options_.prefix + "0"; }  // '0' follows '/'
    // `<prefix>.owners/<lease>`: '.' sorts before '/', so one watch range
    // [owners_prefix, range_end) holds the markers and the records.
    std::string owners_prefix() const { return options_.prefix + ".owners/"; }
    std::string owner_marker(std::int64_t lease) const { return owners_prefix() + std::to_string(lease); }

    // Each lease a record is put with gets its owner marker, put with the
    // same lease before the first record: when the lease ends etcd deletes
    // the marker in the revision that deletes the owner's records, which is
    // how a watcher tells an owner's end from an explicit delete. One put
    // per lease and storage object, apart from the records' txn (whose
    // operations etcd limits to --max-txn-ops, 128 by default). A put that
    // fails is tried again at the next commit; the records' txn then
    // reports the cause (a lease gone is the same error there).
    void mark_owners(const std::set<std::int64_t>& leases) {
        for (const std::int64_t lease : leases) {
            {
                std::lock_guard<std::mutex> hold(marks_->mutex);
                if (marks_->leases.count(lease) != 0) continue;
            }
            detail::etcd_status status;
            try {
                (void)client_->call("/v3/kv/put",
                                    boost::json::object{{"key", detail::base64_encode(owner_marker(lease))},
                                                        {"value", detail::base64_encode("")},
                                                        {"lease", std::to_string(lease)}},
                                    status);
            } catch (const error&) {
                continue;
            }
            if (status.code != 0) continue;
            std::lock_guard<std::mutex> hold(marks_->mutex);
            marks_->leases.insert(lease);
        }
    }

    struct owner_marks {
        std::mutex mutex;
        std::set<std::int64_t> leases;  // leases whose marker this object has put
    };

    options options_;
    std::shared_ptr<detail::etcd_client> client_;
    std::filesystem::path display_;
    std::shared_ptr<owner_marks> marks_ = std::make_shared<owner_marks>();
};

}  // namespace procreg::storage
