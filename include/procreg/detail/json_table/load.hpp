// procreg/detail/json_table/load.hpp — a table file's bytes into a session's state.
//
// Two ways, one result. The direct load: one strict pass over the file
// building nothing (json_is_strictly_valid: the parser, depth limit,
// duplicate member names and number range of parse_json), one scan for
// where each top-level member and record lies (file_layout.hpp), then each
// record decoded from its own bytes — a plain record in the pretty format
// straight into the struct, with no JSON tree and no JSON object kept
// (plain_records.hpp); any other record through a JSON tree of its bytes
// alone, kept as its object, as before. The general load: the whole file
// as one JSON tree, each record decoded from it (the way of earlier
// versions). The direct load gives up on anything unusual — an error of any
// kind, an escaped top-level key — and the general one then runs on the
// same bytes, so every error is the one (errc, path and words) the general
// load has always given, and a file either load accepts gives the same
// records.
//
// Invariant (of both): the state holds exactly the file's records, in file
// order, each with its bytes' span in `state.bytes`, verified when those
// bytes are exactly the record's encoding.
#pragma once

#include <procreg/detail/json_codec.hpp>
#include <procreg/detail/json_strict_parse.hpp>
#include <procreg/detail/json_table/file_layout.hpp>
#include <procreg/detail/json_table/plain_records.hpp>
#include <procreg/detail/json_table/state.hpp>
#include <procreg/detail/quote_untrusted.hpp>
#include <procreg/error.hpp>
#include <procreg/record_traits.hpp>

#include <boost/json.hpp>

#include <cstddef>
#include <filesystem>
#include <string>
#include <utility>

namespace procreg::detail::json_table_impl {

/// The direct load of `state.bytes` (see the file comment); false, with the
/// state's records and top level left empty, when the general load must run.
template <class Record>
bool load_directly(table_state<Record>& state, const std::string& array_key, std::size_t max_depth) {
    if (!json_is_strictly_valid(state.bytes, max_depth)) return false;
    const file_layout layout = scan_layout(state.bytes, array_key);
    if (!layout.ok) return false;
    const auto give_up = [&] {
        state.top.clear();
        state.slots.clear();
        state.index.clear();
        return false;
    };
    boost::json::parse_options whole;
    whole.max_depth = max_depth;  // the file is within it, so each part of it is
    boost::json::error_code ec;
    std::string why;
    for (const auto& [key, value] : layout.members) {
        if (key == array_key) {
            state.top.emplace(key, boost::json::array());  // holds the records' place among the keys
            continue;
        }
        boost::json::value parsed = parse_refusing_duplicates(value, whole, ec, why);
        if (ec) return give_up();
        state.top.emplace(key, std::move(parsed));
    }
    state.slots.reserve(layout.records.size());
    state.index.reserve(layout.records.size());
    const char* const base = state.bytes.data();
    for (const std::string_view text : layout.records) {
        auto& s = state.slots.emplace_back();
        s.offset = static_cast<std::size_t>(text.data() - base);
        s.length = text.size();
        Record value{};
        if constexpr (encodes_plainly<Record>::value) {
            s.verified = read_canonical(text, value);
        }
        if (s.verified) {
            s.record.emplace(stored_record<Record>{std::move(value), boost::json::object()});
        } else {
            boost::json::value parsed = parse_refusing_duplicates(text, whole, ec, why);
            if (ec || !parsed.is_object()) return give_up();
            try {
                value = decode_value<Record>(parsed, std::string());
            } catch (const decode_error&) {
                return give_up();  // the general load words the error, with the record's path
            }
            s.record.emplace(stored_record<Record>{std::move(value), std::move(parsed.as_object())});
        }
        if (!state.index.insert(key_of(s.record->value), state.slots.size() - 1, state.key_at())) {
            return give_up();  // a duplicate key: the general load names it
        }
    }
    return true;
}

/// The general load of `state.bytes`: throws `errc::corrupted_file` naming
/// `path` for a file that is not a table of `Record`s.
template <class Record>
void load_generally(table_state<Record>& state, const std::string& array_key, std::size_t max_depth,
                    const std::filesystem::path& path) {
    std::string parse_error;
    auto parsed = parse_json(state.bytes, json_limits{max_depth}, parse_error);
    if (!parsed) throw error(errc::corrupted_file, path, "cannot parse JSON: " + parse_error);
    if (!parsed->is_object()) throw error(errc::corrupted_file, path, "top level is not a JSON object");
    state.top = std::move(parsed->as_object());
    auto found = state.top.find(array_key);
    if (found == state.top.end()) return;
    if (!found->value().is_array()) throw error(errc::corrupted_file, path, "\"" + array_key + "\" is not an array");
    boost::json::array& array = found->value().as_array();
    state.slots.reserve(array.size());
    state.index.reserve(array.size());
    for (std::size_t i = 0; i < array.size(); ++i) {
        // The field path for error messages is built only when one is
        // needed: decoding runs without it, and a failure decodes that
        // record again with it for the message.
        const auto where = [&] { return array_key + "[" + std::to_string(i) + "]"; };
        if (!array[i].is_object()) throw error(errc::corrupted_file, path, where() + ": not an object");
        Record value = [&]() -> Record {
            try {
                return decode_value<Record>(array[i], std::string());
            } catch (const decode_error&) {
            }
            try {
                return decode_value<Record>(array[i], where());
            } catch (const decode_error& e) {
                throw error(errc::corrupted_file, path, e.what());
            }
        }();
        auto& s = state.slots.emplace_back();
        s.record.emplace(stored_record<Record>{std::move(value), std::move(array[i].as_object())});
        const std::string_view key = key_of(s.record->value);
        if (!state.index.insert(key, i, state.key_at())) {
            throw error(errc::corrupted_file, path, where() + ": duplicate key " + quote_untrusted(key),
                        error::details{std::string(key), {}, 0});
        }
    }
    array.clear();
    // Each record's bytes, to compare with its encoding at the first save
    // (the scan gives up on an escaped top-level key: those records are
    // then encoded afresh and proven).
    const file_layout layout = scan_layout(state.bytes, array_key);
    if (layout.ok && layout.records.size() == state.slots.size()) {
        for (std::size_t i = 0; i < state.slots.size(); ++i) {
            state.slots[i].offset = static_cast<std::size_t>(layout.records[i].data() - state.bytes.data());
            state.slots[i].length = layout.records[i].size();
        }
    }
}

}  // namespace procreg::detail::json_table_impl
