// tools/procreg/commands.cpp — ls, show, reap, rm, retire, unretire, claim.
#include "commands.hpp"

#include "listing.hpp"
#include "open_registry.hpp"
#include "output.hpp"

#include <procreg/detail/record_key.hpp>
#include <procreg/error.hpp>

#include <cerrno>
#include <fstream>
#include <iostream>

#include <sys/stat.h>

namespace procreg_cli {
namespace {

boost::json::object header(const target& t) {
    return boost::json::object{{"path", t.path.string()}, {"format", to_string(t.kind)}};
}

std::string quoted(const std::string& text) { return procreg::detail::quote_untrusted(text); }

// A claim file that is no claim: JSON when it starts with '{', else pid text.
format claim_kind_by_first_byte(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    char c = 0;
    while (in.get(c) && (c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
    }
    return in && c == '{' ? format::claim_json : format::claim_pid;
}

}  // namespace

int cmd_ls(const common_options& common, bool alive_only, bool dead_only, bool retired,
           const std::vector<std::string>& columns) {
    const target t = resolve(common.target);
    if (retired && t.kind != format::record_files) {
        throw usage_error("ls --retired: " + t.path.string() + " is a " + to_string(t.kind) +
                          " registry; only a directory of record files keeps retired records");
    }
    const listing found = with_registry(t, [&](auto& reg) {
        listing all = retired ? collect_retired(reg) : collect(reg);
        listing kept;
        kept.skipped = std::move(all.skipped);
        for (auto& r : all.rows) {
            if (alive_only && r.alive != std::optional<bool>(true)) continue;
            if (dead_only && r.alive != std::optional<bool>(false)) continue;
            kept.rows.push_back(std::move(r));
        }
        return kept;
    });
    for (const auto& s : found.skipped) {
        std::cerr << "procreg: skipped " << s.path.string() << ": " << s.reason << '\n';
    }
    if (common.json) {
        boost::json::object out = header(t);
        boost::json::array records;
        for (const auto& r : found.rows) records.push_back(to_json(r));
        out["records"] = std::move(records);
        out["retired"] = retired;
        out["skipped"] = skipped_json(found.skipped);
        print_json(out);
    } else {
        print_table(found.rows, columns, t.layout.key_field, t.layout.pid_field, style::detect(common.no_headings));
    }
    return exit_ok;
}

int cmd_show(const common_options& common, const std::string& key) {
    const target t = resolve(common.target);
    const listing found = with_registry(t, [&](auto& reg) { return collect(reg); });
    for (const auto& r : found.rows) {
        if (r.key != key) continue;
        if (common.json) {
            boost::json::object out = header(t);
            out["record"] = to_json(r);
            print_json(out);
        } else {
            std::cout << "key\t" << escape_cell(r.key) << "\npid\t" << (r.pid ? std::to_string(*r.pid) : "-")
                      << "\nstatus\t" << status_of(r) << '\n'
                      << procreg::detail::pretty_print(r.fields) << '\n';
        }
        return exit_ok;
    }
    std::cerr << "procreg: " << t.path.string() << ": no record with key " << quoted(key) << '\n';
    return exit_no;
}

int cmd_reap(const common_options& common, bool dry_run) {
    const target t = resolve(common.target);
    const std::vector<row> removed = with_registry(t, [&](auto& reg) {
        std::vector<row> out;
        if (dry_run) {
            for (auto& r : collect(reg).rows) {
                if (r.alive == std::optional<bool>(false)) out.push_back(std::move(r));
            }
        } else {
            for (const auto& record : reg.reap()) out.push_back(make_row(record, false));
        }
        return out;
    });
    if (common.json) {
        boost::json::object out = header(t);
        out["dry_run"] = dry_run;
        boost::json::array records;
        for (const auto& r : removed) records.push_back(to_json(r));
        out["removed"] = std::move(records);
        print_json(out);
    } else {
        print_table(removed, {"key", "pid"}, t.layout.key_field, t.layout.pid_field,
                    style::detect(common.no_headings));
    }
    std::cerr << "procreg: " << (dry_run ? "would remove " : "removed ") << removed.size() << " record"
              << (removed.size() == 1 ? "" : "s") << " with a dead owner\n";
    return exit_ok;
}

int cmd_rm(const common_options& common, const std::string& key) {
    const target t = resolve(common.target);
    const bool erased = with_registry(t, [&](auto& reg) { return reg.erase(key); });
    if (!erased) {
        std::cerr << "procreg: " << t.path.string() << ": no record with key " << quoted(key) << '\n';
        return exit_no;
    }
    if (common.json) {
        boost::json::object out = header(t);
        out["removed"] = key;
        print_json(out);
    } else {
        std::cout << escape_cell(key) << '\n';
    }
    return exit_ok;
}

int cmd_retire(const common_options& common, const std::string& key, bool unretire) {
    const char* verb = unretire ? "unretire" : "retire";
    const target t = resolve(common.target);
    if (t.kind != format::record_files) {
        throw usage_error(std::string(verb) + ": " + t.path.string() + " is a " + to_string(t.kind) +
                          " registry; only a directory of record files keeps retired records");
    }
    const procreg::tombstone_result result = with_registry(t, [&](auto& reg) {
        using registry_type = std::decay_t<decltype(reg)>;
        if constexpr (has_tombstones_v<registry_type>) {
            return unretire ? reg.unretire(key) : reg.retire(key);
        } else {
            return procreg::tombstone_result{};
        }
    });
    if (result.status == procreg::tombstone_status::skipped) {
        std::cerr << "procreg: " << result.skipped->path.string() << ": refused: " << result.skipped->reason << '\n';
        return exit_error;
    }
    const char* status = result.status == procreg::tombstone_status::moved ? "moved" : "unchanged";
    if (common.json) {
        boost::json::object out = header(t);
        out["key"] = key;
        out["action"] = verb;
        out["status"] = status;
        print_json(out);
    } else {
        std::cout << escape_cell(key) << '\t' << status << '\n';
    }
    return exit_ok;
}

int cmd_claim(const common_options& common) {
    if (is_etcd_url(common.target.path)) {
        throw usage_error("claim: " + common.target.path.string() + " is an etcd registry, not a claim file");
    }
    struct ::stat st {};
    target t;
    if (::lstat(common.target.path.c_str(), &st) != 0 && errno == ENOENT && common.target.preset.empty()) {
        t.path = common.target.path;  // no file: the claim is free
        t.kind = format::claim_pid;
    } else {
        try {
            t = resolve(common.target);
        } catch (const procreg::error& e) {
            // A regular file that is no registry, asked about as a claim: a
            // claim that does not parse, which the seeds call stale.
            const bool unparseable =
                e.code() == procreg::errc::corrupted_file || e.code() == procreg::errc::unsupported_file;
            if (!unparseable || !S_ISREG(st.st_mode) || st.st_size > (off_t{1} << 20)) throw;
            t.path = common.target.path;
            t.kind = claim_kind_by_first_byte(t.path);
            t.layout = {"", "pid", "claim"};
        }
        if (t.kind != format::claim_pid && t.kind != format::claim_json) {
            throw usage_error("claim: " + t.path.string() + " is a " + to_string(t.kind) +
                              " registry, not a claim file");
        }
    }
    // Read without the lock and without creating anything: claims are
    // published whole, so a reader sees the old claim or the new one.
    procreg::dynamic_record::layout_scope scope(t.layout);
    procreg::storage::claim_file_options opts;
    opts.file = t.path;
    opts.directory.create = false;
    const auto peeked = t.kind == format::claim_json
                            ? procreg::storage::claim_file<procreg::storage::json_record_format>::peek<
                                  procreg::dynamic_record>(opts)
                            : procreg::storage::claim_file<procreg::storage::pid_text_format>::peek<
                                  procreg::dynamic_record>(opts);
    boost::json::object out = header(t);
    std::string state;
    std::optional<std::uint64_t> pid;
    std::optional<bool> alive;
    std::string reason;
    boost::json::value fields = nullptr;
    switch (peeked.state) {
    case procreg::storage::claim_state::absent:
        state = "free";
        break;
    case procreg::storage::claim_state::unparseable:
        state = "stale";
        reason = peeked.reason;
        break;
    case procreg::storage::claim_state::present:
        pid = peeked.record->pid();
        fields = peeked.record->fields();
        if (!pid) {
            state = "stale";
            reason = "the claim names no pid";
        } else {
            alive = tool_liveness{}.is_alive(*pid, peeked.record->fields());
            state = *alive ? "held" : "stale";
            if (!*alive) reason = "the holder (pid " + std::to_string(*pid) + ") is dead";
        }
        break;
    }
    if (common.json) {
        out["state"] = state;
        out["pid"] = pid ? boost::json::value(*pid) : boost::json::value(nullptr);
        out["alive"] = alive ? boost::json::value(*alive) : boost::json::value(nullptr);
        out["reason"] = reason.empty() ? boost::json::value(nullptr) : boost::json::value(reason);
        out["fields"] = fields;
        print_json(out);
    } else {
        std::cout << state;
        if (pid) std::cout << '\t' << *pid;
        if (!reason.empty()) std::cout << '\t' << escape_cell(reason);
        std::cout << '\n';
    }
    if (state == "held") return exit_ok;
    if (state == "stale") return exit_no;
    return exit_free;
}

}  // namespace procreg_cli
