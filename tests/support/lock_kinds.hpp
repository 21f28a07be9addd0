// tests/support/lock_kinds.hpp — the lock policies a reliability test runs under.
//
// Each kind names a lock policy and knows how to ask, from another process,
// whether the lock is free (the fault drivers' "no lock is left held"), and
// how to clean up what it leaves outside the test directory (a named
// mutex's shared-memory segment). Used as the type list of
// BOOST_AUTO_TEST_CASE_TEMPLATE, so case names read "insert<locks__flock>".
#pragma once

#include "lock_probe.hpp"

#include <procreg/lock/flock_lock.hpp>
#include <procreg/lock/named_mutex_lock.hpp>

#include <boost/mpl/list.hpp>

#include <filesystem>

namespace locks {

/// flock(2) on the storage's lock file (what every preset uses).
struct flock {
    using type = procreg::lock::flock_lock;
    static constexpr const char* name = "flock";
    /// Whether another process can take the lock now.
    static bool is_free(const std::filesystem::path& lock_path) {
        return procreg_test::probe_lock_in_child<type>(lock_path) == 0;
    }
    /// Nothing outside the directory.
    static void cleanup(const std::filesystem::path&) {}
};

/// A robust pthread mutex in named shared memory, one segment per lock path.
struct named_mutex {
    using type = procreg::lock::named_mutex_lock;
    static constexpr const char* name = "named_mutex";
    /// Whether another process can take the lock now.
    static bool is_free(const std::filesystem::path& lock_path) {
        return procreg_test::probe_lock_in_child<type>(lock_path) == 0;
    }
    /// Removes the segment (tests make one per temporary directory).
    static void cleanup(const std::filesystem::path& lock_path) { procreg::lock::named_mutex_lock::remove(lock_path); }
};

/// Both kinds, for BOOST_AUTO_TEST_CASE_TEMPLATE.
using both = boost::mpl::list<flock, named_mutex>;

}  // namespace locks
