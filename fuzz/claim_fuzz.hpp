// fuzz/claim_fuzz.hpp — the claim_file harness body, shared by the two claim formats.
//
// The input is the whole claim file. Asserted, through the storage's real
// paths:
// - `peek` (the lock-free read, e.g. trusty's `read_lock_pid`) never throws
//   for a file's contents: absent is impossible (the file exists), so it is
//   `present` with a record or `unparseable` with a reason;
// - a session with `unparseable_claim::stale` (both seeds' setting) agrees
//   with peek: the same record, or no record and one skipped entry naming
//   the file; with `unparseable_claim::error` the load throws
//   `errc::corrupted_file` exactly when peek says unparseable;
// - reading leaves the file byte for byte as it was;
// - a present claim re-put and committed (the compare-and-swap publish)
//   reloads as the same record and is a fixpoint (a second save gives the
//   same bytes); an unparseable claim is replaced by a new one (the stale
//   takeover) that reloads as what was put;
// - the limits hold on write: through a storage whose max_file_bytes is the
//   input's size, that publish is either refused with
//   `errc::invalid_record` before anything is written, or gives a claim
//   that a strict load under the same limits reads back — never a claim
//   that others would take for unparseable (stale) while its writer holds it.
#pragma once

#include "fuzz_support.hpp"

#include <procreg/record_traits.hpp>
#include <procreg/storage/claim_file.hpp>
#include <procreg/stored_record.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace procreg_fuzz {

/// The harness. `options.file` is the claim file (its directory must
/// exist); `fresh` is the record a stale takeover writes. Returns what peek saw.
template <class Format, class Record>
procreg::storage::claim_peek<Record> fuzz_claim(const std::uint8_t* data, std::size_t size,
                                                procreg::storage::claim_file_options options, const Record& fresh) {
    using storage_type = procreg::storage::claim_file<Format>;
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const auto file = options.file;
    write_file(file, input);

    // 1. The lock-free read.
    procreg::storage::claim_peek<Record> peeked;
    guarded("claim peek", [&] { peeked = storage_type::template peek<Record>(options); }, no_error("peek"));
    PROCREG_FUZZ_CHECK(peeked.state != procreg::storage::claim_state::absent, "peek says absent for an existing file");
    PROCREG_FUZZ_CHECK((peeked.state == procreg::storage::claim_state::present) == peeked.record.has_value(),
          "peek's state and record disagree");
    if (peeked.state == procreg::storage::claim_state::unparseable) {
        PROCREG_FUZZ_CHECK(!peeked.reason.empty(), "an unparseable claim without a reason");
    }
    const bool present = peeked.state == procreg::storage::claim_state::present;

    // 2. Sessions, stale and strict.
    options.unparseable = procreg::storage::unparseable_claim::stale;
    storage_type stale(options);
    std::optional<procreg::stored_record<Record>> loaded;
    guarded(
        "claim load (stale)",
        [&] {
            auto session = stale.template begin<Record>();
            session.for_each([&](const procreg::stored_record<Record>& stored) { loaded = stored; });
            PROCREG_FUZZ_CHECK(session.size() == (loaded ? 1u : 0u), "size() disagrees with for_each");
            PROCREG_FUZZ_CHECK(loaded.has_value() == present, "the session and peek disagree on whether there is a claim");
            if (loaded) {
                PROCREG_FUZZ_CHECK(same_record(loaded->value, *peeked.record), "the session and peek read different claims");
                PROCREG_FUZZ_CHECK(session.find(procreg::detail::key_of(loaded->value)) != nullptr, "find() misses the claim");
                PROCREG_FUZZ_CHECK(session.skipped().empty(), "a readable claim was reported skipped");
            } else {
                PROCREG_FUZZ_CHECK(session.skipped().size() == 1 && session.skipped().front().path == file,
                      "an unparseable claim must be reported once, with its path");
            }
        },
        no_error("a stale-mode load"));
    auto strict_options = options;
    strict_options.unparseable = procreg::storage::unparseable_claim::error;
    storage_type strict(strict_options);
    bool threw = false;
    guarded(
        "claim load (strict)", [&] { (void)strict.template begin<Record>(); },
        [&](const procreg::error& e) {
            expect_error(e, {procreg::errc::corrupted_file}, "a strict load");
            threw = true;
        });
    PROCREG_FUZZ_CHECK(threw == !present, threw ? "a strict load refused a claim peek reads" : "a strict load accepted garbage");
    check_untouched(file, input, "reading the claim");

    const Record expected = present ? loaded->value : fresh;

    // 2b. The limits on write (see the file comment); the file is the input again afterwards.
    {
        auto bounded_options = options;
        bounded_options.max_file_bytes = input.size();
        storage_type bounded(bounded_options);
        bool saved = false;
        guarded(
            "claim publish within limits",
            [&] {
                auto session = bounded.template begin<Record>();
                procreg::stored_record<Record> next{expected, present ? loaded->json : boost::json::object{}};
                const auto refused = session.put(next);
                PROCREG_FUZZ_CHECK(!refused.has_value(), "publishing within limits was refused: " +
                                                             (refused ? refused->reason : std::string()));
                session.commit();
                saved = true;
            },
            [&](const procreg::error& e) { expect_error(e, {procreg::errc::invalid_record}, "a publish within limits"); });
        if (saved) {
            auto bounded_strict = bounded_options;
            bounded_strict.unparseable = procreg::storage::unparseable_claim::error;
            guarded(
                "claim reload within limits",
                [&] {
                    storage_type again(bounded_strict);
                    auto session = again.template begin<Record>();
                    std::optional<procreg::stored_record<Record>> reloaded;
                    session.for_each([&](const procreg::stored_record<Record>& stored) { reloaded = stored; });
                    PROCREG_FUZZ_CHECK(reloaded && same_record(reloaded->value, expected),
                                       "a claim published within limits does not reload under them");
                },
                [&](const procreg::error& e) {
                    fail(std::string("a claim published within limits does not load under them: ") + e.what());
                });
            write_file(file, input);
        } else {
            check_untouched(file, input, "a publish refused for the limits");
        }
    }

    // 3. Publish: the same claim again, or a takeover of an unparseable one.
    guarded(
        "claim publish",
        [&] {
            auto session = stale.template begin<Record>();
            procreg::stored_record<Record> next{expected, present ? loaded->json : boost::json::object{}};
            const auto refused = session.put(next);
            PROCREG_FUZZ_CHECK(!refused.has_value(), "publishing was refused: " + (refused ? refused->reason : std::string()));
            session.commit();
        },
        no_error("publish"));
    const auto first = read_file(file);
    PROCREG_FUZZ_CHECK(first.has_value(), "the claim file is gone after a publish");
    guarded(
        "claim reload",
        [&] {
            storage_type again(strict_options);
            auto session = again.template begin<Record>();
            std::optional<procreg::stored_record<Record>> reloaded;
            session.for_each([&](const procreg::stored_record<Record>& stored) { reloaded = stored; });
            PROCREG_FUZZ_CHECK(reloaded.has_value(), "the published claim is missing");
            PROCREG_FUZZ_CHECK(same_record(reloaded->value, expected),
                  "reloaded " + show(reloaded->value) + " instead of " + show(expected));
            PROCREG_FUZZ_CHECK(!session.put(*reloaded).has_value(), "republishing was refused");
            session.commit();
        },
        no_error("reload"));
    PROCREG_FUZZ_CHECK(read_file(file) == first, "republishing the reloaded claim changed the file (not a fixpoint)");
    return peeked;
}

}  // namespace procreg_fuzz
