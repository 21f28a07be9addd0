// procreg/detail/json_codec.hpp — JSON in and out, the same way for every storage.
//
// Why this exists rather than plain value_to/value_from:
// - Boost.JSON 1.81 refuses to convert an object with keys a described struct
//   does not know (`size_mismatch`). Registries are shared between programs
//   and versions, and procreg stores extra fields (owner identity), so
//   decoding must ignore unknown keys, as serde does by default.
// - A missing `std::optional` member decodes as empty (serde's `Option`).
// - Decode errors name the field ("sessions[3].pid: ...") so a corrupt file
//   can be fixed by hand.
// - Encoding merges the record over the object last read from disk, so keys
//   this program does not know survive a rewrite.
// - Output is pretty-printed like serde_json::to_string_pretty (two spaces),
//   which keeps the seeds' files diffable by their own tools.
// - Every number read or written is finite. Boost.JSON 1.81 reads a number
//   beyond the double range (`1e400`) as infinity and serializes infinity
//   and NaN as `Infinity` / `NaN`, which are not JSON: a file holding such
//   a number would load, and the next save would write a file that no
//   longer parses (found by fuzz/json_table_algocline). Such a number is
//   refused where it enters: a parse error on reading (serde_json also
//   says "number out of range"), a decode error on encoding.
//
// Layout: parsing within limits is detail/json_codec/parse.hpp, records to
// and from JSON objects (lenient decoding, merge, read-back proof)
// detail/json_codec/records.hpp, serde-style pretty printing
// detail/json_codec/pretty.hpp; this header gathers them.
#pragma once

#include <procreg/detail/json_codec/parse.hpp>
#include <procreg/detail/json_codec/pretty.hpp>
#include <procreg/detail/json_codec/records.hpp>
