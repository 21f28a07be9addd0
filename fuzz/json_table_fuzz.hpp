// fuzz/json_table_fuzz.hpp — the json_table harness body, shared by the record types fuzzed.
//
// The input is the whole table file. Through `storage::json_table` (the
// path every registry on it takes: descriptor read with the size cap,
// depth-limited parse, per-record decode, duplicate-key check) it asserts:
// - loading either fails with `errc::corrupted_file` and leaves the file
//   byte for byte as it was, or gives records whose `find(key)` and
//   `size()` agree with the listing;
// - a loaded table saved back (each record re-put as `upsert` does, so it is
//   re-encoded over the JSON it was read as) reloads to the same records in
//   the same order, from a fresh storage object that must read the file;
// - saving is a fixpoint after one round: saving the reloaded table gives
//   the same bytes;
// - the unchanged-file shortcut (the storage object that wrote the file
//   hands its state to its next session) gives the same records, and saving
//   from it gives the same bytes again;
// - a storage object that kept its state of the saved table and then finds
//   the input again (another writer's file: its unchanged records are
//   moved over from the stale state) gives the records a fresh load gave;
// - the limits hold on write: through a storage whose max_file_bytes is the
//   input's size (so it reads the input), saving the table back is either
//   refused with `errc::invalid_record` before anything is written, or
//   gives a file that reloads under the same limits — never a file its
//   reader refuses.
#pragma once

#include "fuzz_support.hpp"

#include <procreg/record_traits.hpp>
#include <procreg/storage/json_table.hpp>
#include <procreg/stored_record.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace procreg_fuzz {

template <class Record>
using rows = std::vector<procreg::stored_record<Record>>;

/// Every record of `session` in order, checking find() and size() against the listing.
template <class Record, class Session>
rows<Record> snapshot(const Session& session) {
    rows<Record> out;
    session.for_each([&](const procreg::stored_record<Record>& stored) { out.push_back(stored); });
    PROCREG_FUZZ_CHECK(session.size() == out.size(), "size() differs from the number of records listed");
    for (const auto& row : out) {
        const auto* found = session.find(procreg::detail::key_of(row.value));
        PROCREG_FUZZ_CHECK(found != nullptr, "find() misses a listed key");
        PROCREG_FUZZ_CHECK(same_record(found->value, row.value), "find() returns another record than the listing");
    }
    return out;
}

template <class Record>
void check_same_rows(const rows<Record>& expected, const rows<Record>& got, const char* what) {
    PROCREG_FUZZ_CHECK(expected.size() == got.size(), std::string(what) + ": " + std::to_string(got.size()) +
                                             " records instead of " + std::to_string(expected.size()));
    for (std::size_t i = 0; i < expected.size(); ++i) {
        PROCREG_FUZZ_CHECK(same_record(expected[i].value, got[i].value),
              std::string(what) + ": record " + std::to_string(i) + " is " + show(got[i].value) + " instead of " +
                  show(expected[i].value));
    }
}

/// Re-puts every record (as upsert would) and commits.
template <class Record, class Session>
void save_all(Session& session, const rows<Record>& records) {
    for (const auto& row : records) {
        PROCREG_FUZZ_CHECK(!session.put(row).has_value(), "json_table refused a write");
    }
    session.commit();
}

/// The harness: `options` names the table file (its directory must exist).
template <class Record>
void fuzz_json_table(const std::uint8_t* data, std::size_t size, procreg::storage::json_table_options options) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const auto file = options.file;
    write_file(file, input);

    procreg::storage::json_table table(options);
    rows<Record> loaded;
    bool ok = false;
    guarded(
        "json_table load",
        [&] {
            auto session = table.begin<Record>();
            loaded = snapshot<Record>(session);
            ok = true;
        },
        [&](const procreg::error& e) {
            expect_error(e, {procreg::errc::corrupted_file}, "json_table load");
            PROCREG_FUZZ_CHECK(e.path() == file, std::string("the error names another path: ") + e.what());
        });
    if (!ok) {
        check_untouched(file, input, "a failed load");
        return;
    }
    check_untouched(file, input, "a load");

    // The limits on write (see the file comment); the file is the input again afterwards.
    {
        auto bounded_options = options;
        bounded_options.max_file_bytes = input.size();
        bounded_options.reuse_unchanged = false;
        procreg::storage::json_table bounded(bounded_options);
        bool saved = false;
        guarded(
            "json_table save within limits",
            [&] {
                auto session = bounded.begin<Record>();
                save_all<Record>(session, snapshot<Record>(session));
                saved = true;
            },
            [&](const procreg::error& e) { expect_error(e, {procreg::errc::invalid_record}, "a save within limits"); });
        if (saved) {
            guarded(
                "json_table reload within limits",
                [&] {
                    auto session = bounded.begin<Record>();
                    check_same_rows(loaded, snapshot<Record>(session), "reload within limits");
                },
                [&](const procreg::error& e) {
                    fail(std::string("a table saved within limits does not load under them: ") + e.what());
                });
            write_file(file, input);
        } else {
            check_untouched(file, input, "a save refused for the limits");
        }
    }

    // Save what was loaded; a failure to encode what was decoded is a finding.
    guarded(
        "json_table save",
        [&] {
            auto session = table.begin<Record>();
            save_all<Record>(session, snapshot<Record>(session));
        },
        [&](const procreg::error& e) { fail(std::string("saving a table that loaded failed: ") + e.what()); });
    const auto first = read_file(file);
    PROCREG_FUZZ_CHECK(first.has_value(), "the table file is gone after a save");

    // Reload from a storage object that must read the file.
    auto fresh_options = options;
    fresh_options.reuse_unchanged = false;
    procreg::storage::json_table fresh(fresh_options);
    guarded(
        "json_table reload",
        [&] {
            auto session = fresh.begin<Record>();
            const auto reloaded = snapshot<Record>(session);
            check_same_rows(loaded, reloaded, "reload after save");
            save_all<Record>(session, reloaded);
        },
        [&](const procreg::error& e) { fail(std::string("a table procreg wrote does not load: ") + e.what()); });
    const auto second = read_file(file);
    PROCREG_FUZZ_CHECK(second == first, "saving the reloaded table changed the file (not a fixpoint)");

    // The shortcut: `table` wrote the file last but one; `fresh` wrote it
    // last, so `table` must notice and read it; then `table` writes and its
    // next session takes the kept state over.
    guarded(
        "json_table shortcut",
        [&] {
            {
                auto session = table.begin<Record>();
                check_same_rows(loaded, snapshot<Record>(session), "reload by the first storage");
                save_all<Record>(session, snapshot<Record>(session));
            }
            auto session = table.begin<Record>();
            check_same_rows(loaded, snapshot<Record>(session), "state kept between sessions");
        },
        [&](const procreg::error& e) { fail(std::string("reading back through the shortcut failed: ") + e.what()); });
    PROCREG_FUZZ_CHECK(read_file(file) == first, "saving through the unchanged-file shortcut changed the file");

    // A reload over a stale state: `table` keeps its state of `first`, and
    // another writer puts the input back. The records whose bytes did not
    // change are moved over from that state, the others read afresh: the
    // result must be what a fresh load of the input gave.
    write_file(file, input);
    guarded(
        "json_table reload over a stale state",
        [&] {
            auto session = table.begin<Record>();
            check_same_rows(loaded, snapshot<Record>(session), "reload over a stale state");
        },
        [&](const procreg::error& e) { fail(std::string("the input no longer loads over a stale state: ") + e.what()); });
    check_untouched(file, input, "a load over a stale state");
}

}  // namespace procreg_fuzz
