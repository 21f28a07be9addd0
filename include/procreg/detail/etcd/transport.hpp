// procreg/detail/etcd/transport.hpp — how an etcd call reaches a member: the transport interface.
//
// `etcd_transport` is the one seam between the etcd client and the wire: a
// POST of a JSON body to an etcd v3 path on some member. The HTTP/1.1
// transport (procreg/detail/etcd/http_transport.hpp) implements it; a gRPC
// transport or a test double could replace it. Also the members' addresses
// (`etcd_endpoint`, parsed from "host:port") and what a call brings back.
//
// Invariant (what every transport promises): a call fails over across the
// members and ends within its timeout; when no member answers it throws
// `errc::io_failure`, and a request that is not replayable (a txn) is never
// sent twice.
#pragma once

#include <procreg/detail/quote_untrusted.hpp>
#include <procreg/error.hpp>

#include <cerrno>
#include <string>
#include <string_view>
#include <utility>

namespace procreg::detail {

/// One member's client URL, `host:port` (IPv4, IPv6 in brackets, or a name).
struct etcd_endpoint {
    std::string host;  ///< host name or address
    std::string port;  ///< port number
    /// `host:port`, for messages.
    std::string text() const { return host + ":" + port; }
};

/// Parses "host:port", or "[v6-address]:port" for IPv6 (the brackets are
/// required, as is the port: 1 to 65535, digits only). A malformed endpoint
/// is an `errc::invalid_argument` (EINVAL) saying what is wrong, raised
/// before any connection: no port, an unbracketed IPv6 address, a scheme or
/// path, a query or fragment, or user info (`user:password@`, never echoed:
/// only the part after the '@' is shown).
inline etcd_endpoint parse_etcd_endpoint(std::string_view text) {
    const auto at = text.rfind('@');
    const std::string_view shown = at == std::string_view::npos ? text : text.substr(at + 1);
    const std::string hidden = at == std::string_view::npos ? "" : "...@";
    const auto fail = [&](const std::string& what) -> etcd_endpoint {
        throw error(errc::invalid_argument, "etcd://" + hidden + std::string(shown),
                    "an etcd endpoint must be host:port or [v6-address]:port; " + what + " in " + hidden +
                        quote_untrusted(shown),
                    error::details{{}, {}, EINVAL});
    };
    if (at != std::string_view::npos) return fail("user info (user:password@) is not accepted: give credentials apart");
    if (text.find_first_of("?#") != std::string_view::npos) return fail("a query string or fragment is not accepted");
    if (text.find('/') != std::string_view::npos) return fail("a scheme or path is not accepted");
    std::string_view host;
    std::string_view rest;  // ":port" or less
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos) return fail("an IPv6 address lacks its ']'");
        host = text.substr(1, close - 1);
        rest = text.substr(close + 1);
        if (host.find(':') == std::string_view::npos) return fail("brackets are only for an IPv6 address");
    } else {
        const auto colon = text.find(':');
        if (colon != std::string_view::npos && text.find(':', colon + 1) != std::string_view::npos) {
            return fail("an IPv6 address must be in brackets with a port ([::1]:2379)");
        }
        host = text.substr(0, colon == std::string_view::npos ? text.size() : colon);
        rest = colon == std::string_view::npos ? std::string_view() : text.substr(colon);
    }
    if (host.empty()) return fail("the host is missing");
    if (rest.empty() || rest.front() != ':' || rest.size() == 1) return fail("the port is missing");
    const std::string_view port = rest.substr(1);
    unsigned long value = 0;
    for (const char c : port) {
        if (c < '0' || c > '9') return fail("the port is not a number");
        value = value * 10 + static_cast<unsigned long>(c - '0');
        if (value > 65535) break;
    }
    if (value == 0 || value > 65535) return fail("the port is out of range (1 to 65535)");
    return etcd_endpoint{std::string(host), std::string(port)};
}

/// What a transport brings back: the HTTP status and body, and which member answered.
struct etcd_response {
    unsigned status = 0;   ///< HTTP status (200 on success; the gateway's error JSON otherwise)
    std::string body;      ///< the response body (JSON)
    std::string endpoint;  ///< `host:port` of the member that answered
};

/// The transport interface: POST a JSON body to an etcd v3 path on some
/// member. Implementations fail over across members and bound every call
/// by a timeout; when no member answers they throw `errc::io_failure`.
class etcd_transport {
public:
    virtual ~etcd_transport() = default;
    /// Sends `body` to `path` (e.g. "/v3/kv/range") with `token` (may be
    /// empty) as the Authorization header. A member that answers "unavailable"
    /// (no leader, stopping) counts as not answering. A request that is not
    /// `replayable` (a txn) is never sent twice: when it was sent and no
    /// answer came, its outcome is unknown and the call fails at once.
    virtual etcd_response post(std::string_view path, const std::string& body, const std::string& token,
                               bool replayable) = 0;
    /// Every endpoint, "h:p,h:p", for messages and display paths.
    virtual std::string endpoints_text() const = 0;
};

}  // namespace procreg::detail
