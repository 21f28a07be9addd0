// fuzz/yoi_scope_fuzz.cpp — yoi scope paths and the scope-rule algebra (presets/yoi/scope.hpp).
//
// Scope targets come from pods.json, i.e. from a file any process of the
// user can write, so the normaliser and the set algebra run on untrusted
// strings. No file is involved: these are pure functions, called directly.
//
// Input: lines; the first byte of a line is a flag byte (bit 0: write,
// bit 1: recursive), the rest is a target path. Asserted:
// - `normalize_scope_path` on the whole input and on every line: a refused
//   path has a reason; an accepted one is absolute, has no empty, "." or
//   ".." component and no trailing slash, and normalising it again gives
//   it back (idempotent); it is refused exactly when the path is empty,
//   relative, holds a NUL or a ".." component;
// - a JSON round trip of every accepted rule (tag_invoke both ways) gives it back;
// - for every pair of accepted rules: overlap is symmetric; a rule covers
//   itself; covering implies overlapping (and a permission at least as
//   strong); a one-rule delegation scope allows exactly what that rule covers;
// - `covers_fully`, `rules_overlap` and `delegation_scope::allows` agree
//   with a brute-force model: membership of every path in a finite universe
//   that stands for all paths (every prefix of every target, each extended by
//   one and by two components no target uses).
#include "fuzz_support.hpp"

#include <procreg/presets/yoi/scope.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace {

using procreg::yoi::scope_rule;
using path_parts = std::vector<std::string>;

path_parts parts_of(std::string_view normal) {
    path_parts out;
    std::size_t pos = 1;
    while (pos <= normal.size() && normal.size() > 1) {
        const std::size_t end = std::min(normal.find('/', pos), normal.size());
        out.emplace_back(normal.substr(pos, end - pos));
        pos = end + 1;
    }
    return out;
}

// The model: the paths a rule covers, as a predicate on component lists.
struct model_rule {
    path_parts at;
    bool recursive;
};

bool model_contains(const model_rule& rule, const path_parts& point) {
    if (point.size() < rule.at.size()) return false;
    for (std::size_t i = 0; i < rule.at.size(); ++i) {
        if (rule.at[i] != point[i]) return false;
    }
    return rule.recursive || point.size() <= rule.at.size() + 1;
}

// Above this many points the model is skipped (it is quadratic in rules
// times points); the algebraic checks still run.
constexpr std::size_t max_model_points = 128;

void check_normalised(std::string_view raw) {
    std::string out;
    std::string why;
    const bool accepted = procreg::yoi::normalize_scope_path(raw, out, why);
    bool dotdot = false;
    for (std::size_t pos = 0; pos <= raw.size();) {
        const std::size_t end = std::min(raw.find('/', pos), raw.size());
        if (raw.substr(pos, end - pos) == "..") dotdot = true;
        pos = end + 1;
    }
    const bool should = !raw.empty() && raw.front() == '/' && raw.find('\0') == std::string_view::npos && !dotdot;
    PROCREG_FUZZ_CHECK(accepted == should, std::string(accepted ? "accepted" : "refused") + " the path \"" + std::string(raw) +
                                  "\" (" + why + ")");
    if (!accepted) {
        PROCREG_FUZZ_CHECK(!why.empty(), "a refused path without a reason");
        return;
    }
    PROCREG_FUZZ_CHECK(!out.empty() && out.front() == '/', "normal form is not absolute: " + out);
    PROCREG_FUZZ_CHECK(out == "/" || out.back() != '/', "normal form has a trailing slash: " + out);
    PROCREG_FUZZ_CHECK(out.find("//") == std::string::npos, "normal form has an empty component: " + out);
    for (const auto& part : parts_of(out)) {
        PROCREG_FUZZ_CHECK(part != "." && part != ".." && !part.empty(), "normal form keeps a \".\" or \"..\": " + out);
    }
    std::string again;
    PROCREG_FUZZ_CHECK(procreg::yoi::normalize_scope_path(out, again, why) && again == out, "normalising is not idempotent: " + out);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    check_normalised(input);

    std::vector<scope_rule> rules;
    for (std::size_t pos = 0; pos < input.size() && rules.size() < 12;) {
        const std::size_t end = std::min(input.find('\n', pos), input.size());
        const std::string_view line = input.substr(pos, end - pos);
        pos = end + 1;
        if (line.empty()) continue;
        const auto flags = static_cast<unsigned char>(line.front());
        const std::string_view raw = line.substr(1);
        check_normalised(raw);
        scope_rule rule{std::string(raw), (flags & 1) ? procreg::yoi::permission::write : procreg::yoi::permission::read,
                        (flags & 2) != 0};
        std::string why;
        const auto normal = procreg::yoi::normalized(rule, why);
        if (!normal) continue;
        rules.push_back(*normal);

        // The JSON form, both ways, as pods.json stores it.
        const boost::json::value encoded = boost::json::value_from(*normal);
        scope_rule decoded;
        try {
            decoded = boost::json::value_to<scope_rule>(encoded);
        } catch (const std::exception& e) {
            procreg_fuzz::fail(std::string("a normalised rule does not decode: ") + e.what());
        }
        PROCREG_FUZZ_CHECK(decoded == *normal, "JSON round trip changed " + procreg::yoi::describe(*normal));
    }

    // The finite universe standing for all paths.
    std::vector<model_rule> models;
    std::set<path_parts> universe;
    for (const auto& rule : rules) {
        models.push_back(model_rule{parts_of(rule.target), rule.recursive});
        path_parts prefix;
        universe.insert(prefix);
        for (const auto& part : models.back().at) {
            prefix.push_back(part);
            universe.insert(prefix);
        }
    }
    const std::string unused = "\x01unused";  // fresh unless a target holds \x01 (then the model is skipped)
    std::vector<path_parts> extended(universe.begin(), universe.end());
    for (const auto& p : std::vector<path_parts>(universe.begin(), universe.end())) {
        path_parts one = p;
        one.push_back(unused + "1");
        extended.push_back(one);
        one.push_back(unused + "2");
        extended.push_back(one);
    }
    // A model "covers" must hold on every point; the fresh names must
    // really be fresh, or the universe proves nothing.
    bool fresh = true;
    for (const auto& rule : rules) fresh = fresh && rule.target.find('\x01') == std::string::npos;
    fresh = fresh && extended.size() <= max_model_points;

    for (std::size_t i = 0; i < rules.size(); ++i) {
        const scope_rule& a = rules[i];
        PROCREG_FUZZ_CHECK(procreg::yoi::covers_fully(a, a), procreg::yoi::describe(a) + " does not cover itself");
        PROCREG_FUZZ_CHECK(procreg::yoi::rules_overlap(a, a), procreg::yoi::describe(a) + " does not overlap itself");
        for (std::size_t j = 0; j < rules.size(); ++j) {
            const scope_rule& b = rules[j];
            const bool overlap = procreg::yoi::rules_overlap(a, b);
            const bool covers = procreg::yoi::covers_fully(a, b);
            const std::string pair = procreg::yoi::describe(a) + " / " + procreg::yoi::describe(b);
            PROCREG_FUZZ_CHECK(overlap == procreg::yoi::rules_overlap(b, a), "overlap is not symmetric: " + pair);
            PROCREG_FUZZ_CHECK(!covers || overlap, "covers without overlapping: " + pair);
            PROCREG_FUZZ_CHECK(!covers || a.perm >= b.perm, "covers with a weaker permission: " + pair);
            PROCREG_FUZZ_CHECK(procreg::yoi::delegation_scope{{a}}.allows(b) == covers,
                  "a one-rule delegation scope disagrees with covers_fully: " + pair);
            if (!fresh) continue;
            bool model_overlap = false;
            bool model_inside = true;
            for (const auto& point : extended) {
                const bool in_a = model_contains(models[i], point);
                const bool in_b = model_contains(models[j], point);
                model_overlap = model_overlap || (in_a && in_b);
                model_inside = model_inside && (!in_b || in_a);
            }
            PROCREG_FUZZ_CHECK(overlap == model_overlap, "overlap disagrees with the model: " + pair);
            PROCREG_FUZZ_CHECK(covers == (model_inside && a.perm >= b.perm), "covers_fully disagrees with the model: " + pair);
        }
    }

    // Unions: a delegation scope made of all the rules, against the model.
    if (fresh && !rules.empty()) {
        const procreg::yoi::delegation_scope scope{rules};
        for (std::size_t j = 0; j < rules.size(); ++j) {
            const scope_rule& b = rules[j];
            bool inside = true;
            for (const auto& point : extended) {
                if (!model_contains(models[j], point)) continue;
                bool any = false;
                for (std::size_t i = 0; i < rules.size(); ++i) {
                    any = any || (rules[i].perm >= b.perm && model_contains(models[i], point));
                }
                inside = inside && any;
            }
            PROCREG_FUZZ_CHECK(scope.allows(b) == inside, "delegation_scope::allows disagrees with the model for " +
                                                 procreg::yoi::describe(b));
        }
    }
    return 0;
}
