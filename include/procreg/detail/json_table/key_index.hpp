// procreg/detail/json_table/key_index.hpp — a loaded table's key -> position index, flat.
//
// Why not std::unordered_map<std::string, std::size_t>: that is one node
// allocation and one copy of the key per record, paid on every load of a
// table another process wrote and again when the stale state is dropped
// (issue 17). This index is one array of (position, hash) pairs with linear
// probing; the keys stay where they are, in the records, and are reached
// through a `key_at(position)` callable given to each call.
//
// A loaded table's index is built in one go (`build`): the keys' hashes
// first, in file order, then the inserts with the bucket of a later key
// prefetched, so that at 100,000 records the inserts do not each wait for
// a cache miss on the bucket array.
//
// The hash is keyed with a per-process secret (detail/keyed_hash.hpp): the
// keys come from an untrusted file, and an unkeyed hash would let its
// writer fill one run of buckets and make every load quadratic.
//
// Invariants: every stored position names a record whose key hashes to the
// stored hash, and no two stored positions name records with one key; the
// array is a power of two at most half full, so a probe always ends at an
// empty bucket. Erasure shifts the following entries back (no tombstones),
// so probe chains never lengthen with churn.
#pragma once

#include <procreg/detail/keyed_hash.hpp>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string_view>
#include <vector>

namespace procreg::detail::json_table_impl {

class key_index {
public:
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

    std::size_t size() const noexcept { return size_; }

    /// Room for `count` keys without growing.
    void reserve(std::size_t count) {
        std::size_t capacity = 16;
        while (capacity < count * 2) capacity *= 2;
        if (capacity > buckets_.size()) regrow(capacity);
    }

    /// The position of the record with `key`, or npos.
    template <class KeyAt>
    std::size_t find(std::string_view key, const KeyAt& key_at) const {
        if (buckets_.empty()) return npos;
        const std::uint32_t h = hash(key);
        for (std::size_t i = h & mask(); buckets_[i].used(); i = (i + 1) & mask()) {
            if (buckets_[i].hash == h && key_at(buckets_[i].position()) == key) return buckets_[i].position();
        }
        return npos;
    }

    /// Adds `key` at `position`; false (nothing added) when the key is there already.
    template <class KeyAt>
    bool insert(std::string_view key, std::size_t position, const KeyAt& key_at) {
        if ((size_ + 1) * 2 > buckets_.size()) regrow(buckets_.empty() ? 16 : buckets_.size() * 2);
        return place(key, hash(key), position, key_at);
    }

    /// Indexes positions 0 .. count-1 (an empty index); false, with the
    /// index left empty, when two of them have one key.
    template <class KeyAt>
    bool build(std::size_t count, const KeyAt& key_at) {
        clear();
        reserve(count);
        std::vector<std::uint32_t> hashes(count);
        for (std::size_t p = 0; p < count; ++p) hashes[p] = hash(key_at(p));
        constexpr std::size_t ahead = 16;
        for (std::size_t p = 0; p < count; ++p) {
            if (p + ahead < count) __builtin_prefetch(&buckets_[hashes[p + ahead] & mask()], 1);
            if (!place(key_at(p), hashes[p], p, key_at)) {
                clear();
                return false;
            }
        }
        return true;
    }

    /// Removes `key`; false when it was not there.
    template <class KeyAt>
    bool erase(std::string_view key, const KeyAt& key_at) {
        if (buckets_.empty()) return false;
        const std::uint32_t h = hash(key);
        std::size_t i = h & mask();
        for (;; i = (i + 1) & mask()) {
            if (!buckets_[i].used()) return false;
            if (buckets_[i].hash == h && key_at(buckets_[i].position()) == key) break;
        }
        // Backward-shift deletion: move up every following entry whose home
        // bucket does not lie cyclically in (i, j].
        for (std::size_t j = i;;) {
            j = (j + 1) & mask();
            if (!buckets_[j].used()) break;
            const std::size_t home = buckets_[j].hash & mask();
            const bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
            if (stays) continue;
            buckets_[i] = buckets_[j];
            i = j;
        }
        buckets_[i] = bucket{};
        --size_;
        return true;
    }

    /// Renumbers every position p from `first` on as moved[p - first] (a
    /// compaction of the records).
    void renumber(std::size_t first, const std::vector<std::size_t>& moved) {
        for (bucket& b : buckets_) {
            if (b.used() && b.position() >= first) b.slot = static_cast<std::uint32_t>(moved[b.position() - first] + 1);
        }
    }

    /// Moves every position p from `first` on to p + delta (records
    /// inserted or erased before them); delta may be negative.
    void shift(std::size_t first, std::ptrdiff_t delta) noexcept {
        if (delta == 0) return;
        for (bucket& b : buckets_) {
            if (b.used() && b.position() >= first) b.slot = static_cast<std::uint32_t>(static_cast<std::ptrdiff_t>(b.slot) + delta);
        }
    }

    /// The longest run of filled buckets, the most a probe can walk: a few
    /// dozen in a half-full table whatever the keys (the hash is keyed).
    std::size_t longest_run() const noexcept {
        std::size_t longest = 0, run = 0;
        // Twice round, so a run that wraps past the end is counted whole.
        for (std::size_t i = 0; i < 2 * buckets_.size(); ++i) {
            run = buckets_[i & mask()].used() ? run + 1 : 0;
            if (run > longest) longest = run;
        }
        return longest < buckets_.size() ? longest : buckets_.size();
    }

    void clear() noexcept {
        buckets_.clear();
        size_ = 0;
    }

private:
    // Eight bytes: positions are below 2^32 - 1 (a table file of that many
    // records would far exceed any size limit; `place` checks it anyway).
    struct bucket {
        std::uint32_t slot = 0;  // position + 1; 0 for an empty bucket
        std::uint32_t hash = 0;
        bool used() const noexcept { return slot != 0; }
        std::size_t position() const noexcept { return static_cast<std::size_t>(slot - 1); }
    };

    // Keyed (detail/keyed_hash.hpp): the keys come from a file anyone able
    // to write the registry controls, and with a public hash they could be
    // chosen to fill one run of buckets, making each load quadratic.
    static std::uint32_t hash(std::string_view key) noexcept {
        const std::uint64_t h = keyed_hash(key);
        return static_cast<std::uint32_t>(h ^ (h >> 32));
    }
    std::size_t mask() const noexcept { return buckets_.size() - 1; }

    template <class KeyAt>
    bool place(std::string_view key, std::uint32_t h, std::size_t position, const KeyAt& key_at) {
        if (position >= 0xffffffffu) throw std::length_error("procreg: too many records for one json_table");
        std::size_t i = h & mask();
        for (; buckets_[i].used(); i = (i + 1) & mask()) {
            if (buckets_[i].hash == h && key_at(buckets_[i].position()) == key) return false;
        }
        buckets_[i] = bucket{static_cast<std::uint32_t>(position + 1), h};
        ++size_;
        return true;
    }

    void regrow(std::size_t capacity) {
        std::vector<bucket> old(capacity);
        old.swap(buckets_);
        for (const bucket& b : old) {
            if (!b.used()) continue;
            std::size_t i = b.hash & mask();
            while (buckets_[i].used()) i = (i + 1) & mask();
            buckets_[i] = b;
        }
    }

    std::vector<bucket> buckets_;
    std::size_t size_ = 0;
};

}  // namespace procreg::detail::json_table_impl
