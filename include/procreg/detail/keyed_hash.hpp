// procreg/detail/keyed_hash.hpp — a hash of untrusted keys that an attacker cannot aim.
//
// Keys read from a registry file go into hash tables (the loaded table's key
// index). With an unkeyed hash, whoever writes the file can choose keys that
// share buckets and make every load quadratic. SipHash-1-3 under a secret
// key drawn once per process from getrandom(2) makes a key's bucket
// unpredictable without that key.
//
// Invariant: within one process a key always hashes to the same value (the
// secret is fixed at first use); nothing hashed here is ever stored.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include <sys/random.h>
#include <unistd.h>

namespace procreg::detail {

struct hash_secret {
    std::uint64_t k0 = 0, k1 = 0;
};

// Drawn once per process. getrandom(2) does not fail for 16 bytes once the
// pool is initialised; should it (a seccomp filter, an old kernel), the
// clock, the pid and an address (ASLR) still vary per process.
inline const hash_secret& process_hash_secret() noexcept {
    static const hash_secret secret = [] {
        hash_secret s;
        std::uint64_t words[2] = {0, 0};
        if (::getrandom(words, sizeof words, GRND_NONBLOCK) == static_cast<ssize_t>(sizeof words)) {
            s.k0 = words[0];
            s.k1 = words[1];
        } else {
            s.k0 = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
                   (static_cast<std::uint64_t>(::getpid()) << 32);
            s.k1 = reinterpret_cast<std::uintptr_t>(&s) * 0x9E3779B97F4A7C15ull;
        }
        return s;
    }();
    return secret;
}

/// SipHash-1-3 of `data` under the process's secret key.
inline std::uint64_t keyed_hash(std::string_view data) noexcept {
    const hash_secret& key = process_hash_secret();
    std::uint64_t v0 = 0x736f6d6570736575ull ^ key.k0, v1 = 0x646f72616e646f6dull ^ key.k1;
    std::uint64_t v2 = 0x6c7967656e657261ull ^ key.k0, v3 = 0x7465646279746573ull ^ key.k1;
    const auto rotl = [](std::uint64_t x, int b) { return (x << b) | (x >> (64 - b)); };
    const auto round = [&] {
        v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);
        v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;
        v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;
        v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);
    };
    const std::size_t len = data.size();
    const char* p = data.data();
    const std::size_t whole = len - len % 8;
    for (std::size_t i = 0; i < whole; i += 8) {
        std::uint64_t m;
        std::memcpy(&m, p + i, 8);  // little-endian word on the platforms procreg runs on (Linux x86-64, arm64)
        v3 ^= m;
        round();
        v0 ^= m;
    }
    std::uint64_t last = static_cast<std::uint64_t>(len & 0xff) << 56;
    for (std::size_t i = 0; i < len % 8; ++i) last |= static_cast<std::uint64_t>(static_cast<unsigned char>(p[whole + i])) << (8 * i);
    v3 ^= last;
    round();
    v0 ^= last;
    v2 ^= 0xff;
    round();
    round();
    round();
    return v0 ^ v1 ^ v2 ^ v3;
}

}  // namespace procreg::detail
