// procreg/detail/quote_untrusted.hpp — the one way text from outside gets into a message.
//
// Why: error messages end up in logs and terminals. Bytes read from a file
// (a pod name, a socket path, a record key), or a path some other program
// chose, could otherwise forge a log line ("\n2026-01-01 INFO root login
// ok"), move a terminal's cursor, or turn a suggested command ("rm "<path>"")
// into another one when it is pasted into a shell.
//
// Invariant: the quoted form is one line of printable ASCII without `$` or
// a backquote, between double quotes; so it is inert in a log, in a
// terminal, and inside double quotes in a shell. Every message that shows
// such text calls `quote_untrusted` (docs/errors.md).
#pragma once

#include <climits>
#include <cstddef>
#include <string>
#include <string_view>

namespace procreg::detail {

/// `text` that came from a file (or another program), quoted for an error
/// message: control bytes, non-ASCII bytes, `"`, `\`, `$` and the backquote
/// escaped as \xNN, and text longer than `max_shown` characters cut with
/// "...", so a hostile file cannot forge log lines, smuggle terminal escapes
/// or shell expansions through an error.
inline std::string quote_untrusted(std::string_view text, std::size_t max_shown = 64) {
    static const char hex[] = "0123456789abcdef";
    std::string out = "\"";
    std::size_t shown = 0;
    for (const char c : text) {
        if (++shown > max_shown) {
            out += "...";
            break;
        }
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte >= 0x7f || c == '"' || c == '\\' || c == '$' || c == '`') {
            out += "\\x";
            out += hex[byte >> 4];
            out += hex[byte & 0xf];
        } else {
            out += c;
        }
    }
    return out + "\"";
}

/// A path for a message: as it is, unless it holds a control byte (a line
/// break, an escape, DEL); then quoted by `quote_untrusted` (in full, up to
/// PATH_MAX), so it cannot break the message's line. Ordinary paths read
/// as they always did.
inline std::string shown_path(std::string_view path) {
    for (const char c : path) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7f) return quote_untrusted(path, PATH_MAX);
    }
    return std::string(path);
}

}  // namespace procreg::detail
