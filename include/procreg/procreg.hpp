// procreg/procreg.hpp — everything procreg offers, in one include: the
// registry and its transaction, errors, claims, tombstones, and every lock,
// storage and liveness policy. The presets (procreg/presets/) are not
// included: include the one you use.
//
// Large code bases should include only what they use: procreg/registry.hpp
// plus one header per policy, or one preset from procreg/presets/.
#pragma once

#include <procreg/claim.hpp>
#include <procreg/common_registries.hpp>
#include <procreg/directory_policy.hpp>
#include <procreg/error.hpp>
#include <procreg/liveness/callable_liveness.hpp>
#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/liveness/pidfd_liveness.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/lock/named_mutex_lock.hpp>
#include <procreg/record_traits.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/claim_file.hpp>
#include <procreg/storage/json_table.hpp>
#include <procreg/storage/record_files.hpp>
#include <procreg/stored_record.hpp>
#include <procreg/tombstones.hpp>
#include <procreg/transaction.hpp>
#include <procreg/version.hpp>
