// tests/support/algocline_texts.hpp — algocline tables written by hand, in
// the seed's pretty layout, for the tests of json_table's loads.
#pragma once

#include <procreg/presets/algocline.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace procreg_test {

/// A pool session with fixed fields but the key and the pid.
inline procreg::algocline::pool_session session(std::string sid, std::uint32_t pid = 1) {
    return procreg::algocline::pool_session{std::move(sid), pid, "/run/s.sock", "0.30.0", "2026-01-01T00:00:00Z"};
}

/// A record as serde_json's to_string_pretty writes it in the table.
inline std::string pretty(const procreg::algocline::pool_session& r) {
    std::string out;
    procreg::detail::append_plain_pretty(out, r, 2);
    return out;
}

/// The table file as the pretty writer lays it out, the records given as
/// texts, with `before` and `after` written around the records member.
inline std::string table_of(const std::vector<std::string>& records, const std::string& before = "",
                            const std::string& after = "") {
    std::string out = "{\n" + before + "  \"sessions\": [";
    for (std::size_t i = 0; i < records.size(); ++i) out += (i ? ",\n    " : "\n    ") + records[i];
    out += records.empty() ? "]" : "\n  ]";
    return out + after + "\n}";
}

}  // namespace procreg_test
