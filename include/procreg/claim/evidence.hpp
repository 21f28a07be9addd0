// procreg/claim/evidence.hpp — how a claim handle knows the claim on disk is still its own.
//
// Storages with `file_token()` (claim_file) give the file's identity, which
// the handle keeps open so its inode cannot be reused; the others give the
// record's JSON as it would be written, made unique at every acquire by a
// fresh random nonce under `claim_nonce_key`. Also the holder's name for
// messages (the optional `record_traits<Record>::name`).
//
// Invariant: two acquisitions never leave equal evidence (a new file, or a
// new nonce), so an older handle's release never removes a newer claim.
#pragma once

#include <procreg/claim/options.hpp>
#include <procreg/detail/json_codec.hpp>
#include <procreg/error.hpp>
#include <procreg/record_traits.hpp>
#include <procreg/stored_record.hpp>

#include <boost/json/serialize.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <unistd.h>

namespace procreg {

namespace detail {

/// 128 random bits as 32 hex digits. Only uniqueness matters: should the
/// system have no random source, the bits are pid, time and a counter.
inline std::string random_nonce() {
    static const char hex[] = "0123456789abcdef";
    static std::atomic<std::uint32_t> counter{0};
    std::uint32_t words[4] = {};
    try {
        std::random_device device;
        for (auto& word : words) word = static_cast<std::uint32_t>(device());
    } catch (const std::exception&) {
        const auto now = static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
        words[0] = static_cast<std::uint32_t>(::getpid());
        words[1] = static_cast<std::uint32_t>(now);
        words[2] = static_cast<std::uint32_t>(now >> 32);
        words[3] = counter.fetch_add(1, std::memory_order_relaxed);
    }
    std::string out;
    for (auto bits : words) {
        for (int digit = 0; digit < 8; ++digit, bits >>= 4) out += hex[bits & 0xf];
    }
    return out;
}

template <class Record, class = void>
struct traits_has_name : std::false_type {};
template <class Record>
struct traits_has_name<Record,
                       std::void_t<decltype(std::string(record_traits<Record>::name(std::declval<const Record&>())))>>
    : std::true_type {};

/// The holder's name, from the optional `record_traits<Record>::name`.
template <class Record>
std::optional<std::string> owner_name_of(const Record& record) {
    if constexpr (traits_has_name<Record>::value) {
        return std::string(record_traits<Record>::name(record));
    } else {
        (void)record;
        return std::nullopt;
    }
}

/// Evidence that the claim on disk is the one a handle wrote. Storages with
/// `file_token()` (claim_file) give the file identity, which pins the file;
/// for the others it is the record's JSON as it would be written, made
/// unique by `mark` (a fresh `claim_nonce_key`) at every acquire.
template <class Session, class = void>
struct claim_evidence {
    using type = std::string;
    template <class Record>
    static std::optional<type> of(const Session& session, std::string_view key) {
        const stored_record<Record>* stored = session.find(key);
        if (!stored) return std::nullopt;
        return boost::json::serialize(encode_over(stored->json, stored->value));
    }
    /// Gives the record just inserted under `key` a fresh nonce.
    template <class Record>
    static void mark(Session& session, std::string_view key) {
        const stored_record<Record>* stored = session.find(key);
        if (!stored) return;
        stored_record<Record> marked = *stored;
        marked.json[claim_nonce_key] = random_nonce();
        if (auto refused = session.put(std::move(marked))) {
            throw error(errc::unsupported_file, refused->path, refused->reason,
                        error::details{std::string(key), {}, 0});
        }
    }
};
template <class Session>
struct claim_evidence<Session, std::void_t<decltype(*std::declval<const Session&>().file_token())>> {
    using type = std::decay_t<decltype(*std::declval<const Session&>().file_token())>;
    template <class Record>
    static std::optional<type> of(const Session& session, std::string_view /*key*/) {
        return session.file_token();
    }
    /// Nothing to add: every publish is a new file, and the token pins it.
    template <class Record>
    static void mark(Session& /*session*/, std::string_view /*key*/) {}
};

/// A storage's report that its file changed under it (see file comment).
inline bool is_foreign_change(const error& e) noexcept { return e.code() == errc::changed_outside_lock; }

}  // namespace detail

}  // namespace procreg
