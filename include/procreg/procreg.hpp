// procreg/procreg.hpp — everything procreg offers, in one include.
//
// Large code bases should include only what they use: procreg/registry.hpp
// plus one header per policy, or one preset from procreg/presets/.
#pragma once

#include <procreg/error.hpp>
#include <procreg/liveness/callable_liveness.hpp>
#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/record_traits.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/json_table.hpp>
#include <procreg/stored_record.hpp>
#include <procreg/transaction.hpp>
#include <procreg/version.hpp>
