// procreg/claim/options.hpp — the words of a claim: its options, outcomes and error.
//
// What a caller of procreg/claim.hpp names: how acquire treats the
// acquirer's own pid (`own_pid`), what a handle does when destroyed
// (`on_destroy`), what a release did (`release_status`), the in-use error
// (`claim_in_use`) and the key of the nonce a claim adds to its record.
//
// Invariant: `claim_in_use` is always an `errc::in_use` error whose `pid()`
// is the live holder and `key()` the claim's key, so a caller can tell who
// holds the claim without parsing the message.
#pragma once

#include <procreg/error.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace procreg {

/// What acquire does when the recorded holder has the acquirer's own pid.
enum class own_pid {
    refuse,  ///< in use, like any live holder (INSOMNIA)
    retake,  ///< take it over (trusty-memory: a restarted daemon with a recycled pid, or a second acquire)
};

/// What a claim handle does when destroyed while it still holds the claim.
enum class on_destroy {
    release,  ///< remove the claim if it is still ours (trusty-memory's `DaemonLock` drop)
    keep,     ///< nothing: the claim stays until released explicitly or taken over as stale (INSOMNIA)
};

/// What a release did.
enum class release_status {
    released,  ///< the claim was ours and is gone
    absent,    ///< there was no claim (removed by hand, or this handle had already released)
    not_ours,  ///< another holder's claim is there now; it was left alone
};

/// The status's name, for logs.
inline const char* to_string(release_status status) noexcept {
    switch (status) {
    case release_status::released: return "released";
    case release_status::absent: return "absent";
    case release_status::not_ours: return "not_ours";
    }
    return "?";
}

/// `errc::in_use` from a claim: `pid()` is the live holder, `owner_name()`
/// its name when the record type has one, `key()` the claim's key.
class claim_in_use : public error {
public:
    /// Builds the error for `holder_pid` holding the claim `key` in `file`.
    claim_in_use(std::filesystem::path file, const std::string& detail, std::string key, std::uint64_t holder_pid,
                 std::optional<std::string> owner_name)
        : error(errc::in_use, std::move(file), detail, error::details{std::move(key), holder_pid, 0}),
          owner_name_(std::move(owner_name)) {}

    /// The live holder's name, when its record has one.
    const std::optional<std::string>& owner_name() const noexcept { return owner_name_; }

private:
    std::optional<std::string> owner_name_;
};

/// How a claim decides.
template <class Record>
struct claim_options {
    /// What to do when the holder's pid is the acquirer's.
    own_pid same_pid = own_pid::refuse;
    /// How many times acquire decides again when a writer outside the lock
    /// changed the claim file while it was deciding.
    int attempts = 4;
    /// The sentence of an in-use error, from the live holder and the claim
    /// file; empty means "held by live pid <pid> (\"<name>\")".
    std::function<std::string(const Record& holder, const std::filesystem::path& file)> describe_holder;
};

/// The member `claim::acquire` adds to its record in a storage without
/// `file_token()` (e.g. a `json_table` slot): a random 128-bit hex string,
/// new at every acquire, which makes the record the proof of this very
/// acquisition. Readers that ignore unknown keys are not affected.
inline constexpr std::string_view claim_nonce_key = "procreg_claim_nonce";

}  // namespace procreg
