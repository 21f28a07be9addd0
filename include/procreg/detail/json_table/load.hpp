// procreg/detail/json_table/load.hpp — a table file's bytes into a session's state.
//
// Two ways, one result. The direct load: one walk over the file's top
// level (file_layout.hpp) in which a plain record in the pretty format is
// decoded straight from its bytes into the struct, with no JSON tree and
// no JSON object kept (plain_records.hpp), and every other part — any
// other record, each other top-level member — is parsed strictly on its
// own (parse_refusing_duplicates within the depth left, numbers finite:
// parse_json's rules), the record decoded from that tree and keeping it as
// its object, as before. The general load: the whole file
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
#include <optional>
#include <string_view>
#include <vector>
#include <string>
#include <utility>

namespace procreg::detail::json_table_impl {

// A part of the file (a top-level member's value, a record the plain
// reader did not take) parsed as parse_json would parse it `levels` deep in
// the file: strictly, within the depth left, every number finite. Nothing
// when it does not parse.
inline std::optional<boost::json::value> parse_part(std::string_view text, std::size_t max_depth,
                                                    std::size_t levels) {
    boost::json::parse_options options;
    options.max_depth = max_depth - levels;
    boost::json::error_code ec;
    std::string why;
    boost::json::value parsed = parse_refusing_duplicates(text, options, ec, why);
    if (ec || non_finite_number(parsed)) return std::nullopt;
    return parsed;
}

/// Reads the record whose text starts at `start` (its '{') in `file` the
/// way the direct load reads every record it does not carry over: a plain
/// record in the pretty format straight from its bytes (its span then
/// verified), anything else delimited and parsed strictly two levels down,
/// then decoded (keeping its object). Fills `out` (record and span) and
/// returns the end of the record's text; npos when the direct load must give
/// up on it (the general load then words why).
template <class Record>
std::size_t read_record_at(std::string_view file, std::size_t start, std::size_t max_depth,
                           typename table_state<Record>::slot& out) {
    const auto take = [&](std::size_t end, Record&& value, boost::json::object&& json, bool verified) {
        out.offset = start;
        out.length = end - start;
        out.verified = verified;
        out.in_fresh = false;
        out.record.emplace(stored_record<Record>{std::move(value), std::move(json)});
        return end;
    };
    if constexpr (encodes_plainly<Record>::value) {
        Record value{};
        std::size_t end = start;
        if (read_canonical(file, end, value)) return take(end, std::move(value), boost::json::object(), true);
    }
    const std::size_t end = skip_value(file, start);
    if (end == std::string_view::npos) return end;
    auto parsed = parse_part(file.substr(start, end - start), max_depth, 2);
    if (!parsed || !parsed->is_object()) return std::string_view::npos;
    std::optional<Record> value;
    try {
        value.emplace(decode_value<Record>(*parsed, std::string()));
    } catch (const decode_error&) {
        return std::string_view::npos;  // the general load words the error, with the record's path
    }
    return take(end, std::move(*value), std::move(parsed->as_object()), false);
}

/// The direct load of `state.bytes` (see the file comment); false, with the state's records and top level
/// left empty, when the general load must run.
///
/// With `stale` (the state this storage kept of an earlier version of the
/// file, of the same limits), a record whose bytes are exactly the bytes
/// of the stale record at the same place (or the next: one record changed
/// or erased in between) is moved over from it instead of being read
/// again: the stale record is what reading those bytes gave (the kept
/// state is exactly the contents of its file), so this is what reading
/// them again gives. (A file that differs from the stale one in one
/// stretch of records is patched in place before this runs: patch.hpp.)
template <class Record>
bool load_directly(table_state<Record>& state, const std::string& array_key, std::size_t max_depth,
                   table_state<Record>* stale = nullptr) {
    // The records lie three levels down; a limit below that is the general load's to refuse.
    if (max_depth < 3) return false;
    const std::string_view file = state.bytes;
    std::size_t next_stale = 0;  // the stale record expected next
    // After a record read afresh (new, or changed): the stale records
    // expected next are those after the stale one with its key, if any, so
    // that records inserted, changed or erased in several places do not
    // put the comparison out of step for the rest of the file.
    const auto resync = [&] {
        if (!stale) return;
        const std::size_t at = stale->find(key_of(state.slots.back().record->value));
        if (at != key_index::npos && at >= next_stale) next_stale = at + 1;
    };
    const bool walked = walk_layout(
        file, array_key,
        [&](std::string_view key, std::string_view value) {
            auto parsed = parse_part(value, max_depth, 1);
            if (!parsed) return false;
            state.top.emplace(key, std::move(*parsed));
            return true;
        },
        [&] {
            state.top.emplace(array_key, boost::json::array());  // holds the records' place among the keys
            // The records: about one per 128 bytes of file in the pretty format.
            state.slots.reserve(file.size() / 128 + 1);
            state.index.reserve(file.size() / 128 + 1);
            return true;
        },
        [&](std::size_t start) -> std::size_t {
            for (std::size_t k = next_stale; stale && k < stale->slots.size() && k < next_stale + 2; ++k) {
                auto& old = stale->slots[k];
                if (!old.record || !old.has_span() || old.in_fresh) continue;
                const std::string_view bytes = stale->span(old);
                if (file.compare(start, bytes.size(), bytes) != 0) continue;
                auto& s = state.slots.emplace_back();
                s.offset = start;
                s.length = bytes.size();
                s.verified = old.verified;
                s.record = std::move(old.record);
                // Left moved-from (the stale index still reaches it) and without a span: taken.
                old.forget_text();
                next_stale = k + 1;
                return start + bytes.size();
            }
            const std::size_t end = read_record_at<Record>(file, start, max_depth, state.slots.emplace_back());
            if (end == std::string_view::npos) return stop_walk;
            resync();
            return end;
        },
        [&](std::string_view) { return false; });  // read_record_at takes every record or stops the walk
    // A key twice is the general load's to name.
    if (walked && state.index.build(state.slots.size(), state.key_at())) return true;
    state.top.clear();
    state.slots.clear();
    state.index.clear();
    return false;
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
    const std::vector<std::string_view> spans = record_spans(state.bytes, array_key);
    if (spans.size() == state.slots.size()) {
        for (std::size_t i = 0; i < state.slots.size(); ++i) {
            state.slots[i].offset = static_cast<std::size_t>(spans[i].data() - state.bytes.data());
            state.slots[i].length = spans[i].size();
        }
    }
}

}  // namespace procreg::detail::json_table_impl
