// tests/support/policy_matrix.hpp — run one seed suite under another lock or liveness policy.
//
// The seed suites name their registry type through `procreg_test::under_test`.
// Built plainly, that is the preset's own registry. The policy matrix in
// tests/CMakeLists.txt builds each suite again with
//   -DPROCREG_TEST_LOCK=<lock policy type>
//   -DPROCREG_TEST_LIVENESS=<liveness policy type>
// so the very same assertions prove the policies interchangeable
// (procreg::with_lock_t / procreg::with_liveness_t do the swap).
#pragma once

#include <procreg/detail/owner_identity.hpp>
#include <procreg/registry.hpp>

#include <boost/json/object.hpp>

#if defined(PROCREG_TEST_LOCK)
#include <procreg/lock/named_mutex_lock.hpp>
#endif
#if defined(PROCREG_TEST_LIVENESS)
#include <procreg/liveness/pidfd_liveness.hpp>
#endif

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include <unistd.h>

namespace procreg_test {

/// `Registry` with the matrix's lock and liveness policies, where set.
template <class Registry>
struct matrix_rebind {
#if defined(PROCREG_TEST_LOCK)
    using locked = procreg::with_lock_t<Registry, PROCREG_TEST_LOCK>;
#else
    using locked = Registry;
#endif
#if defined(PROCREG_TEST_LIVENESS)
    using type = procreg::with_liveness_t<locked, PROCREG_TEST_LIVENESS>;
#else
    using type = locked;
#endif
};

/// The registry type a seed suite exercises.
template <class Registry>
using under_test = typename matrix_rebind<Registry>::type;

/// Whether the lock under test keeps a lock file on disk (flock does; a named
/// mutex lives in shared memory instead).
template <class Registry>
constexpr bool lock_uses_file = std::is_same_v<typename under_test<Registry>::lock_type, procreg::lock::flock_lock>;

/// Whether the liveness under test stamps identity fields into records.
template <class Registry>
constexpr bool liveness_stamps_identity =
#if defined(PROCREG_TEST_LIVENESS)
    std::is_same_v<typename under_test<Registry>::liveness_type, procreg::liveness::pidfd_liveness>;
#else
    false;
#endif

/// The identity fields pidfd_liveness adds to a record.
inline bool is_identity_field(const std::string& key) {
    for (const std::string_view field : procreg::detail::owner_identity_keys) {
        if (key == field) return true;
    }
    return false;
}

/// How many identity fields the liveness under test stamps for a live
/// process on this kernel: none, or start time and boot id, plus the pidfs
/// inode where the kernel has pidfs (Linux >= 6.9).
template <class Registry>
std::size_t identity_fields_stamped() {
    if constexpr (liveness_stamps_identity<Registry>) {
        boost::json::object stamped;
        typename under_test<Registry>::liveness_type{}.stamp_identity(static_cast<std::uint64_t>(::getpid()),
                                                                      stamped);
        return stamped.size();
    } else {
        return 0;
    }
}

}  // namespace procreg_test
