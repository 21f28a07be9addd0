// procreg/detail/json_strict_parse.hpp — Boost.JSON's parse, refusing duplicate member names.
//
// Why: when an object names a member twice (`{"pid": 1, "pid": 4242}`),
// Boost.JSON keeps the last one silently, while serde — the seeds' parser —
// refuses the file ("duplicate field"). Two programs reading one registry
// must never disagree on what it says (who holds a claim, which pid a
// record belongs to), and a file no correct writer produces is corrupt, so
// procreg refuses it too, naming the member.
//
// How: the same one-pass parse as boost::json::parse (basic_parser feeding
// a value_stack, exactly like Boost.JSON's own handler), with the names of
// each open object remembered — in a short vector, or a hash set once an
// object has many members, so a hostile file cannot make it quadratic.
// Memory is bounded by the input (names are at most the file's bytes) and
// the levels by the parse depth limit.
//
// Numbers with a fraction or an exponent (and integers beyond 64 bits) are
// read again from their text with std::from_chars, which rounds correctly:
// Boost.JSON 1.81's own conversion (its only mode before 1.83's
// `number_precision::precise`) can land one double off, so a number it
// wrote (`1.2844674407370955E20`) read back as another
// (`1.2844674407370957E20`) and an unknown field drifted at each rewrite
// (found by fuzz/record_files_agentmux). A number beyond the double range
// keeps Boost.JSON's infinity, which parse_json then refuses.
//
// `quote_untrusted` (detail/quote_untrusted.hpp, included here for the
// parsers' callers) puts bytes read from a file into an error message
// without letting them forge log lines.
#pragma once

#include <procreg/detail/quote_untrusted.hpp>

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/error.hpp>
#include <boost/json/parse_options.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_stack.hpp>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace procreg::detail {

namespace json_strict {

// The names seen so far in one open object.
struct member_names {
    std::vector<std::string> few;
    std::unordered_set<std::string> many;
    bool hashed = false;

    void clear() {
        few.clear();
        many.clear();
        hashed = false;
    }
    // False when `name` was seen before in this object.
    bool add(const std::string& name) {
        if (hashed) return many.insert(name).second;
        if (std::find(few.begin(), few.end(), name) != few.end()) return false;
        few.push_back(name);
        if (few.size() > 16) {
            many.insert(few.begin(), few.end());
            few.clear();
            hashed = true;
        }
        return true;
    }
};

// Boost.JSON's detail::handler (a value_stack) plus the duplicate check.
class handler {
public:
    static constexpr std::size_t max_object_size = boost::json::object::max_size();
    static constexpr std::size_t max_array_size = boost::json::array::max_size();
    static constexpr std::size_t max_key_size = boost::json::string::max_size();
    static constexpr std::size_t max_string_size = boost::json::string::max_size();

    boost::json::value_stack st;
    std::string duplicate;  // the first repeated name, when the parse failed for it

    handler(boost::json::storage_ptr sp, unsigned char* buffer, std::size_t size) : st(std::move(sp), buffer, size) {}

    bool on_document_begin(boost::json::error_code&) { return true; }
    bool on_document_end(boost::json::error_code&) { return true; }
    bool on_object_begin(boost::json::error_code&) {
        if (levels_.size() <= depth_) levels_.emplace_back();
        levels_[depth_++].clear();
        return true;
    }
    bool on_object_end(std::size_t n, boost::json::error_code&) {
        --depth_;
        st.push_object(n);
        return true;
    }
    bool on_array_begin(boost::json::error_code&) { return true; }
    bool on_array_end(std::size_t n, boost::json::error_code&) {
        st.push_array(n);
        return true;
    }
    bool on_key_part(boost::json::string_view s, std::size_t, boost::json::error_code&) {
        st.push_chars(s);
        key_.append(s.data(), s.size());
        return true;
    }
    bool on_key(boost::json::string_view s, std::size_t, boost::json::error_code& ec) {
        key_.append(s.data(), s.size());
        if (!levels_[depth_ - 1].add(key_)) {
            duplicate = std::move(key_);
            key_.clear();
            ec = boost::json::error::syntax;
            return false;
        }
        key_.clear();
        st.push_key(s);
        return true;
    }
    bool on_string_part(boost::json::string_view s, std::size_t, boost::json::error_code&) {
        st.push_chars(s);
        return true;
    }
    bool on_string(boost::json::string_view s, std::size_t, boost::json::error_code&) {
        st.push_string(s);
        return true;
    }
    bool on_number_part(boost::json::string_view s, boost::json::error_code&) {
        number_.append(s.data(), s.size());
        return true;
    }
    bool on_int64(std::int64_t i, boost::json::string_view, boost::json::error_code&) {
        number_.clear();
        st.push_int64(i);
        return true;
    }
    bool on_uint64(std::uint64_t u, boost::json::string_view, boost::json::error_code&) {
        number_.clear();
        st.push_uint64(u);
        return true;
    }
    bool on_double(double d, boost::json::string_view s, boost::json::error_code&) {
        number_.append(s.data(), s.size());
        double exact = 0;
        const char* const end = number_.data() + number_.size();
        const auto read = std::from_chars(number_.data(), end, exact);
        if (read.ec == std::errc() && read.ptr == end) d = exact;  // else (out of range) Boost.JSON's value
        number_.clear();
        st.push_double(d);
        return true;
    }
    bool on_bool(bool b, boost::json::error_code&) {
        st.push_bool(b);
        return true;
    }
    bool on_null(boost::json::error_code&) {
        st.push_null();
        return true;
    }
    bool on_comment_part(boost::json::string_view, boost::json::error_code&) { return true; }
    bool on_comment(boost::json::string_view, boost::json::error_code&) { return true; }

private:
    std::vector<member_names> levels_;  // one per open object, reused
    std::size_t depth_ = 0;             // open objects
    std::string key_;                   // the name being read
    std::string number_;                // the text of the number being read
};

}  // namespace json_strict

/// Parses `text` as boost::json::parse(text, ec, {}, options) does, but
/// fails when an object repeats a member name. On failure returns null and
/// sets `ec`, and `error_text` to a sentence naming the cause.
inline boost::json::value parse_refusing_duplicates(std::string_view text, const boost::json::parse_options& options,
                                                    boost::json::error_code& ec, std::string& error_text) {
    unsigned char temp[BOOST_JSON_STACK_BUFFER_SIZE];
    boost::json::basic_parser<json_strict::handler> parser(options, boost::json::storage_ptr(), temp, sizeof temp);
    parser.handler().st.reset(boost::json::storage_ptr());
    const std::size_t used = parser.write_some(false, text.data(), text.size(), ec);
    if (!ec && used < text.size()) ec = boost::json::error::extra_data;
    if (!ec && !parser.done()) ec = boost::json::error::incomplete;
    if (ec) {
        const std::string& name = parser.handler().duplicate;
        error_text = name.empty() ? ec.message() : "duplicate member " + quote_untrusted(name) + " in an object";
        return nullptr;
    }
    return parser.handler().st.release();
}

}  // namespace procreg::detail
