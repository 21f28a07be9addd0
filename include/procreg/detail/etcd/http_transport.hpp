// procreg/detail/etcd/http_transport.hpp — the etcd transport over HTTP/1.1 (Boost.Beast).
//
// One kept-alive connection to one member at a time; a member that fails
// is left for the next, in a ring. Each attempt on a member may take
// `timeout / members` (at least 100 ms), so a whole call ends within about
// its timeout (procreg/detail/etcd/transport.hpp states the contract).
//
// Invariants: a request that was sent and not answered is never sent again
// unless it is replayable (a txn's outcome is then unknown, and the call
// says so); a child forked since the last call closes its copy of the
// parent's socket and makes its own connection and reactor, leaving the
// parent's connection alone.
#pragma once

#include <procreg/detail/etcd/transport.hpp>
#include <procreg/detail/quote_untrusted.hpp>
#include <procreg/error.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

namespace procreg::detail {

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

}  // namespace procreg::detail
