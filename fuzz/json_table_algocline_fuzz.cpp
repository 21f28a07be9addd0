// fuzz/json_table_algocline_fuzz.cpp — algocline's registry.json through storage::json_table.
//
// The input is the whole `registry.json` (`{"sessions": [...]}`), loaded
// as the algocline preset does (array key "sessions", pool_session records
// decoded leniently from BOOST_DESCRIBE_STRUCT). See json_table_fuzz.hpp
// for what is asserted.
#include "json_table_fuzz.hpp"

#include <procreg/presets/algocline.hpp>

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const auto dir = procreg_fuzz::fresh_dir("algocline");
    auto options = procreg::algocline::options(dir / "registry.json");
    options.durable = false;  // tmpfs: fsync changes nothing but the speed
    procreg_fuzz::fuzz_json_table<procreg::algocline::pool_session>(data, size, options);
    return 0;
}
