// tests/support/counter_registries.hpp — registries of counter_record
// (support/counter_record.hpp), opened the same way by every test that
// needs one, in every process of that test.
//
// - `counter_registry<Storage, Lock, Liveness>`: the registry type;
// - `open_counter_table<Lock, Liveness>(dir, array_key)`: a json_table at
//   `<dir>/registry.json` holding the records under `array_key`, fsync off
//   (what these tests prove is exclusion or liveness, not durability);
// - `basic_json_table_kind<Durable>`, `basic_record_files_kind<Durable>`,
//   `basic_claim_file_kind<Durable>`: one storage each, opened on a
//   directory, for tests that run one body over the three file storages.
#pragma once

#include "counter_record.hpp"

#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/claim_file.hpp>
#include <procreg/storage/json_table.hpp>
#include <procreg/storage/record_files.hpp>

#include <filesystem>
#include <string>
#include <utility>

namespace procreg_test {

/// A registry of counter_record on `Storage`.
template <class Storage, class Lock = procreg::lock::flock_lock, class Liveness = procreg::liveness::kill_liveness>
using counter_registry = procreg::registry<counter_record, Lock, Storage, Liveness>;

/// The json_table registry of counters at `<dir>/registry.json`, its records
/// under `array_key` (the table's default when empty), fsync off.
template <class Lock = procreg::lock::flock_lock, class Liveness = procreg::liveness::kill_liveness>
counter_registry<procreg::storage::json_table, Lock, Liveness> open_counter_table(const std::filesystem::path& dir,
                                                                                  const std::string& array_key = {},
                                                                                  Liveness liveness = Liveness{}) {
    procreg::storage::json_table_options opts;
    opts.file = dir / "registry.json";
    if (!array_key.empty()) opts.array_key = array_key;
    opts.durable = false;
    return counter_registry<procreg::storage::json_table, Lock, Liveness>(
        procreg::storage::json_table(std::move(opts)), std::move(liveness));
}

/// The three file storages, each opened on `dir` the same way in every
/// process; `Durable` false turns fsync off where durability is not under test.
template <bool Durable>
struct basic_json_table_kind {
    using storage = procreg::storage::json_table;
    static storage open(const std::filesystem::path& dir) {
        storage::options opts;
        opts.file = dir / "registry.json";
        opts.durable = Durable;
        return storage(std::move(opts));
    }
};
/// As `basic_json_table_kind`: the records are the files of `dir`.
template <bool Durable>
struct basic_record_files_kind {
    using storage = procreg::storage::record_files;
    static storage open(const std::filesystem::path& dir) {
        storage::options opts;
        opts.root = dir;
        opts.durable = Durable;
        return storage(std::move(opts));
    }
};
/// As `basic_json_table_kind`: a JSON claim at `<dir>/claim.json`.
template <bool Durable>
struct basic_claim_file_kind {
    using storage = procreg::storage::claim_file<procreg::storage::json_record_format>;
    static storage open(const std::filesystem::path& dir) {
        storage::options opts;
        opts.file = dir / "claim.json";
        opts.durable = Durable;
        return storage(std::move(opts));
    }
};

}  // namespace procreg_test
