// procreg/storage/record_files/record_file.hpp — one record file: how a
// record_files session reads and judges `<dir>/<key>.json`, and the text it
// writes for a record.
//
// Internal to procreg/storage/record_files.hpp (users include that
// header). Invariants: reading never throws for what a file holds, only
// for a failing system (a file is classified and, if passed over,
// reported in `skipped()`); and what is written is held to the very limits
// a reader applies (max_file_bytes, max_depth, decoding), so no record is
// written that its readers would skip.
#pragma once

// The storage first: this header defines its members. (Included on its own,
// the storage header includes this one back, which #pragma once skips.)
#include <procreg/storage/record_files.hpp>

#include <procreg/detail/file_io.hpp>
#include <procreg/detail/json_codec.hpp>
#include <procreg/detail/json_strict_parse.hpp>
#include <procreg/error.hpp>

#include <boost/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace procreg::storage {

template <class Record>
auto record_files::session<Record>::read_state(int dirfd, const std::filesystem::path& dir, std::string_view key) const
    -> file_state {
    const auto& opts = files_->options_;
    const std::string name = std::string(key) + ".json";
    const auto refuse = [&](std::string reason, file_kind kind, boost::json::object raw = {}) {
        skipped_.push_back(skipped_file{dir / name, reason});
        return file_state{kind, std::nullopt, std::move(raw), std::move(reason)};
    };
    std::optional<detail::file_contents> contents;
    try {
        contents = detail::read_file_at(dirfd, detail::path_ref(dir, name), name.c_str(), opts.max_file_bytes);
    } catch (const error& e) {
        // A file this user may not open is passed over like any other
        // unreadable file: one such file must not stop every operation.
        const bool forbidden =
            e.code() == errc::io_failure && (e.os_error() == EACCES || e.os_error() == EPERM);
        if (forbidden) return refuse(without_path(e, dir / name), file_kind::must_not_overwrite);
        if (e.code() != errc::unsafe_path && e.code() != errc::corrupted_file) throw;
        return refuse(without_path(e, dir / name), file_kind::unsafe);
    }
    if (!contents) return file_state::absent();
    std::string parse_error;
    auto parsed = detail::parse_json(contents->bytes, detail::json_limits{opts.max_depth}, parse_error);
    if (!parsed) return refuse("cannot parse JSON: " + parse_error, file_kind::must_not_overwrite);
    if (!parsed->is_object()) return refuse("top level is not a JSON object", file_kind::must_not_overwrite);
    boost::json::object& object = parsed->as_object();
    if (opts.schema_field) {
        std::string why = schema_problem(object);
        if (!why.empty()) return refuse(std::move(why), file_kind::must_not_overwrite);
    }
    std::optional<Record> value;
    try {
        value.emplace(detail::decode_value<Record>(*parsed, ""));
    } catch (const detail::decode_error& e) {
        return refuse(std::string("cannot decode the record: ") + e.what(), file_kind::not_a_record,
                      std::move(object));
    }
    const std::string_view inner_key = detail::key_of(*value);
    if (inner_key != key) {
        return refuse("the record's key " + detail::quote_record_key(inner_key) +
                          " differs from the file name's " + detail::quote_record_key(key),
                      file_kind::not_a_record, std::move(object));
    }
    return file_state::holding(stored_record<Record>{std::move(*value), std::move(object)});
}

template <class Record>
std::string record_files::session<Record>::schema_problem(const boost::json::object& object) const {
    const auto& opts = files_->options_;
    const std::string& field = *opts.schema_field;
    const auto found = object.find(field);
    if (found == object.end()) return "no \"" + field + "\" field, so its schema is unknown";
    const boost::json::value& v = found->value();
    std::uint64_t version = 0;
    if (v.is_uint64()) {
        version = v.get_uint64();
    } else if (v.is_int64() && v.get_int64() >= 0) {
        version = static_cast<std::uint64_t>(v.get_int64());
    } else {
        return "\"" + field + "\" is not a non-negative integer";
    }
    if (version > opts.max_schema_version) {
        return "\"" + field + "\" is " + std::to_string(version) + ", above the highest this program " +
               "supports (" + std::to_string(opts.max_schema_version) + ")";
    }
    return {};
}

template <class Record>
std::string record_files::session<Record>::encode(const boost::json::object& base, const Record& value,
                                                  const std::string& key, boost::json::object& encoded) const {
    const auto& opts = files_->options_;
    try {
        encoded = detail::merge_over(base, value);
        if (opts.schema_field && !encoded.contains(*opts.schema_field)) {
            encoded[*opts.schema_field] = opts.max_schema_version;
        }
        std::string text = detail::pretty_print(encoded);
        text += '\n';
        // Held to the limits a reader applies to the file (read_state).
        detail::read_back<Record>(text, detail::json_limits{opts.max_depth, opts.max_file_bytes});
        return text;
    } catch (const detail::decode_error& e) {
        throw error(errc::invalid_record, active_file(key), std::string("cannot store the record: ") + e.what(),
                    error::details{key, {}, 0});
    }
}

template <class Record>
std::string record_files::session<Record>::without_path(const error& e, const std::filesystem::path& file) {
    std::string text = e.what();
    const std::string prefix = detail::shown_path(file.native()) + ": ";  // as error::what() shows it
    if (text.compare(0, prefix.size(), prefix) == 0) text.erase(0, prefix.size());
    return text;
}

}  // namespace procreg::storage
