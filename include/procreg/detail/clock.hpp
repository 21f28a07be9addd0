// procreg/detail/clock.hpp — timestamps in the formats the seeds write.
#pragma once

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>

namespace procreg::detail {

/// Now, UTC, as RFC 3339 / ISO 8601: "2026-11-21T09:30:05Z", or with
/// `fraction_digits` (1..9) sub-second digits: "2026-11-21T09:30:05.123456789Z".
inline std::string now_iso8601(int fraction_digits = 0) {
    const auto now = std::chrono::system_clock::now();
    const auto seconds = std::chrono::time_point_cast<std::chrono::seconds>(now);
    const std::time_t t = std::chrono::system_clock::to_time_t(seconds);
    std::tm utc{};
    ::gmtime_r(&t, &utc);
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d", utc.tm_year + 1900, utc.tm_mon + 1,
                  utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec);
    std::string out(buffer);
    if (fraction_digits > 0) {
        if (fraction_digits > 9) fraction_digits = 9;
        long long nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(now - seconds).count();
        for (int i = fraction_digits; i < 9; ++i) nanos /= 10;
        std::snprintf(buffer, sizeof buffer, ".%0*lld", fraction_digits, nanos);
        out += buffer;
    }
    out += 'Z';
    return out;
}

}  // namespace procreg::detail
