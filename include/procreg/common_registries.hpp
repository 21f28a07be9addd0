// procreg/common_registries.hpp — the two registries most programs need,
// named, and constructible from a path alone.
//
//     procreg::json_file_registry<worker> reg("/run/user/1000/app/workers.json");
//     procreg::directory_registry<agent> agents("/var/lib/app/agents");
//
// Both lock with flock on a file beside the data (so the seeds' Rust
// programs and any flock user exclude each other), judge owners by
// kill(pid, 0), and create their directory 0700. Anything else is one
// template argument or one options field away: these are plain
// `procreg::registry` instantiations, as spdlog's `basic_file_sink_mt` is
// a named `basic_file_sink<std::mutex>`.
#pragma once

#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/json_table.hpp>
#include <procreg/storage/record_files.hpp>

namespace procreg {

/// Every record in one JSON file, `{"records": [...]}`, replaced atomically;
/// flock on `<file stem>.lock` beside it. Construct from the file's path, or
/// from `storage::json_table(options)` for another array key or lock file.
template <class Record, class Liveness = liveness::kill_liveness>
using json_file_registry = registry<Record, lock::flock_lock, storage::json_table, Liveness>;

/// One JSON file per record, `<root>/<key>.json`, soft-deleted into
/// `<root>/retired/`; flock on `<root>/.registry.lock`. Construct from the
/// root directory, or from `storage::record_files(options)`.
template <class Record, class Liveness = liveness::kill_liveness>
using directory_registry = registry<Record, lock::flock_lock, storage::record_files, Liveness>;

}  // namespace procreg
