// fuzz/claim_pid_text_fuzz.cpp — trusty-memory's `daemon.lock` ("<pid>\n") through storage::claim_file.
//
// The input is the whole lock file. Besides what claim_fuzz.hpp asserts:
// - `trusty::read_lock_pid` (the preset's peek) returns the pid exactly
//   when the generic peek finds a claim, and the same pid;
// - differential check against the seed's rule, written out independently
//   here: Rust's `trim().parse::<u32>()` over ASCII whitespace, an optional
//   '+', then only digits, the value at most u32::MAX. (Rust's `trim` also
//   strips non-ASCII Unicode whitespace; procreg does not, so such files
//   are outside this check: see docs/reliability.md, "Fuzzing".)
#include "claim_fuzz.hpp"

#include <procreg/presets/trusty.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace {

// The seed's reading of daemon.lock, for ASCII input.
std::optional<std::uint32_t> seed_parse(std::string_view text) {
    const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
    while (!text.empty() && space(text.front())) text.remove_prefix(1);
    while (!text.empty() && space(text.back())) text.remove_suffix(1);
    if (!text.empty() && text.front() == '+') text.remove_prefix(1);
    if (text.empty()) return std::nullopt;
    std::uint64_t value = 0;
    for (const char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        value = value * 10 + static_cast<std::uint64_t>(c - '0');
        if (value > 0xffffffffULL) return std::nullopt;
    }
    return static_cast<std::uint32_t>(value);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const auto dir = procreg_fuzz::fresh_dir("trusty");
    const auto file = procreg::trusty::lock_file_path_for_dir(dir);
    auto options = procreg::trusty::options(file);
    options.durable = false;  // tmpfs: fsync changes nothing but the speed
    const auto peeked = procreg_fuzz::fuzz_claim<procreg::storage::pid_text_format>(
        data, size, options, procreg::trusty::daemon_lock_record{4242});

    const std::string_view input(reinterpret_cast<const char*>(data), size);
    bool ascii = true;
    for (const char c : input) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
    const auto expected = seed_parse(input);
    if (ascii) {
        PROCREG_FUZZ_CHECK(expected.has_value() == peeked.record.has_value(),
                            expected ? "a pid the seed reads is unparseable to procreg"
                                     : "procreg reads a pid the seed refuses");
        if (expected) {
            PROCREG_FUZZ_CHECK(peeked.record->pid == *expected, "procreg reads another pid than the seed");
        }
    }

    // The preset's own peek, on the file as it is now (republished as "<pid>\n").
    procreg_fuzz::write_file(file, input);
    std::optional<std::uint32_t> pid;
    procreg_fuzz::guarded(
        "trusty::read_lock_pid", [&] { pid = procreg::trusty::read_lock_pid(file); },
        [&](const procreg::error& e) { procreg_fuzz::fail(std::string("read_lock_pid threw: ") + e.what()); });
    PROCREG_FUZZ_CHECK(pid.has_value() == peeked.record.has_value(), "read_lock_pid and peek disagree");
    if (pid) PROCREG_FUZZ_CHECK(*pid == peeked.record->pid, "read_lock_pid returns another pid than peek");
    return 0;
}
