// procreg/detail/etcd_client.hpp — a small client of etcd v3's JSON gateway.
//
// What etcd_store (procreg/storage/etcd_store.hpp) and the lease keeper
// (procreg/liveness/etcd_lease.hpp) need, and nothing more: range, txn,
// lease grant / keep-alive / revoke, and authentication, as JSON over
// HTTP/1.1 (`/v3/kv/range`, `/v3/kv/txn`, `/v3/lease/grant`,
// `/v3/lease/keepalive`, `/v3/lease/revoke`, `/v3/auth/authenticate`).
// The gateway's conventions: keys and values are base64, 64-bit integers
// are JSON strings, fields holding zero are omitted.
//
// Invariants:
// - every call ends within the configured timeout: a member that does not
//   answer (down, paused, partitioned) is given up on, and the call fails
//   over to the next member; when none answers, the call is an
//   `errc::io_failure` naming every endpoint tried;
// - the transport is one small interface (`etcd_transport`: a POST of a
//   JSON body to a path), so a gRPC transport can replace HTTP later; the
//   HTTP one (`http_transport`, Boost.Beast) keeps one connection alive and
//   reuses it;
// - a client is used by one thread at a time (it holds a mutex); a child
//   forked after a call makes its own connection (and reactor) at its first
//   call, leaving the parent's connection alone.
#pragma once

#include <procreg/detail/json_strict_parse.hpp>
#include <procreg/error.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/detail/base64.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <poll.h>
#include <unistd.h>
#include <sys/socket.h>

namespace procreg::detail {

/// Base64 of `bytes` (the gateway's encoding of keys and values).
inline std::string base64_encode(std::string_view bytes) {
    namespace b64 = boost::beast::detail::base64;
    std::string out(b64::encoded_size(bytes.size()), '\0');
    out.resize(b64::encode(out.data(), bytes.data(), bytes.size()));
    return out;
}

/// The bytes of base64 `text`; nothing when it is not base64.
inline std::optional<std::string> base64_decode(std::string_view text) {
    namespace b64 = boost::beast::detail::base64;
    std::string out(b64::decoded_size(text.size()), '\0');
    // Beast's decode stops at the padding: all but the padding must be read.
    std::size_t unpadded = text.size();
    while (unpadded > 0 && text.size() - unpadded < 2 && text[unpadded - 1] == '=') --unpadded;
    const auto used = b64::decode(out.data(), text.data(), text.size());
    if (used.second != unpadded) return std::nullopt;
    out.resize(used.first);
    return out;
}

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

/// HTTP/1.1 keep-alive transport over Boost.Beast. Each attempt on a member
/// may take `timeout / members` (at least 100 ms); a member that fails is
/// left for the next, in a ring, so a call ends within about `timeout`.
class http_transport final : public etcd_transport {
public:
    /// A transport to `endpoints` with the whole-call `timeout`.
    http_transport(std::vector<etcd_endpoint> endpoints, std::chrono::milliseconds timeout)
        : endpoints_(std::move(endpoints)), timeout_(timeout) {
        if (endpoints_.empty()) {
            throw error(errc::io_failure, "etcd://", "no etcd endpoint given", error::details{{}, {}, EINVAL});
        }
    }

    etcd_response post(std::string_view path, const std::string& body, const std::string& token,
                       bool replayable) override {
        if (::getpid() != owner_pid_) after_fork();
        const auto per_attempt = std::max(timeout_ / static_cast<int>(endpoints_.size()), std::chrono::milliseconds(100));
        std::string failures;
        for (std::size_t tried = 0; tried < endpoints_.size(); ++tried) {
            const etcd_endpoint& member = endpoints_[current_];
            std::string why;
            // A kept-alive connection may have been closed by the member
            // since the last call: one fresh connection is tried at once.
            for (int fresh = 0; fresh < 2; ++fresh) {
                const bool reused = stream_.has_value();
                bool sent = false;
                auto answer = attempt(member, path, body, token, per_attempt, why, sent);
                if (answer) {
                    // A txn answered "unavailable" (e.g. "request timed out")
                    // may still be applied: its caller gets the answer.
                    if (!unavailable(*answer) || !replayable) return std::move(*answer);
                    why = "member unavailable: " + quote_untrusted(answer->body, 160);
                    close();
                    break;
                }
                close();
                if (sent && !replayable) {
                    current_ = (current_ + 1) % endpoints_.size();  // the next call tries another member
                    throw error(errc::io_failure, "etcd://" + endpoints_text(),
                                std::string(path) + " was sent to " + member.text() + " but not answered (" + why +
                                    "): it may or may not have been applied",
                                error::details{{}, {}, ETIMEDOUT});
                }
                if (!reused || why.find("timed out") != std::string::npos) break;
            }
            failures += (failures.empty() ? "" : "; ") + member.text() + ": " + why;
            current_ = (current_ + 1) % endpoints_.size();
        }
        throw error(errc::io_failure, "etcd://" + endpoints_text(), "no etcd member answered: " + failures,
                    error::details{{}, {}, ETIMEDOUT});
    }

    std::string endpoints_text() const override {
        std::string out;
        for (const auto& member : endpoints_) out += (out.empty() ? "" : ",") + member.text();
        return out;
    }

private:
    // gRPC Unavailable (14): the member has no leader, is stopping, ...:
    // another member may answer.
    static bool unavailable(const etcd_response& answer) {
        if (answer.status == 200) return false;
        boost::system::error_code ec;
        auto parsed = boost::json::parse(answer.body, ec);
        if (ec || !parsed.is_object()) return answer.status >= 502;
        const auto* code = parsed.as_object().if_contains("code");
        return code && code->is_int64() && code->get_int64() == 14;
    }

    // In a child forked since the last call: the connection and the
    // reactor's epoll instance are the parent's. The child closes its copy of
    // the socket (the parent's connection stays up) and gets its own reactor.
    void after_fork() {
        if (stream_) {
            boost::system::error_code ignored;
            stream_->socket().close(ignored);
            stream_.reset();
        }
        io_.notify_fork(boost::asio::execution_context::fork_child);
        owner_pid_ = ::getpid();
    }

    // Whether the kept-alive connection was closed (or reset) by the member:
    // readable with nothing to read, or in error.
    bool peer_closed() {
        pollfd watch{stream_->socket().native_handle(), POLLIN, 0};
        if (::poll(&watch, 1, 0) <= 0) return false;
        if (watch.revents & (POLLERR | POLLHUP)) return true;
        char byte = 0;
        return ::recv(watch.fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) <= 0;
    }

    void close() {
        if (stream_) {
            boost::system::error_code ignored;
            stream_->socket().close(ignored);
        }
        stream_.reset();
    }

    std::optional<etcd_response> attempt(const etcd_endpoint& member, std::string_view path, const std::string& body,
                                         const std::string& token, std::chrono::milliseconds limit, std::string& why,
                                         bool& sent) {
        namespace http = boost::beast::http;
        using boost::asio::ip::tcp;
        boost::system::error_code failed;
        const auto note = [&](const char* step, const boost::system::error_code& ec) {
            if (!failed && ec) {
                failed = ec;
                why = std::string(step) + (ec == boost::beast::error::timeout
                                               ? " timed out after " + std::to_string(limit.count()) + " ms"
                                               : ": " + ec.message());
            }
        };
        if (stream_ && peer_closed()) close();  // e.g. the member restarted since the last call
        if (!stream_) {
            tcp::resolver resolver(io_);
            boost::system::error_code ec;
            auto found = resolver.resolve(member.host, member.port, tcp::resolver::numeric_service, ec);
            if (ec) {
                why = "cannot resolve: " + ec.message();
                return std::nullopt;
            }
            stream_.emplace(io_);
            stream_->expires_after(limit);
            stream_->async_connect(found, [&](const boost::system::error_code& e, const tcp::endpoint&) {
                note("connect", e);
            });
            run();
            if (failed) return std::nullopt;
        }
        http::request<http::string_body> request{http::verb::post, std::string(path), 11};
        request.set(http::field::host, member.host);
        request.set(http::field::content_type, "application/json");
        request.keep_alive(true);
        if (!token.empty()) request.set(http::field::authorization, token);
        request.body() = body;
        request.prepare_payload();
        boost::beast::flat_buffer buffer;
        http::response_parser<http::string_body> parser;
        parser.body_limit(std::size_t{64} << 20);
        stream_->expires_after(limit);
        http::async_write(*stream_, request, [&](const boost::system::error_code& e, std::size_t) {
            note("send", e);
            if (e) return;
            sent = true;
            http::async_read(*stream_, buffer, parser,
                             [&](const boost::system::error_code& e2, std::size_t) { note("receive", e2); });
        });
        run();
        if (failed) return std::nullopt;
        auto response = parser.release();
        if (!response.keep_alive()) close();
        return etcd_response{response.result_int(), std::move(response.body()), member.text()};
    }

    void run() {
        io_.restart();
        io_.run();
    }

    std::vector<etcd_endpoint> endpoints_;
    std::chrono::milliseconds timeout_;
    boost::asio::io_context io_;
    std::optional<boost::beast::tcp_stream> stream_;
    std::size_t current_ = 0;
    pid_t owner_pid_ = ::getpid();
};

/// How to reach an etcd cluster.
struct etcd_connection {
    /// Client URLs of the members, "host:port" each; tried in order, with fail-over.
    std::vector<std::string> endpoints;
    /// Every call (including its fail-over) ends within about this long.
    std::chrono::milliseconds timeout{2000};
    /// User and password when etcd has authentication on (empty user: off).
    std::string user;
    /// The user's password.
    std::string password;
};

/// A gRPC status the gateway returned (code, message), for callers that act on it.
struct etcd_status {
    int code = 0;         ///< gRPC code (0 OK, 5 not found, 11 out of range, 16 unauthenticated, ...)
    std::string message;  ///< etcd's message (untrusted text)
};

/// The etcd v3 calls procreg uses, over a transport, with authentication.
class etcd_client {
public:
    /// A client over HTTP to `connection`'s endpoints; authenticates at once when a user is given.
    explicit etcd_client(const etcd_connection& connection)
        : connection_(connection), transport_(make_transport(connection)) {
        if (!connection_.user.empty()) authenticate();
    }

    /// A client over another transport (a test double, a gRPC transport).
    etcd_client(const etcd_connection& connection, std::unique_ptr<etcd_transport> transport)
        : connection_(connection), transport_(std::move(transport)) {
        if (!connection_.user.empty()) authenticate();
    }

    /// "etcd://h:p,h:p", for messages.
    std::string display() const { return "etcd://" + transport_->endpoints_text(); }

    /// POSTs `request` to `path`; the parsed answer, or the gRPC status the
    /// gateway returned in `status` (and a null value). Transport failures throw.
    /// A `replayable` request (all but txn) may be sent again to another
    /// member when one fails to answer.
    boost::json::value call(std::string_view path, const boost::json::object& request, etcd_status& status,
                            bool replayable = true) {
        std::lock_guard<std::mutex> hold(mutex_);
        for (int round = 0;; ++round) {
            const etcd_response answer = transport_->post(path, boost::json::serialize(request), token_, replayable);
            boost::system::error_code ec;
            boost::json::value parsed = boost::json::parse(answer.body, ec);
            if (ec || !parsed.is_object()) {
                throw error(errc::io_failure, display(),
                            "etcd member " + answer.endpoint + " answered " + std::string(path) + " with HTTP " +
                                std::to_string(answer.status) + " and no JSON: " + quote_untrusted(answer.body, 160),
                            error::details{{}, {}, EPROTO});
            }
            status = status_of(parsed.as_object());
            if (status.code == 0 && answer.status == 200) return parsed;
            // An expired token: take a new one, once.
            if (status.code == 16 && !connection_.user.empty() && round == 0 && path != "/v3/auth/authenticate") {
                authenticate_locked();
                continue;
            }
            if (status.code == 0) status.code = 2;  // unknown
            return {};
        }
    }

    /// As `call`, but any gRPC status other than OK is an `errc::io_failure` saying what etcd said.
    boost::json::value call_ok(std::string_view path, const boost::json::object& request) {
        etcd_status status;
        boost::json::value answer = call(path, request, status);
        if (status.code != 0) {
            throw error(errc::io_failure, display(),
                        std::string(path) + " refused: " + quote_untrusted(status.message, 200) + " (gRPC code " +
                            std::to_string(status.code) + ")",
                        error::details{{}, {}, EIO});
        }
        return answer;
    }

    /// A 64-bit integer field of a gateway object (a string, or absent for zero).
    static std::int64_t int_field(const boost::json::object& object, std::string_view name) {
        const auto* field = object.if_contains(name);
        if (!field) return 0;
        if (field->is_string()) {
            try {
                return std::stoll(std::string(field->get_string()));
            } catch (const std::exception&) {
                return 0;
            }
        }
        if (field->is_int64()) return field->get_int64();
        if (field->is_uint64()) return static_cast<std::int64_t>(field->get_uint64());
        return 0;
    }

    /// The revision in an answer's header.
    static std::int64_t revision_of(const boost::json::value& answer) {
        const auto* header = answer.as_object().if_contains("header");
        return header && header->is_object() ? int_field(header->get_object(), "revision") : 0;
    }

private:
    static std::unique_ptr<etcd_transport> make_transport(const etcd_connection& connection) {
        std::vector<etcd_endpoint> members;
        for (const auto& text : connection.endpoints) members.push_back(parse_etcd_endpoint(text));
        return std::make_unique<http_transport>(std::move(members), connection.timeout);
    }

    static etcd_status status_of(const boost::json::object& answer) {
        etcd_status status;
        if (const auto* code = answer.if_contains("code")) {
            if (code->is_int64()) status.code = static_cast<int>(code->get_int64());
        }
        for (const char* field : {"message", "error"}) {
            const auto* text = answer.if_contains(field);
            if (text && text->is_string() && status.message.empty()) status.message = std::string(text->get_string());
        }
        return status;
    }

    void authenticate() {
        std::lock_guard<std::mutex> hold(mutex_);
        authenticate_locked();
    }

    void authenticate_locked() {
        token_.clear();
        boost::json::object request{{"name", connection_.user}, {"password", connection_.password}};
        const etcd_response answer =
            transport_->post("/v3/auth/authenticate", boost::json::serialize(request), {}, true);
        boost::system::error_code ec;
        boost::json::value parsed = boost::json::parse(answer.body, ec);
        const etcd_status status = (ec || !parsed.is_object()) ? etcd_status{2, answer.body} : status_of(parsed.as_object());
        const auto* token = (!ec && parsed.is_object()) ? parsed.as_object().if_contains("token") : nullptr;
        if (status.code != 0 || !token || !token->is_string()) {
            throw error(errc::io_failure, display(),
                        "etcd refused authentication as user " + quote_untrusted(connection_.user) + ": " +
                            quote_untrusted(status.message, 200),
                        error::details{{}, {}, EACCES});
        }
        token_ = std::string(token->get_string());
    }

    etcd_connection connection_;
    std::unique_ptr<etcd_transport> transport_;
    std::string token_;
    std::mutex mutex_;
};

}  // namespace procreg::detail
