// procreg/presets/yoi/error.hpp — how the yoi pod registry reports a refusal.
//
// Every refusal of a yoi operation is a `procreg::yoi::scope_error`. It is a
// `procreg::error`, so generic code that only knows procreg sees a procreg
// code it already handles (duplicate_key, not_found, conflict, invalid_key)
// and `key()` names the record involved. Code that knows yoi reads
// `reason()`: a `yoi::errc` in its own `std::error_category`
// ("procreg.yoi"), which tells apart what procreg folds together (a segment
// conflict and a write conflict are both `procreg::errc::conflict`), plus the
// details the seed's `ScopeLockError` variants carry.
//
// | yoi::errc          | procreg::errc  | key()                 | details                                   |
// |--------------------|----------------|-----------------------|-------------------------------------------|
// | duplicate_pod_name | duplicate_key  | the pod name          | pod                                       |
// | unknown_pod        | not_found      | the missing pod       | pod                                       |
// | segment_conflict   | conflict       | the holder            | pod, competitor, competitor_socket, segment_id |
// | write_conflict     | conflict       | the competitor        | pod, competitor, rule, competitor_rule     |
// | not_subset         | conflict       | the spawner           | pod, spawner, rule                        |
// | invalid_scope      | invalid_key    | the pod, if any       | pod, rule (as given), reason in what()    |
#pragma once

#include <procreg/error.hpp>
#include <procreg/presets/yoi/scope.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

namespace procreg::yoi {

/// Why a yoi operation refused. Values are stable.
enum class errc {
    duplicate_pod_name = 1,  ///< a pod with this name is registered
    unknown_pod,             ///< the named pod is not registered
    segment_conflict,        ///< another pod is writing to this session segment
    write_conflict,          ///< a requested write rule overlaps a live pod's effective write scope
    not_subset,              ///< a delegated rule is outside the spawner's delegation scope
    invalid_scope,           ///< a rule's target is not a valid scope path
};

namespace detail {
class error_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "procreg.yoi"; }
    std::string message(int value) const override {
        switch (static_cast<errc>(value)) {
        case errc::duplicate_pod_name: return "pod name is already registered";
        case errc::unknown_pod: return "pod is not registered";
        case errc::segment_conflict: return "session segment is held by another pod";
        case errc::write_conflict: return "write scope conflicts with another pod";
        case errc::not_subset: return "scope is not within the delegation scope";
        case errc::invalid_scope: return "invalid scope";
        }
        return "unknown yoi error";
    }
};
}  // namespace detail

/// The category of every `yoi::errc`.
inline const std::error_category& error_category() noexcept {
    static const detail::error_category_impl instance;
    return instance;
}

/// Makes `yoi::errc` usable wherever a `std::error_code` is expected.
inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

/// The procreg code a yoi refusal is reported under (see the table above).
constexpr procreg::errc core_code(errc e) noexcept {
    switch (e) {
    case errc::duplicate_pod_name: return procreg::errc::duplicate_key;
    case errc::unknown_pod: return procreg::errc::not_found;
    case errc::segment_conflict:
    case errc::write_conflict:
    case errc::not_subset: return procreg::errc::conflict;
    case errc::invalid_scope: return procreg::errc::invalid_key;
    }
    return procreg::errc::conflict;
}

/// The facts a `scope_error` carries; fields a reason does not use stay empty.
struct scope_error_details {
    std::string pod;                           ///< the pod the operation was about (incoming, released, missing)
    std::string competitor;                    ///< the pod in the way: write conflict competitor, segment holder
    std::string competitor_socket;             ///< the segment holder's socket
    std::string spawner;                       ///< the spawner, for not_subset
    std::optional<std::string> segment_id;     ///< the contested segment
    std::optional<scope_rule> rule;            ///< the requested rule at fault
    std::optional<scope_rule> competitor_rule; ///< the competitor's rule it overlaps
};

/// A refused yoi operation: a `procreg::error` with a yoi reason and details.
class scope_error : public procreg::error {
public:
    /// Builds the error for `reason` about the table file `table`, with a
    /// human sentence `detail`; `key()` is `key`.
    scope_error(errc reason, std::filesystem::path table, const std::string& detail, std::string key,
                scope_error_details details)
        : procreg::error(core_code(reason), std::move(table), detail,
                         procreg::error_details{std::move(key), {}, 0}),
          reason_(reason),
          details_(std::move(details)) {}

    /// The yoi reason.
    errc reason() const noexcept { return reason_; }
    /// The yoi reason as an error code in the "procreg.yoi" category.
    std::error_code yoi_code() const noexcept { return make_error_code(reason_); }
    /// Every detail at once.
    const scope_error_details& details() const noexcept { return details_; }
    /// The pod the operation was about.
    const std::string& pod() const noexcept { return details_.pod; }
    /// The pod in the way (write conflict competitor, segment holder).
    const std::string& competitor() const noexcept { return details_.competitor; }
    /// The segment holder's socket.
    const std::string& competitor_socket() const noexcept { return details_.competitor_socket; }
    /// The spawner whose delegation scope refused a rule.
    const std::string& spawner() const noexcept { return details_.spawner; }
    /// The contested segment.
    const std::optional<std::string>& segment_id() const noexcept { return details_.segment_id; }
    /// The requested rule at fault.
    const std::optional<scope_rule>& rule() const noexcept { return details_.rule; }
    /// The competitor's rule the requested rule overlaps.
    const std::optional<scope_rule>& competitor_rule() const noexcept { return details_.competitor_rule; }

private:
    errc reason_;
    scope_error_details details_;
};

}  // namespace procreg::yoi

namespace std {
template <>
struct is_error_code_enum<procreg::yoi::errc> : true_type {};
}  // namespace std
