// tools/procreg/target.cpp — format detection (see target.hpp).
#include "target.hpp"

#include <procreg/detail/etcd_client.hpp>
#include <procreg/detail/file_io.hpp>
#include <procreg/detail/json_codec.hpp>
#include <procreg/error.hpp>
#include <procreg/presets/agentmux.hpp>
#include <procreg/presets/algocline.hpp>
#include <procreg/presets/yoi.hpp>
#include <procreg/storage/claim_file.hpp>

#include <cerrno>
#include <cstdlib>
#include <optional>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace procreg_cli {
namespace {

namespace fs = std::filesystem;
using procreg::errc;
using procreg::error;

// Detection reads at most what json_table would accept.
constexpr std::size_t max_detect_bytes = std::size_t{64} << 20;

// Field names tried, in order, for the key of a registry that does not say.
const char* const key_candidates[] = {"sid", "id", "key", "name", "pod_name", "instance_id", "data.instance_id"};

std::string read_regular_file(const fs::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) procreg::detail::throw_os_error(errc::io_failure, path, "cannot open", errno);
    procreg::detail::unique_fd owned(fd);
    struct ::stat st {};
    if (::fstat(fd, &st) != 0) procreg::detail::throw_os_error(errc::io_failure, path, "cannot stat", errno);
    if (!S_ISREG(st.st_mode)) throw error(errc::unsafe_path, path, "not a regular file");
    if (static_cast<std::uint64_t>(st.st_size) > max_detect_bytes) {
        throw error(errc::corrupted_file, path,
                    "the file is " + std::to_string(st.st_size) + " bytes, more than the " +
                        std::to_string(max_detect_bytes) + " a registry may have");
    }
    std::string bytes(static_cast<std::size_t>(st.st_size), '\0');
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) procreg::detail::throw_os_error(errc::io_failure, path, "cannot read", errno);
        if (n == 0) break;
        done += static_cast<std::size_t>(n);
    }
    bytes.resize(done);
    return bytes;
}

std::string guess_key(const boost::json::object* first) {
    if (first) {
        for (const char* candidate : key_candidates) {
            const auto* value = procreg::find_json_path(*first, candidate);
            if (value && value->is_string()) return candidate;
        }
    }
    return "id";
}

void apply_preset(target& out, const std::string& preset) {
    if (preset == "algocline") {
        const auto opts = procreg::algocline::options(out.path);
        out.kind = format::json_table;
        out.array = opts.array_key;
        out.lock = opts.lock_file;
        out.layout = {"sid", "pid"};
    } else if (preset == "yoi") {
        const auto opts = procreg::yoi::options(out.path);
        out.kind = format::json_table;
        out.array = opts.array_key;
        out.lock = opts.lock_file;
        out.layout = {"pod_name", "pid"};
    } else if (preset == "agentmux") {
        const auto opts = procreg::agentmux::options(out.path);
        out.kind = format::record_files;
        out.lock = out.path / ".registry.lock";
        out.schema_field = opts.schema_field;
        out.max_schema_version = opts.max_schema_version;
        out.layout = {"data.instance_id", ""};
    } else if (preset == "trusty") {
        out.kind = format::claim_pid;
        out.lock = procreg::storage::claim_file<procreg::storage::pid_text_format>::default_lock_path(out.path);
        out.layout = {"", "pid", "daemon"};
    } else if (preset == "insomnia") {
        out.kind = format::claim_json;
        out.lock = procreg::storage::claim_file<procreg::storage::json_record_format>::default_lock_path(out.path);
        out.layout = {"", "pid", "consolidation"};
    } else {
        throw usage_error("unknown preset '" + preset + "' (algocline, yoi, agentmux, trusty, insomnia)");
    }
}

// A regular file: a table, a JSON claim or a pid-text claim.
void detect_file(target& out, const target_options& options) {
    const std::string bytes = read_regular_file(out.path);
    const auto first = bytes.find_first_not_of(" \t\r\n\f\v");
    if (first == std::string::npos || bytes[first] != '{') {
        // Not JSON: a pid-text claim. An empty one is a stale claim, as the
        // seeds say; any other text is not something procreg wrote.
        std::string why;
        if (first != std::string::npos &&
            !procreg::storage::pid_text_format::parse(bytes, procreg::detail::json_limits{}, why)) {
            throw error(errc::unsupported_file, out.path, "neither JSON nor a pid claim: " + why);
        }
        out.kind = format::claim_pid;
        out.layout = {"", "pid", "claim"};
        return;
    }
    std::string why;
    auto parsed = procreg::detail::parse_json(bytes, procreg::detail::json_limits{}, why);
    if (!parsed) throw error(errc::corrupted_file, out.path, "cannot parse JSON: " + why);
    if (!parsed->is_object()) throw error(errc::corrupted_file, out.path, "the top level is not a JSON object");
    const auto& object = parsed->as_object();
    std::vector<std::string> arrays;
    for (const auto& item : object) {
        if (item.value().is_array()) arrays.emplace_back(item.key());
    }
    const std::string pid_field = options.pid_field.empty() ? "pid" : options.pid_field;
    // A table holds its pids inside records; an object with a pid of its own
    // at the top is a claim, whatever arrays it carries (INSOMNIA's consumed_ids).
    const auto* own_pid = procreg::find_json_path(object, pid_field);
    if (options.array.empty() && own_pid && (own_pid->is_int64() || own_pid->is_uint64())) {
        out.kind = format::claim_json;
        out.layout = {"", pid_field, "claim"};
        return;
    }
    if (!options.array.empty()) {
        out.array = options.array;
    } else if (arrays.size() == 1) {
        out.array = arrays.front();
    } else if (arrays.empty() && procreg::find_json_path(object, pid_field)) {
        out.kind = format::claim_json;
        out.layout = {"", pid_field, "claim"};
        return;
    } else if (arrays.empty()) {
        throw error(errc::unsupported_file, out.path,
                    "one JSON object with no array of records and no \"" + pid_field +
                        "\" field: not a registry procreg recognises (give --array NAME or --pid FIELD)");
    } else {
        std::string names;
        for (const auto& name : arrays) names += (names.empty() ? "" : ", ") + procreg::detail::quote_untrusted(name);
        throw usage_error(out.path.string() + ": several arrays (" + names + "); say which holds the records with --array NAME");
    }
    out.kind = format::json_table;
    const boost::json::object* first_record = nullptr;
    if (const auto found = object.find(out.array); found != object.end() && found->value().is_array()) {
        const auto& records = found->value().get_array();
        if (!records.empty()) first_record = records.front().if_object();
    }
    out.layout = {guess_key(first_record), pid_field};
}

// A directory of records: the key is guessed from the first *.json file.
void detect_directory(target& out) {
    out.kind = format::record_files;
    const boost::json::object* first = nullptr;
    boost::json::value parsed;
    std::error_code ec;
    for (fs::directory_iterator it(out.path, ec), end; !ec && it != end; it.increment(ec)) {
        if (it->path().extension() != ".json" || !it->is_regular_file(ec) || it->is_symlink(ec)) continue;
        std::string why;
        try {
            auto value = procreg::detail::parse_json(read_regular_file(it->path()), {}, why);
            if (value && value->is_object()) {
                parsed = std::move(*value);
                first = &parsed.as_object();
                break;
            }
        } catch (const error&) {
            // Unreadable files are listed as skipped later, with their reason.
        }
    }
    out.layout = {guess_key(first), "pid"};
}

constexpr std::string_view etcd_scheme = "etcd://";

// `etcd://HOST:PORT[,HOST:PORT]/PREFIX`: the members and the prefix. The
// prefix keeps its leading '/', loses trailing ones, and must not be empty.
void parse_etcd_url(target& out) {
    const std::string text = out.path.string();
    const std::string rest = text.substr(etcd_scheme.size());
    const auto slash = rest.find('/');
    const std::string hosts = rest.substr(0, slash);
    if (hosts.find('@') != std::string::npos) {  // never echo a password
        throw usage_error("etcd://" + procreg::detail::quote_untrusted(hosts.substr(hosts.rfind('@') + 1)) +
                          ": an etcd:// URL takes no user info (user:password@): "
                          "set PROCREG_ETCD_USER and PROCREG_ETCD_PASSWORD instead");
    }
    if (rest.find_first_of("?#") != std::string::npos) {
        throw usage_error(procreg::detail::quote_untrusted(text) +
                          ": an etcd:// URL takes no query string or fragment ('?', '#')");
    }
    std::string prefix = slash == std::string::npos ? std::string() : rest.substr(slash);
    while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
    if (hosts.empty() || prefix.empty()) {
        throw usage_error(procreg::detail::quote_untrusted(text) +
                          ": an etcd registry is etcd://HOST:PORT[,HOST:PORT]/PREFIX, with a non-empty PREFIX");
    }
    std::size_t start = 0;
    for (;;) {
        const auto comma = hosts.find(',', start);
        const std::string one = hosts.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        try {
            procreg::detail::parse_etcd_endpoint(one);
        } catch (const procreg::error& e) {  // a malformed member is the caller's mistake: exit 2
            throw usage_error(e.what());
        }
        out.etcd_endpoints.push_back(one);
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    out.etcd_prefix = prefix;
}

// The first record under the prefix, to guess its key field from (none when
// the prefix is empty or the value is not a JSON object).
std::optional<boost::json::object> first_etcd_record(const target& out) {
    procreg::detail::etcd_client client(etcd_connection_of(out));
    const std::string start = out.etcd_prefix + "/";
    const std::string end = out.etcd_prefix + "0";  // '0' follows '/'
    const boost::json::value answer = client.call_ok(
        "/v3/kv/range", boost::json::object{{"key", procreg::detail::base64_encode(start)},
                                            {"range_end", procreg::detail::base64_encode(end)},
                                            {"limit", "1"}});
    const auto* kvs = answer.as_object().if_contains("kvs");
    if (!kvs || !kvs->is_array() || kvs->get_array().empty()) return std::nullopt;
    const auto* value = kvs->get_array().front().as_object().if_contains("value");
    if (!value || !value->is_string()) return std::nullopt;
    const auto bytes = procreg::detail::base64_decode(value->get_string());
    if (!bytes) return std::nullopt;
    std::string why;
    auto parsed = procreg::detail::parse_json(*bytes, procreg::detail::json_limits{}, why);
    if (!parsed || !parsed->is_object()) return std::nullopt;
    return std::move(parsed->as_object());
}

// An etcd registry: the preset's layout, or the key guessed from a record.
target resolve_etcd(const target_options& options) {
    target out;
    out.path = options.path;
    out.kind = format::etcd;
    parse_etcd_url(out);
    if (options.named_mutex || !options.lock.empty()) {
        throw usage_error("--lock and --named-mutex do not apply to etcd: its transactions are compare-and-swap, "
                          "with no lock");
    }
    if (!options.array.empty()) throw usage_error("--array applies only to a JSON table");
    const std::string pid_field = options.pid_field.empty() ? "pid" : options.pid_field;
    if (options.preset == "algocline") {
        out.layout = {"sid", "pid"};
    } else if (options.preset == "yoi") {
        out.layout = {"pod_name", "pid"};
    } else if (options.preset == "agentmux") {
        out.layout = {"data.instance_id", ""};
    } else if (!options.preset.empty()) {
        throw usage_error("the " + options.preset + " preset is a claim file; an etcd prefix holds records "
                          "(algocline, yoi, agentmux)");
    } else {
        const auto first = first_etcd_record(out);
        out.layout = {guess_key(first ? &*first : nullptr), pid_field};
    }
    if (!options.key_field.empty()) out.layout.key_field = options.key_field;
    if (!options.pid_field.empty()) out.layout.pid_field = options.pid_field;
    out.lock = out.path;  // no lock file: shown where a lock would be named
    return out;
}

}  // namespace

bool is_etcd_url(const std::filesystem::path& path) {
    return path.native().compare(0, etcd_scheme.size(), etcd_scheme) == 0;
}

procreg::detail::etcd_connection etcd_connection_of(const target& t) {
    procreg::detail::etcd_connection connection;
    connection.endpoints = t.etcd_endpoints;
    if (const char* user = std::getenv("PROCREG_ETCD_USER")) connection.user = user;
    if (const char* password = std::getenv("PROCREG_ETCD_PASSWORD")) connection.password = password;
    return connection;
}

const char* to_string(format f) {
    switch (f) {
    case format::json_table: return "json_table";
    case format::record_files: return "record_files";
    case format::claim_pid: return "claim_pid_text";
    case format::claim_json: return "claim_json";
    case format::etcd: return "etcd";
    }
    return "?";
}

target resolve(const target_options& options) {
    if (is_etcd_url(options.path)) return resolve_etcd(options);
    target out;
    out.path = options.path;
    if (out.path.empty()) throw usage_error("PATH is empty");
    struct ::stat st {};
    const bool exists = ::lstat(out.path.c_str(), &st) == 0;
    if (!exists && errno != ENOENT) procreg::detail::throw_os_error(errc::io_failure, out.path, "cannot stat", errno);
    if (exists && S_ISLNK(st.st_mode)) {
        throw error(errc::unsafe_path, out.path, "is a symbolic link; procreg never follows one (give the real path)");
    }
    if (!options.preset.empty()) {
        apply_preset(out, options.preset);
        if (!exists && out.kind == format::record_files) {
            procreg::detail::throw_os_error(errc::io_failure, out.path, "no record directory here", ENOENT);
        }
        if (exists && out.kind == format::record_files && !S_ISDIR(st.st_mode)) {
            throw error(errc::unsupported_file, out.path, "the " + options.preset + " preset needs a directory");
        }
        if (exists && out.kind != format::record_files && !S_ISREG(st.st_mode)) {
            throw error(errc::unsupported_file, out.path, "the " + options.preset + " preset needs a regular file");
        }
    } else if (!exists) {
        procreg::detail::throw_os_error(errc::io_failure, out.path,
                                        "no registry here (give --preset to name an empty one)", ENOENT);
    } else if (S_ISDIR(st.st_mode)) {
        detect_directory(out);
    } else if (S_ISREG(st.st_mode)) {
        detect_file(out, options);
    } else {
        throw error(errc::unsupported_file, out.path, "neither a regular file nor a directory");
    }
    if (!options.array.empty()) {
        if (out.kind != format::json_table) throw usage_error("--array applies only to a JSON table");
        out.array = options.array;
    }
    if (!options.key_field.empty()) {
        if (out.kind == format::claim_pid || out.kind == format::claim_json) {
            throw usage_error("--key does not apply to a claim file (it holds one record)");
        }
        out.layout.key_field = options.key_field;
    }
    if (!options.pid_field.empty()) out.layout.pid_field = options.pid_field;
    if (out.lock.empty()) {
        switch (out.kind) {
        case format::json_table: out.lock = fs::path(out.path).replace_extension(".lock"); break;
        case format::record_files: out.lock = out.path / ".registry.lock"; break;
        case format::claim_pid:
        case format::claim_json:
        case format::etcd:
            out.lock = procreg::storage::claim_file<procreg::storage::pid_text_format>::default_lock_path(out.path);
            break;
        }
    }
    if (!options.lock.empty()) out.lock = options.lock;
    out.named_mutex = options.named_mutex;
    return out;
}

}  // namespace procreg_cli
