// procreg/stored_record.hpp — the vocabulary shared by the registry and every storage policy.
//
// A storage keeps, for each record, the typed value *and* a JSON object of
// what the record was read with beyond that value: keys this program does
// not know (a newer program's fields) and the owner identity a liveness
// policy stamps. It may hold the value's own fields too, or not (json_table
// keeps none for a record it read straight into its struct). Writing encodes
// the value and merges it over that object, so those keys survive every
// rewrite.
#pragma once

#include <boost/json/object.hpp>

#include <filesystem>
#include <optional>
#include <string>

namespace procreg {

/// A record as a storage holds it.
template <class Record>
struct stored_record {
    Record value;              ///< the typed record
    boost::json::object json;  ///< keys kept beside `value`: unknown ones and identity fields (may omit `value`'s own; empty for a new record)
};

/// A file a storage passed over while reading, and why. Storages that keep
/// one file per record report these instead of failing a whole listing.
struct skipped_file {
    std::filesystem::path path;  ///< the file left untouched
    std::string reason;          ///< why it was skipped
};

/// One row of `registry::list()`: a record and whether its owner is alive.
template <class Record>
struct listed {
    Record record;  ///< the record
    bool alive;     ///< whether the liveness policy found its owner alive
};

/// What an upsert did.
enum class upsert_status {
    inserted,  ///< no record had the key; one was added
    replaced,  ///< the record with the key was replaced (unknown fields kept)
    skipped,   ///< the storage refused to overwrite a file it must not touch; see `upsert_result::skipped`
};

/// The status's name, for logs: "inserted", "replaced" or "skipped".
inline const char* to_string(upsert_status status) noexcept {
    switch (status) {
    case upsert_status::inserted: return "inserted";
    case upsert_status::replaced: return "replaced";
    case upsert_status::skipped: return "skipped";
    }
    return "?";
}

/// The result of an upsert. Never silent: a refused write says which file and why.
struct upsert_result {
    upsert_status status = upsert_status::inserted;  ///< what happened
    std::optional<skipped_file> skipped;             ///< set when `status == upsert_status::skipped`
};

}  // namespace procreg
