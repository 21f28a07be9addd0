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

/// Parses "host:port" ("[::1]:2379" for IPv6). A malformed endpoint is an
/// `errc::io_failure` (EINVAL) naming it, raised before any connection.
inline etcd_endpoint parse_etcd_endpoint(std::string_view text) {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size()) {
        throw error(errc::io_failure, "etcd://" + std::string(text),
                    "an etcd endpoint must be host:port, not " + quote_untrusted(text), error::details{{}, {}, EINVAL});
    }
    std::string host(text.substr(0, colon));
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    return etcd_endpoint{std::move(host), std::string(text.substr(colon + 1))};
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
