// tools/procreg/main.cpp — the `procreg` command: inspect and repair
// registries from a shell, with the library's own locks and liveness rules.
//
// Invariant: the command line is parsed by CLI11 only; every usage error
// exits 2, every procreg::error exits 4 with its one-line message on stderr,
// and data alone goes to stdout. See docs/cli.md.
#include "commands.hpp"

#include <procreg/error.hpp>
#include <procreg/version.hpp>

#include <CLI/CLI.hpp>

#include <iostream>

namespace {

using namespace procreg_cli;

// The options naming and reading a registry, on every subcommand.
void add_target_options(CLI::App& sub, common_options& common, bool table_output) {
    sub.add_option("PATH", common.target.path,
                   "registry file, record directory, claim file, or etcd://HOST:PORT[,HOST:PORT]/PREFIX")
        ->required();
    sub.add_option("--preset", common.target.preset, "use a seed's exact layout")
        ->check(CLI::IsMember({"algocline", "yoi", "agentmux", "trusty", "insomnia"}));
    sub.add_option("--array", common.target.array, "the member holding the records (JSON table)");
    sub.add_option("--key", common.target.key_field, "dotted path of the key field (e.g. data.instance_id)");
    sub.add_option("--pid", common.target.pid_field, "dotted path of the pid field");
    sub.add_option("--lock", common.target.lock, "the lock file to take instead of the format's own");
    sub.add_flag("--named-mutex", common.target.named_mutex,
                 "lock as lock::named_mutex_lock does (for registries whose programs use it)");
    sub.add_flag("--json", common.json, "one JSON object on stdout (docs/cli.md)");
    if (table_output) sub.add_flag("-n,--no-headings", common.no_headings, "print no heading line");
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"procreg — inspect and repair registries of live processes"};
    app.set_version_flag("--version", std::to_string(PROCREG_VERSION_MAJOR) + "." +
                                          std::to_string(PROCREG_VERSION_MINOR) + "." +
                                          std::to_string(PROCREG_VERSION_PATCH));
    app.require_subcommand(1, 1);
    common_options common;
    std::string key;
    bool alive_only = false, dead_only = false, retired_only = false, dry_run = false, fix = false;
    std::vector<std::string> columns;
    long count = 0;
    double timeout = 0;

    auto* ls = app.add_subcommand("ls", "list every record with its owner's liveness");
    add_target_options(*ls, common, true);
    auto* alive_flag = ls->add_flag("--alive", alive_only, "only records whose owner is alive");
    ls->add_flag("--dead", dead_only, "only records whose owner is dead")->excludes(alive_flag);
    ls->add_flag("--retired", retired_only, "the retired records of a record directory instead of the active ones");
    ls->add_option("-o,--columns", columns, "columns: key, pid, status or field paths")->delimiter(',');

    auto* show = app.add_subcommand("show", "one record in full (exit 1 if absent)");
    add_target_options(*show, common, false);
    show->add_option("KEY", key, "the record's key")->required();

    auto* reap = app.add_subcommand("reap", "remove records whose owners are dead, under the lock");
    add_target_options(*reap, common, true);
    reap->add_flag("--dry-run", dry_run, "say what would be removed, remove nothing");

    auto* rm = app.add_subcommand("rm", "remove one record (exit 1 if absent)");
    add_target_options(*rm, common, false);
    rm->add_option("KEY", key, "the record's key")->required();

    auto* retire = app.add_subcommand("retire", "move a record to retired/ (record directories only)");
    add_target_options(*retire, common, false);
    retire->add_option("KEY", key, "the record's key")->required();

    auto* unretire = app.add_subcommand("unretire", "move a record back from retired/ (record directories only)");
    add_target_options(*unretire, common, false);
    unretire->add_option("KEY", key, "the record's key")->required();

    auto* claim = app.add_subcommand("claim", "who holds a claim file: exit 0 held, 1 stale, 3 free");
    add_target_options(*claim, common, false);

    auto* watch = app.add_subcommand("watch", "print changes as they happen, one line each");
    add_target_options(*watch, common, false);
    watch->add_option("--count", count, "stop after N events")->check(CLI::NonNegativeNumber);
    watch->add_option("--timeout", timeout, "stop after S seconds")->check(CLI::NonNegativeNumber);

    auto* doctor = app.add_subcommand("doctor", "report everything wrong; exit 1 when something is");
    add_target_options(*doctor, common, false);
    doctor->add_flag("--fix", fix, "repair what is safe to repair and say what was left");

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        (void)app.exit(e);
        return exit_usage;
    }

    try {
        if (ls->parsed()) return cmd_ls(common, alive_only, dead_only, retired_only, columns);
        if (show->parsed()) return cmd_show(common, key);
        if (reap->parsed()) return cmd_reap(common, dry_run);
        if (rm->parsed()) return cmd_rm(common, key);
        if (retire->parsed()) return cmd_retire(common, key, false);
        if (unretire->parsed()) return cmd_retire(common, key, true);
        if (claim->parsed()) return cmd_claim(common);
        if (watch->parsed()) return cmd_watch(common, count, timeout);
        if (doctor->parsed()) return cmd_doctor(common, fix);
    } catch (const usage_error& e) {
        std::cerr << "procreg: " << e.what() << '\n';
        return exit_usage;
    } catch (const procreg::error& e) {
        std::cerr << "procreg: " << e.what() << '\n';
        return exit_error;
    } catch (const std::exception& e) {
        std::cerr << "procreg: " << e.what() << '\n';
        return exit_error;
    }
    return exit_usage;
}
