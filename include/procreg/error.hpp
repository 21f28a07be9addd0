// procreg/error.hpp — how procreg reports failure.
//
// Every failure is a `procreg::errc` value in procreg's own
// `std::error_category`, so callers branch on the code, never on message
// text. The throwing API raises `procreg::error`, a `std::system_error` that
// also carries the file involved and, where there is one, the record key and
// the pid of a live owner. The `std::error_code&` overloads report the same
// code without throwing, and return an empty `std::optional` instead of a
// result (never a default that reads as an outcome): one mechanism,
// `detail::reporting`, makes every one of them. Each cause has a code of its
// own (docs/errors.md lists them), so a code never means two things.
#pragma once

#include <procreg/detail/quote_untrusted.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

namespace procreg {

/// The conditions procreg reports. Values are stable: they may be stored.
enum class errc {
    duplicate_key = 1,  ///< insert found a record with the same key
    conflict,           ///< the caller's conflict check refused; `error::key()` names the competitor
    corrupted_file,     ///< a file exists but cannot be parsed or decoded; it was left untouched
    in_use,             ///< a live process holds what was asked for; `error::pid()` names it
    io_failure,         ///< a system call failed; `error::os_error()` has the errno
    not_found,          ///< the key is not in the registry
    invalid_key,        ///< the key cannot be used (e.g. not a safe file name)
    unsafe_path,        ///< a symlink, or a directory owned or writable by another user
    lock_timeout,       ///< a timed lock acquisition expired
    unsupported_file,   ///< the file is of a format or schema this program must not overwrite
    invalid_record,     ///< the record cannot be stored: its JSON would not read back (nothing was written)
    nested_transaction,    ///< a transaction was started by the thread that already holds the registry lock
    changed_outside_lock,  ///< a writer that does not take the lock changed the file meanwhile; nothing was written
    invalid_argument,      ///< the caller passed something unusable (no registry, a directory for a file path)
    forked_child,          ///< a process forked inside a transaction tried to commit it (the lock is the parent's)
};

namespace detail {
class error_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "procreg"; }
    std::string message(int value) const override {
        switch (static_cast<errc>(value)) {
        case errc::duplicate_key: return "a record with this key already exists";
        case errc::conflict: return "conflicts with a live record";
        case errc::corrupted_file: return "file is corrupted";
        case errc::in_use: return "held by a live process";
        case errc::io_failure: return "I/O failure";
        case errc::not_found: return "no such record";
        case errc::invalid_key: return "invalid record key";
        case errc::unsafe_path: return "unsafe path";
        case errc::lock_timeout: return "timed out waiting for the lock";
        case errc::unsupported_file: return "file format not supported by this program";
        case errc::invalid_record: return "record cannot be stored as JSON that reads back";
        case errc::nested_transaction: return "transactions do not nest";
        case errc::changed_outside_lock: return "changed by a writer that does not take the lock";
        case errc::invalid_argument: return "invalid argument";
        case errc::forked_child: return "a transaction belongs to the process that began it, not to a forked child";
        }
        return "unknown procreg error";
    }
};
}  // namespace detail

/// The category of every `procreg::errc`.
inline const std::error_category& error_category() noexcept {
    static const detail::error_category_impl instance;
    return instance;
}

/// Makes `errc` usable wherever a `std::error_code` is expected.
inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), error_category()};
}

/// Extra facts that some error codes carry.
struct error_details {
    std::string key;                  ///< the record key involved (competitor for `conflict`)
    std::optional<std::uint64_t> pid; ///< the live owner for `in_use`
    int os_error = 0;                 ///< errno for `io_failure` and `unsafe_path`
};

/// The exception thrown by procreg's throwing API.
///
/// `what()` reads "<path>: <detail>: <code message>", so a log line alone
/// says which file and why; a path with control bytes in it is shown quoted
/// (`detail::quote_untrusted`).
class error : public std::system_error {
public:
    /// Extra facts that some codes carry.
    using details = error_details;

    /// Builds an error for `code` about `path`, with a human sentence `detail`.
    error(errc code, std::filesystem::path path, const std::string& detail, details extra = error_details{})
        : std::system_error(make_error_code(code), compose(path, detail)),
          path_(std::move(path)),
          details_(std::move(extra)) {}

    /// The file or directory the failure concerns.
    const std::filesystem::path& path() const noexcept { return path_; }
    /// The record key involved, empty when none.
    const std::string& key() const noexcept { return details_.key; }
    /// The pid of the live owner, for `errc::in_use`.
    std::optional<std::uint64_t> pid() const noexcept { return details_.pid; }
    /// The errno behind an `io_failure` or `unsafe_path`, 0 when none.
    int os_error() const noexcept { return details_.os_error; }

private:
    static std::string compose(const std::filesystem::path& path, const std::string& detail) {
        if (path.empty()) return detail;
        // A path holding a line break or another control byte is quoted, so
        // it cannot break the message's line (detail/quote_untrusted.hpp).
        const std::string shown = ::procreg::detail::shown_path(path.native());
        if (detail.empty()) return shown;
        return shown + ": " + detail;
    }

    std::filesystem::path path_;
    details details_;
};

namespace detail {

/// What every `std::error_code&` overload does: clears `ec` and runs the
/// throwing `operation()`. A `procreg::error` is reported in `ec`; any other
/// exception (the caller's own, `std::bad_alloc`) propagates. The result is
/// `std::optional<R>` for an operation returning `R` — empty on failure, so
/// a failure never reads as an outcome — and nothing for a void operation.
template <class Operation>
auto reporting(std::error_code& ec, Operation&& operation) {
    using result = std::invoke_result_t<Operation&>;
    static_assert(!std::is_reference_v<result>, "procreg: a reported operation returns a value");
    ec.clear();
    if constexpr (std::is_void_v<result>) {
        try {
            operation();
        } catch (const error& e) {
            ec = e.code();
        }
    } else {
        try {
            return std::optional<result>(std::in_place, operation());
        } catch (const error& e) {
            ec = e.code();
        }
        return std::optional<result>();
    }
}

}  // namespace detail

}  // namespace procreg

namespace std {
template <>
struct is_error_code_enum<procreg::errc> : true_type {};
}  // namespace std
