// tools/procreg/commands.hpp — the subcommands; each returns the exit code.
//
// Exit codes (docs/cli.md): 0 success; 1 the answer is "no" (absent key,
// stale claim, problems found); 2 usage error; 3 claim free; 4 the registry
// could not be read or changed (the error, one line, on stderr).
#pragma once

#include "target.hpp"

#include <string>
#include <vector>

namespace procreg_cli {

/// Exit codes shared by every subcommand.
enum exit_code : int {
    exit_ok = 0,
    exit_no = 1,
    exit_usage = 2,
    exit_free = 3,
    exit_error = 4,
};

/// Options every subcommand takes.
struct common_options {
    target_options target;
    bool json = false;
    bool no_headings = false;
};

int cmd_ls(const common_options& common, bool alive_only, bool dead_only, bool retired,
           const std::vector<std::string>& columns);
int cmd_show(const common_options& common, const std::string& key);
int cmd_reap(const common_options& common, bool dry_run);
int cmd_rm(const common_options& common, const std::string& key);
int cmd_retire(const common_options& common, const std::string& key, bool unretire);
int cmd_claim(const common_options& common);
int cmd_doctor(const common_options& common, bool fix);
int cmd_watch(const common_options& common, long count, double timeout_seconds);

}  // namespace procreg_cli
