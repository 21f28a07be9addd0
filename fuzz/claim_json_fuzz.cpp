// fuzz/claim_json_fuzz.cpp — INSOMNIA's `.consolidation.lock` (one JSON object) through storage::claim_file.
//
// The input is the whole lock file, read as the insomnia preset does
// (json_record_format, lock_record decoded leniently, an unparseable lock is
// stale). See claim_fuzz.hpp for what is asserted.
#include "claim_fuzz.hpp"

#include <procreg/presets/insomnia.hpp>

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const auto staging = procreg_fuzz::fresh_dir("insomnia");
    auto options = procreg::insomnia::options(staging);
    options.durable = false;  // tmpfs: fsync changes nothing but the speed
    procreg::insomnia::lock_record fresh{4242, "pod-fuzz", "2026-01-01T00:00:00.000000000Z",
                                         {"01960000-0000-7000-8000-000000000000"}};
    (void)procreg_fuzz::fuzz_claim<procreg::storage::json_record_format>(data, size, options, fresh);
    return 0;
}
