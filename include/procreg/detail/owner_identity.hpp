// procreg/detail/owner_identity.hpp — the JSON keys that tie a record to one
// process instance, and the rule that keeps them honest.
//
// A liveness policy may stamp an owner identity into a record (see
// docs/policy-liveness.md): keys that describe the process the record's pid
// named when the identity was taken. Invariant: an identity never outlives
// the process it was taken for. Whoever rewrites a record for an owner —
// any liveness policy, including one that stamps nothing (kill_liveness) —
// drops every key listed here unless they still describe that owner, so a
// record rewritten for a new owner by a program with another policy is
// judged by its new pid alone, never by the old owner's start time.
#pragma once

#include <boost/json/object.hpp>

#include <string_view>

namespace procreg::detail {

/// Owner start time, clock ticks after boot (pidfd_liveness).
inline constexpr std::string_view owner_start_time_key = "procreg_start_time";
/// Boot id of the owner's boot (pidfd_liveness).
inline constexpr std::string_view owner_boot_id_key = "procreg_boot_id";
/// The owner's pidfs inode number, unique until reboot (pidfd_liveness, Linux >= 6.9).
inline constexpr std::string_view owner_pidfs_inode_key = "procreg_pidfs_inode";
/// The etcd lease a record is put with (liveness/etcd_lease.hpp). Never
/// stored in the value: etcd_store fills it from the key's lease on reading
/// and puts the key with that lease on writing.
inline constexpr std::string_view owner_etcd_lease_key = "procreg_etcd_lease";

/// Every owner identity key procreg has ever written.
inline constexpr std::string_view owner_identity_keys[] = {owner_start_time_key, owner_boot_id_key,
                                                           owner_pidfs_inode_key, owner_etcd_lease_key};

/// Whether `stored` holds any owner identity key.
inline bool has_owner_identity(const boost::json::object& stored) noexcept {
    for (const std::string_view key : owner_identity_keys)
        if (stored.contains(key)) return true;
    return false;
}

/// Whether `stored` holds a process identity: one of the keys
/// pidfd_liveness stamps (a lease is not a process identity).
inline bool has_process_identity(const boost::json::object& stored) noexcept {
    return stored.contains(owner_start_time_key) || stored.contains(owner_boot_id_key) ||
           stored.contains(owner_pidfs_inode_key);
}

/// Removes every owner identity key from `stored`.
inline void drop_owner_identity(boost::json::object& stored) {
    for (const std::string_view key : owner_identity_keys) stored.erase(key);
}

}  // namespace procreg::detail
