// procreg/storage/record_files/scan.hpp — listing a record_files directory:
// the active records (every `.json` name, the ones that are not keys
// reported) and the retired keys.
//
// Internal to procreg/storage/record_files.hpp (users include that
// header). A directory is listed at most once per session, through a
// duplicate of the storage's own descriptor, and hidden names (the lock
// file, procreg's temp files) are never records.
#pragma once

// The storage first: this header defines its members. (Included on its own,
// the storage header includes this one back, which #pragma once skips.)
#include <procreg/storage/record_files.hpp>

#include <procreg/detail/file_io.hpp>
#include <procreg/detail/record_key.hpp>
#include <procreg/detail/sys.hpp>
#include <procreg/error.hpp>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <dirent.h>

namespace procreg::storage {

namespace detail_files {

/// Calls `visit(name, stem)` for each entry of the directory `dirfd` (at
/// `dir`) named `<stem>.json`, with a non-empty stem, that is not a
/// directory. Throws `errc::io_failure` when the directory cannot be listed.
template <class Visit>
void for_each_json_entry(int dirfd, const std::filesystem::path& dir, Visit&& visit) {
    const auto close = [](DIR* stream) { ::closedir(stream); };
    std::unique_ptr<DIR, decltype(close)> stream(detail::sys::fdopendir_dup(dirfd), close);
    if (!stream) {
        const int err = errno;
        detail::throw_os_error(errc::io_failure, dir, "cannot list directory", err);
    }
    for (;;) {
        errno = 0;
        const dirent* entry = ::readdir(stream.get());
        if (!entry) break;
        const std::string_view name(entry->d_name);
        if (name.size() <= 5 || name.substr(name.size() - 5) != ".json") continue;
        if (entry->d_type == DT_DIR) continue;
        visit(name, name.substr(0, name.size() - 5));
    }
    if (const int err = errno; err != 0) detail::throw_os_error(errc::io_failure, dir, "cannot list directory", err);
}

}  // namespace detail_files

template <class Record>
void record_files::session<Record>::scan() const {
    if (scanned_) return;
    const auto& opts = files_->options_;
    std::vector<std::string> keys;
    const auto visit = [&](std::string_view name, std::string_view stem) {
        if (!detail::is_accepted_record_key(stem, opts.key_rule, opts.max_key_length)) {
            // Hidden names the rule refuses (procreg's temp files among them) are passed over.
            if (name.front() == '.') return;
            const char* why = opts.key_rule == detail::record_key_rule::pattern
                                  ? detail::record_key_pattern
                                  : detail::file_name_key_problem(stem, opts.max_key_length);
            skipped_.push_back(skipped_file{opts.root / std::string(name),
                                            "file name is not a valid record key (" + std::string(why) + ")"});
            return;
        }
        keys.emplace_back(stem);
    };
    detail_files::for_each_json_entry(files_->root_.get(), opts.root, visit);
    for (const std::string& key : keys) load_active(slots_[key], key);
    scanned_ = true;
}

template <class Record>
std::vector<std::string> record_files::session<Record>::retired_keys() const {
    std::vector<std::string> keys;
    detail_files::for_each_json_entry(files_->retired_.get(), files_->retired_path_,
                                      [&](std::string_view name, std::string_view stem) {
                                          if (name.front() != '.' && detail::is_valid_record_key(stem)) {
                                              keys.emplace_back(stem);
                                          }
                                      });
    std::sort(keys.begin(), keys.end());
    return keys;
}

}  // namespace procreg::storage
