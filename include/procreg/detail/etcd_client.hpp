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
//
// Layout: the transport interface and the members' addresses are
// detail/etcd/transport.hpp, the HTTP/1.1 transport
// detail/etcd/http_transport.hpp; this header holds the gateway's encoding
// (base64) and the client.
#pragma once

#include <procreg/detail/etcd/http_transport.hpp>
#include <procreg/detail/etcd/transport.hpp>
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
