// fuzz/json_table_yoi_fuzz.cpp — yoi's pods.json through storage::json_table.
//
// The input is the whole `pods.json` (`{"allocations": [...]}`), loaded as
// the yoi preset does: allocations decoded by their tag_invoke, which parses
// every scope rule and normalises its target (presets/yoi/scope.hpp), so
// hostile targets ("..", NUL, relative paths) reach the normaliser from the
// file. See json_table_fuzz.hpp for what is asserted; in addition every
// target that loads must already be in normal form.
#include "json_table_fuzz.hpp"

#include <procreg/presets/yoi.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const auto dir = procreg_fuzz::fresh_dir("yoi");
    auto options = procreg::yoi::options(dir / "pods.json");
    options.durable = false;  // tmpfs: fsync changes nothing but the speed
    procreg_fuzz::fuzz_json_table<procreg::yoi::allocation>(data, size, options);

    // Decoded targets are normalised: normalising again changes nothing.
    procreg::storage::json_table table([&] {
        auto o = options;
        o.reuse_unchanged = false;
        return o;
    }());
    procreg_fuzz::guarded(
        "yoi targets",
        [&] {
            auto session = table.begin<procreg::yoi::allocation>();
            session.for_each([&](const procreg::stored_record<procreg::yoi::allocation>& stored) {
                for (const auto* rules : {&stored.value.scope_allow, &stored.value.scope_deny}) {
                    for (const auto& rule : *rules) {
                        std::string again;
                        std::string why;
                        PROCREG_FUZZ_CHECK(procreg::yoi::normalize_scope_path(rule.target, again, why),
                                            "a loaded target is refused when normalised again: " + why);
                        PROCREG_FUZZ_CHECK(again == rule.target, "a loaded target is not in normal form: \"" +
                                                                      rule.target + "\"");
                    }
                }
            });
        },
        [&](const procreg::error&) {});  // a file that did not load was checked above
    return 0;
}
