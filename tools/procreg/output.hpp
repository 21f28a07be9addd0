// tools/procreg/output.hpp — how records reach stdout.
//
// Invariant: data goes to stdout, diagnostics to stderr; a table is aligned
// only when stdout is a terminal (tab-separated otherwise, one record a
// line), colour only on a terminal without NO_COLOR, and every byte that
// came from a file is escaped before it reaches a terminal or a TSV line,
// so a record cannot forge lines or terminal escapes.
#pragma once

#include <boost/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace procreg_cli {

/// One record as the tool reports it.
struct row {
    std::string key;
    std::optional<std::uint64_t> pid;   ///< nothing: the record has no pid
    std::optional<bool> alive;          ///< nothing: unknown (no pid)
    boost::json::object fields;         ///< every field as stored
};

/// "alive", "dead" or "unknown".
const char* status_of(const row& r);

/// The row as the stable `--json` object: key, pid, alive, status, fields.
boost::json::object to_json(const row& r);

/// How to print.
struct style {
    bool terminal = false;  ///< stdout is a terminal: align columns
    bool colour = false;    ///< terminal and no NO_COLOR
    bool headings = true;
    static style detect(bool no_headings);
};

/// `text` with control bytes, backslash and DEL escaped (\t, \n, \xNN).
std::string escape_cell(const std::string& text);

/// A cell's text: a string as is, anything else as compact JSON, `-` when absent.
std::string cell(const boost::json::value* value);

/// Prints `rows` as a table of `columns` ("key", "pid", "status", or a
/// dotted field path); empty `columns` means key, pid, status and every
/// top-level field but the layout's key and pid fields.
void print_table(const std::vector<row>& rows, std::vector<std::string> columns, const std::string& key_field,
                 const std::string& pid_field, const style& how);

/// Prints `value` as one line of JSON (the `--json` output).
void print_json(const boost::json::value& value);

}  // namespace procreg_cli
