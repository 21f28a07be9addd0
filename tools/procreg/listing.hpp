// tools/procreg/listing.hpp — a registry's records, read in one transaction.
//
// Invariant: rows and skipped files come from one lock cycle, so a listing
// never mixes two versions of the registry; liveness is the registry's own
// (open_registry.hpp), and a record without a pid is "unknown", never dead.
#pragma once

#include "output.hpp"

#include <procreg/detail/policy_checks.hpp>
#include <procreg/dynamic_record.hpp>
#include <procreg/stored_record.hpp>
#include <procreg/watch/target.hpp>

#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

namespace procreg_cli {

/// Every record with its liveness, and every file the storage passed over.
struct listing {
    std::vector<row> rows;
    std::vector<procreg::skipped_file> skipped;
};

/// The row for `record`, judged alive or not (unknown without a pid).
inline row make_row(const procreg::dynamic_record& record, bool alive) {
    row out;
    out.key = record.key();
    out.pid = record.pid();
    if (out.pid) out.alive = alive;
    out.fields = record.fields();
    return out;
}

/// Files `tx` passed over; none where the storage fails instead of
/// skipping (json_table: its one file is read whole or not at all).
template <class Transaction>
std::vector<procreg::skipped_file> skipped_in(const Transaction& tx) {
    using session = std::decay_t<decltype(std::declval<Transaction&>().storage_session())>;
    if constexpr (procreg::detail::session_reports_skipped<session>::value) {
        return tx.skipped_files();
    } else {
        return {};
    }
}

/// Lists `reg` under its lock.
template <class Registry>
listing collect(Registry& reg) {
    return reg.transact([](auto& tx) {
        listing out;
        for (auto& item : tx.list()) out.rows.push_back(make_row(item.record, item.alive));
        out.skipped = skipped_in(tx);
        return out;
    });
}

/// Lists the retired records of `reg` (a record directory) under its lock,
/// each judged by the registry's liveness like an active one. Retired files
/// that do not parse are passed over unreported (the storage lists only
/// valid ones); a storage without tombstones has none.
template <class Registry>
listing collect_retired(Registry& reg) {
    return reg.transact([](auto& tx) {
        listing out;
        using session = std::decay_t<decltype(tx.storage_session())>;
        if constexpr (procreg::detail::lists_retired<session>::value) {
            tx.storage_session().for_each_retired([&](const procreg::stored_record<procreg::dynamic_record>& stored) {
                const std::uint64_t pid = stored.value.pid().value_or(0);
                out.rows.push_back(make_row(stored.value, tx.liveness().is_alive(pid, stored.json)));
            });
        }
        return out;
    });
}

/// `skipped` as the `--json` array: [{"path", "reason"}].
inline boost::json::array skipped_json(const std::vector<procreg::skipped_file>& skipped) {
    boost::json::array out;
    for (const auto& s : skipped) out.push_back(boost::json::object{{"path", s.path.string()}, {"reason", s.reason}});
    return out;
}

}  // namespace procreg_cli
