// procreg/detail/ask_liveness.hpp — what a liveness policy is shown of a stored record.
//
// `is_alive(pid, stored)` is promised the record as it is stored: its own
// fields, the keys its type does not know, and the identity a policy stamped
// (docs/policy-liveness.md). A storage may keep less in
// `stored_record::json`: json_table reads a record in the pretty format
// straight into its struct and keeps no object for it, and a record added in
// this transaction holds only what was stamped. So the object is completed
// here from the typed value, unless the policy declares that it reads no
// more than the stamped identity (`judges_by_stored_identity`) or only the
// pid (`answers_by_pid_alone`) — as every built-in policy does, so the
// common path encodes nothing.
//
// Invariant: every liveness question the core asks goes through `ask_alive`,
// so a policy's answer never depends on how the storage spelled the record.
#pragma once

#include <procreg/detail/json_codec.hpp>
#include <procreg/stored_record.hpp>

#include <boost/json/object.hpp>

#include <cstdint>
#include <type_traits>

namespace procreg::detail {

/// True for a liveness policy that declares `answers_by_pid_alone = true`:
/// its answer depends on the pid only, never on the stored identity, so one
/// pass over many records may ask it once per distinct pid.
template <class Liveness, class = void>
struct answers_by_pid_alone : std::false_type {};
template <class Liveness>
struct answers_by_pid_alone<Liveness, std::void_t<decltype(Liveness::answers_by_pid_alone)>>
    : std::bool_constant<Liveness::answers_by_pid_alone> {};

/// True for a liveness policy that declares `judges_by_stored_identity =
/// true`: of `stored` it reads only the identity keys it stamps.
template <class Liveness, class = void>
struct judges_by_stored_identity : std::false_type {};
template <class Liveness>
struct judges_by_stored_identity<Liveness, std::void_t<decltype(Liveness::judges_by_stored_identity)>>
    : std::bool_constant<Liveness::judges_by_stored_identity> {};

/// `liveness.is_alive` for the record `value` whose stored object is `json`.
template <class Liveness, class Record>
bool ask_alive(const Liveness& liveness, std::uint64_t pid, const Record& value, const boost::json::object& json) {
    if constexpr (answers_by_pid_alone<Liveness>::value || judges_by_stored_identity<Liveness>::value) {
        return liveness.is_alive(pid, json);
    } else {
        boost::json::object whole;
        try {
            whole = merge_over(json, value);
        } catch (const decode_error&) {
            // A value no store could hold (a NaN, an infinity: only a
            // caller's own record, never one read back) is judged by what
            // is stored for it, as the policy always could be.
            return liveness.is_alive(pid, json);
        }
        return liveness.is_alive(pid, whole);
    }
}

/// The same for a stored record.
template <class Liveness, class Record>
bool ask_alive(const Liveness& liveness, std::uint64_t pid, const stored_record<Record>& stored) {
    return ask_alive(liveness, pid, stored.value, stored.json);
}

}  // namespace procreg::detail
