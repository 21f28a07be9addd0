// tools/procreg/output.cpp — tables, TSV and JSON (see output.hpp).
#include "output.hpp"

#include <procreg/dynamic_record.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include <unistd.h>

namespace procreg_cli {

const char* status_of(const row& r) {
    if (!r.alive) return "unknown";
    return *r.alive ? "alive" : "dead";
}

boost::json::object to_json(const row& r) {
    boost::json::object out;
    out["key"] = r.key;
    out["pid"] = r.pid ? boost::json::value(*r.pid) : boost::json::value(nullptr);
    out["alive"] = r.alive ? boost::json::value(*r.alive) : boost::json::value(nullptr);
    out["status"] = status_of(r);
    out["fields"] = r.fields;
    return out;
}

style style::detect(bool no_headings) {
    style out;
    out.terminal = ::isatty(STDOUT_FILENO) == 1;
    const char* no_colour = std::getenv("NO_COLOR");
    out.colour = out.terminal && !(no_colour && *no_colour);
    out.headings = !no_headings;
    return out;
}

std::string escape_cell(const std::string& text) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (c == '\t') out += "\\t";
        else if (c == '\n') out += "\\n";
        else if (c == '\\') out += "\\\\";
        else if (byte < 0x20 || byte == 0x7f) {
            out += "\\x";
            out += hex[byte >> 4];
            out += hex[byte & 15];
        } else {
            out += c;
        }
    }
    return out;
}

std::string cell(const boost::json::value* value) {
    if (!value || value->is_null()) return "-";
    if (value->is_string()) return escape_cell(std::string(value->get_string()));
    return escape_cell(boost::json::serialize(*value));
}

namespace {

std::string heading(const std::string& column) {
    std::string out;
    for (const char c : column) out += (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
    return out;
}

std::string value_of(const row& r, const std::string& column) {
    if (column == "key") return escape_cell(r.key);
    if (column == "pid") return r.pid ? std::to_string(*r.pid) : "-";
    if (column == "status") return status_of(r);
    return cell(procreg::find_json_path(r.fields, column));
}

}  // namespace

void print_table(const std::vector<row>& rows, std::vector<std::string> columns, const std::string& key_field,
                 const std::string& pid_field, const style& how) {
    if (columns.empty()) {
        columns = {"key", "pid", "status"};
        for (const auto& r : rows) {
            for (const auto& item : r.fields) {
                const std::string name(item.key());
                if (name == key_field || name == pid_field) continue;
                if (std::find(columns.begin(), columns.end(), name) == columns.end()) columns.push_back(name);
            }
        }
    }
    std::vector<std::vector<std::string>> lines;
    if (how.headings) {
        std::vector<std::string> head;
        for (const auto& c : columns) head.push_back(heading(escape_cell(c)));
        lines.push_back(std::move(head));
    }
    for (const auto& r : rows) {
        std::vector<std::string> line;
        for (const auto& c : columns) line.push_back(value_of(r, c));
        lines.push_back(std::move(line));
    }
    std::vector<std::size_t> widths(columns.size(), 0);
    for (const auto& line : lines) {
        for (std::size_t i = 0; i < line.size(); ++i) widths[i] = std::max(widths[i], line[i].size());
    }
    for (std::size_t n = 0; n < lines.size(); ++n) {
        const auto& line = lines[n];
        std::string out;
        for (std::size_t i = 0; i < line.size(); ++i) {
            const bool last = i + 1 == line.size();
            std::string text = line[i];
            if (how.colour && n >= (how.headings ? 1u : 0u) && columns[i] == "status") {
                const char* colour = text == "alive" ? "\033[32m" : text == "dead" ? "\033[31m" : "\033[33m";
                const std::size_t pad = widths[i] - text.size();
                text = colour + text + "\033[0m" + (last ? "" : std::string(pad, ' '));
            } else if (how.terminal && !last) {
                text.append(widths[i] - text.size(), ' ');
            }
            out += text;
            if (!last) out += how.terminal ? "  " : "\t";
        }
        std::cout << out << '\n';
    }
}

void print_json(const boost::json::value& value) { std::cout << boost::json::serialize(value) << '\n'; }

}  // namespace procreg_cli
