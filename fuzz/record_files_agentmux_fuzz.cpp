// fuzz/record_files_agentmux_fuzz.cpp — one AgentMux record file through storage::record_files.
//
// The input is the file `<root>/agent-1.json` of the agentmux preset
// (schema guard on "schema_version" up to 1, `data.instance_id` must equal
// the stem). Asserted, through the storage's real read path (find, which
// reads the one file, and the directory listing):
// - reading never throws for a file's contents: a bad file is skipped and
//   reported with its path, a good one is found; find, listing, size() and
//   skipped() agree, and exists() sees the file either way;
// - an upsert (put over the file as read, then commit) of a file the
//   storage must not overwrite (unparseable, schema missing or too new) is
//   refused and leaves the file byte for byte as it was;
// - otherwise the upsert is written, reloads as exactly the record put, keeps
//   every top-level key the record type does not know with its value, and
//   writing the reloaded record again gives the same bytes;
// - retire then unretire moves the file and back without changing a byte;
// - the limits hold on write: through a storage whose max_file_bytes is the
//   input's size, that upsert is refused as above, or refused with
//   `errc::invalid_record` before anything is written, or gives a file that
//   reloads under the same limits — never a file its reader skips.
#include "fuzz_support.hpp"

#include <procreg/presets/agentmux.hpp>
#include <procreg/storage/record_files.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace {

using procreg::agentmux::agent_record;

constexpr const char* key = "agent-1";

procreg::storage::record_files_options make_options(const std::filesystem::path& root) {
    auto options = procreg::agentmux::options(root);
    options.durable = false;  // tmpfs: fsync changes nothing but the speed
    return options;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const auto root = procreg_fuzz::fresh_dir("agentmux");
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const auto file = root / (std::string(key) + ".json");
    const auto retired = root / "retired" / (std::string(key) + ".json");
    std::filesystem::remove(retired);
    procreg_fuzz::write_file(file, input);

    procreg::storage::record_files files(make_options(root));

    // 1. Read: the one file by key, then the listing.
    std::optional<agent_record> found;
    bool writable = true;
    boost::json::object as_read;  // the file's top level when it parses as an object
    procreg_fuzz::guarded(
        "record_files read",
        [&] {
            auto session = files.begin<agent_record>();
            PROCREG_FUZZ_CHECK(session.exists(key), "exists() misses the file");
            if (const auto* stored = session.find(key)) {
                found = stored->value;
                as_read = stored->json;
                PROCREG_FUZZ_CHECK(stored->value.data.instance_id == key, "a record whose instance_id is not the stem was found");
                PROCREG_FUZZ_CHECK(stored->value.schema_version <= procreg::agentmux::max_supported_schema,
                      "a record with a schema above the maximum was found");
            }
            std::size_t listed = 0;
            session.for_each([&](const procreg::stored_record<agent_record>& stored) {
                ++listed;
                PROCREG_FUZZ_CHECK(found && procreg_fuzz::same_record(stored.value, *found), "listing and find() disagree");
            });
            PROCREG_FUZZ_CHECK(listed == (found ? 1u : 0u), "the listing has " + std::to_string(listed) + " records");
            PROCREG_FUZZ_CHECK(session.size() == listed, "size() differs from the listing");
            const auto& skipped = session.skipped();
            PROCREG_FUZZ_CHECK(skipped.size() == (found ? 0u : 1u), "skipped() has " + std::to_string(skipped.size()) + " files");
            if (!found) {
                PROCREG_FUZZ_CHECK(skipped.front().path == file, "skipped() names " + skipped.front().path.string());
                PROCREG_FUZZ_CHECK(!skipped.front().reason.empty(), "a skipped file without a reason");
            }
        },
        procreg_fuzz::no_error("read"));
    procreg_fuzz::check_untouched(file, input, "reading");
    if (!found) {
        // Whether the storage may overwrite it: the raw object when it
        // parses and carries a supported schema (the record is then only
        // undecodable, or keyed differently).
        // (procreg's parse: depth limit, numbers in range.)
        std::string why;
        const auto parsed = procreg::detail::parse_json(input, procreg::detail::json_limits{32}, why);
        writable = false;
        if (parsed && parsed->is_object()) {
            as_read = parsed->as_object();
            const auto* version = as_read.if_contains("schema_version");
            writable = version && ((version->is_uint64() && version->get_uint64() <= 1) ||
                                   (version->is_int64() && version->get_int64() >= 0 && version->get_int64() <= 1));
        }
    }

    agent_record next = found ? *found : agent_record::make(key);
    next.data.display_name = "fuzz";

    // 1b. The limits on write (see the file comment); the file is the input again afterwards.
    {
        auto bounded_options = make_options(root);
        bounded_options.max_file_bytes = input.size();
        procreg::storage::record_files bounded(bounded_options);
        bool saved = false;
        procreg_fuzz::guarded(
            "record_files upsert within limits",
            [&] {
                auto session = bounded.begin<agent_record>();
                const auto* stored = session.find(key);
                saved = !session.put({next, stored ? stored->json : boost::json::object{}}).has_value();
                session.commit();
            },
            [&](const procreg::error& e) {
                procreg_fuzz::expect_error(e, {procreg::errc::invalid_record}, "an upsert within limits");
            });
        if (saved) {
            procreg_fuzz::guarded(
                "record_files reload within limits",
                [&] {
                    auto session = bounded.begin<agent_record>();
                    const auto* stored = session.find(key);
                    PROCREG_FUZZ_CHECK(stored && procreg_fuzz::same_record(stored->value, next),
                                       "an upsert within limits does not reload under them: " +
                                           (session.skipped().empty() ? std::string("?")
                                                                      : session.skipped().front().reason));
                },
                procreg_fuzz::no_error("reload within limits"));
            procreg_fuzz::write_file(file, input);
        } else {
            procreg_fuzz::check_untouched(file, input, "an upsert refused for the limits");
        }
    }

    // 2. Upsert over it.
    bool refused = false;
    procreg_fuzz::guarded(
        "record_files upsert",
        [&] {
            auto session = files.begin<agent_record>();
            const auto* stored = session.find(key);
            auto outcome = session.put({next, stored ? stored->json : boost::json::object{}});
            refused = outcome.has_value();
            if (refused) PROCREG_FUZZ_CHECK(outcome->path == file, "a refusal names " + outcome->path.string());
            session.commit();
        },
        procreg_fuzz::no_error("upsert"));
    if (refused || !writable) {
        PROCREG_FUZZ_CHECK(refused && !writable, refused ? "a file the storage may overwrite was refused"
                                            : "a file the storage must not overwrite was written");
        procreg_fuzz::check_untouched(file, input, "a refused upsert");
        return 0;
    }
    const auto written = procreg_fuzz::read_file(file);
    PROCREG_FUZZ_CHECK(written.has_value(), "the record file is gone after an upsert");

    // 3. Reload from a new storage object, and write again.
    procreg::storage::record_files again(make_options(root));
    procreg_fuzz::guarded(
        "record_files reload",
        [&] {
            auto session = again.begin<agent_record>();
            const auto* stored = session.find(key);
            PROCREG_FUZZ_CHECK(stored != nullptr, "the record written does not load: " +
                                         (session.skipped().empty() ? std::string("?")
                                                                    : session.skipped().front().reason));
            PROCREG_FUZZ_CHECK(procreg_fuzz::same_record(stored->value, next),
                  "reloaded " + procreg_fuzz::show(stored->value) + " instead of " + procreg_fuzz::show(next));
            for (const auto& item : as_read) {
                if (item.key() == "schema_version" || item.key() == "data") continue;
                const auto* kept = stored->json.if_contains(item.key());
                PROCREG_FUZZ_CHECK(kept && *kept == item.value(), "the unknown key \"" + std::string(item.key()) + "\" was lost");
            }
            PROCREG_FUZZ_CHECK(!session.put({stored->value, stored->json}).has_value(), "rewriting a record procreg wrote was refused");
            session.commit();
        },
        procreg_fuzz::no_error("reload"));
    PROCREG_FUZZ_CHECK(procreg_fuzz::read_file(file) == written, "writing the reloaded record changed the file (not a fixpoint)");

    // 4. Retire and unretire move the file and nothing else.
    procreg_fuzz::guarded(
        "record_files retire",
        [&] {
            {
                auto session = again.begin<agent_record>();
                PROCREG_FUZZ_CHECK(session.retire(key).status == procreg::tombstone_status::moved, "retire did not move");
                session.commit();
            }
            procreg_fuzz::check_untouched(retired, *written, "retire");
            PROCREG_FUZZ_CHECK(!procreg_fuzz::read_file(file).has_value(), "retire left the active file");
            auto session = again.begin<agent_record>();
            PROCREG_FUZZ_CHECK(session.unretire(key).status == procreg::tombstone_status::moved, "unretire did not move");
            session.commit();
        },
        procreg_fuzz::no_error("retire"));
    procreg_fuzz::check_untouched(file, *written, "unretire");
    return 0;
}
