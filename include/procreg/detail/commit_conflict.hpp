// procreg/detail/commit_conflict.hpp — "another writer got there first: run the steps again".
//
// A storage that serializes transactions itself by optimistic concurrency
// (etcd_store: read at a revision, commit as one compare-and-swap) throws
// `commit_conflict` from its session when the state it read changed before
// its commit; nothing was written. `registry` catches it and runs the
// transaction again from a fresh session, so a caller never sees it. Local
// storages never throw it: their lock already excludes every other writer.
#pragma once

namespace procreg::detail {

/// Thrown by a session (its reads or its commit) when what it read is no
/// longer current; nothing was written. Never leaves the registry.
struct commit_conflict {};

}  // namespace procreg::detail
