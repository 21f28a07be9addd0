// procreg/detail/etcd_watch_stream.hpp — etcd's `/v3/watch` gateway stream, as a watcher's change feed.
//
// storage::etcd_store offers one (`open_change_feed()`), so a
// procreg::watcher of an etcd registry learns of changes without polling
// (watch/target.hpp describes a change feed; the watcher names no storage).
// The stream is one HTTP/1.1 POST of a WatchCreateRequest over the
// prefix's range, answered by a chunked body of JSON messages, one a line
// (`{"result": {"header": ..., "created"|"events"|"canceled"...}}`). It is
// read with Boost.Beast's parser fed from a non-blocking socket, chunk
// bodies collected by `on_chunk_body`.
//
// Invariants:
// - nothing is missed: the constructor returns only once etcd confirmed
//   the watch (`created`), so every change after the caller's next read is
//   reported; a broken stream (member down, connection reset, an error
//   message) is opened again on the next member from the revision after
//   the last one seen, replaying what happened meanwhile;
// - when that revision was compacted away (`compact_revision` in a
//   `canceled` answer), the stream starts again from now and the next
//   drain() says `resync`: the caller reads the whole state again, never
//   silence;
// - a record deleted in the very revision that deleted its lease's owner
//   marker (`<prefix>.owners/<lease>`, put with the lease by every write of
//   a leased record: storage/etcd_store.hpp) is reported in `owner_gone`:
//   etcd deletes all of a lease's keys in one revision when the lease
//   expires or is revoked, so that revision is the owner's end, and an
//   explicit delete, always a revision of its own, is only a change. The
//   watched range is [marker prefix, records' end), which holds both;
//   other keys in it are ignored;
// - fd() is one stable descriptor (an epoll instance holding the current
//   socket and a retry timer), readable when drain() may have news; a
//   failed reopen (whatever failed: connection, authentication, the watch
//   request) throws from drain() and arms the timer to try again;
// - a member that goes silent without closing TCP is found out: after
//   idle_interval() of silence it is probed (a linearizable read, which
//   needs a leader), and no answer within the timeout breaks the stream,
//   which then opens again on the next member (check_alive()).
#pragma once

#include <procreg/detail/epoll.hpp>
#include <procreg/detail/etcd_client.hpp>
#include <procreg/detail/file_io.hpp>
#include <procreg/error.hpp>
#include <procreg/watch/target.hpp>

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

namespace procreg::detail {

/// A watch of one key range of an etcd cluster (see the file comment).
class etcd_watch_stream {
public:
    /// Watches the records [start, end) and the owner markers under
    /// `owners` (which sorts before `start`) from now; returns once etcd
    /// confirmed the watch. Throws `errc::io_failure` when no member accepts it.
    etcd_watch_stream(etcd_connection connection, std::string start, std::string end, std::string owners)
        : connection_(std::move(connection)), start_(std::move(start)), end_(std::move(end)),
          owners_(std::move(owners)),
          client_(std::make_unique<etcd_client>(connection_)),
          retry_(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)),
          idle_(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) {
        if (!retry_ || !idle_) throw_os_error(errc::io_failure, client_->display(), "timerfd_create failed", errno);
        poller_.add(retry_.get(), retry_tag);
        poller_.add(idle_.get(), idle_tag);
        open();
    }

    etcd_watch_stream(const etcd_watch_stream&) = delete;
    etcd_watch_stream& operator=(const etcd_watch_stream&) = delete;

    /// Readable when drain() may have news.
    int fd() const noexcept { return poller_.fd(); }

    /// What arrived since the last call; never waits, except to open the
    /// stream again on another member after it broke (within the timeout).
    change_news drain() {
        disarm();
        if (stream_) receive(held_);
        if (stream_) check_alive();
        if (!stream_) open();  // broke: resume from the revision after the last seen
        change_news news = std::move(held_);
        held_ = change_news{};
        if (resync_) news.resync = true;
        resync_ = false;
        return news;
    }

    /// The last revision seen (events up to it are reported).
    std::int64_t revision() const noexcept { return revision_; }
    /// How many times the stream was opened again after it broke.
    std::uint64_t reopened() const noexcept { return reopened_; }
    /// How long the stream may stay silent before its member is probed:
    /// twice the connection timeout, at least 1 s.
    std::chrono::milliseconds idle_interval() const noexcept {
        return std::max(2 * connection_.timeout, std::chrono::milliseconds(1000));
    }

private:
    static constexpr std::uint64_t socket_tag = 1;
    static constexpr std::uint64_t retry_tag = 2;
    static constexpr std::uint64_t idle_tag = 3;

    // Chunk bodies go to `lines`; the body itself is never stored.
    struct chunk_sink {
        std::string* lines;
        std::size_t operator()(std::uint64_t, boost::beast::string_view body, boost::system::error_code&) {
            lines->append(body.data(), body.size());
            return body.size();
        }
    };

    // One connection's state, on the heap so the parser's reference to its sink survives moves.
    struct connection_state {
        unique_fd socket;
        boost::beast::http::response_parser<boost::beast::http::string_body> parser;
        std::string in;     // bytes not yet consumed by the parser
        std::string lines;  // chunk body bytes not yet split into messages
        chunk_sink sink{&lines};
        bool created = false;
    };

    // Opens the stream on the first member that accepts it, from the revision
    // after the last seen (from now the first time, or after a compaction).
    void open() {
        const auto& endpoints = connection_.endpoints;
        std::string failures;
        int compactions = 0;
        for (std::size_t tried = 0; tried < endpoints.size();) {
            const std::string& member = endpoints[current_ % endpoints.size()];
            std::string why;
            bool opened = false;
            try {
                opened = try_open(member, why);
            } catch (const std::exception& e) {
                // E.g. the authentication call failed: this member is not
                // usable now, like one that refused the watch. Never let it
                // skip the retry timer below: drain() disarmed it, so fd()
                // would never be readable again.
                close();
                why = e.what();
            }
            if (opened) {
                watched_ = member;
                last_heard_ = std::chrono::steady_clock::now();
                set_timer(idle_.get(), idle_interval());
                if (opened_once_) ++reopened_;
                opened_once_ = true;
                return;
            }
            if (why == "compacted" && ++compactions < 3) continue;  // the same member again, from now
            failures += (failures.empty() ? "" : "; ") + member + ": " + why;
            ++current_;
            ++tried;
        }
        arm(std::chrono::milliseconds(200));
        throw error(errc::io_failure, client_->display(), "cannot watch the prefix: " + failures,
                    error::details{{}, {}, ETIMEDOUT});
    }

    bool try_open(const std::string& member, std::string& why) {
        close();
        compacted_ = false;
        const etcd_endpoint where = parse_etcd_endpoint(member);
        const auto deadline = std::chrono::steady_clock::now() + connection_.timeout;
        auto state = std::make_unique<connection_state>();
        state->socket = connect_to(where, deadline, why);
        if (!state->socket) return false;
        state->parser.eager(true);
        state->parser.body_limit(boost::none);  // the stream has no end
        state->parser.on_chunk_body(state->sink);
        boost::json::object create{{"key", base64_encode(owners_)}, {"range_end", base64_encode(end_)},
                                   {"prev_kv", true}};
        if (revision_ > 0) create["start_revision"] = std::to_string(revision_ + 1);
        const std::string body = boost::json::serialize(boost::json::object{{"create_request", std::move(create)}});
        // Require-leader metadata (through the gateway's Grpc-Metadata-
        // headers): a member that loses its leader cancels the watch, so the
        // stream is opened again elsewhere instead of staying silent.
        std::string request = "POST /v3/watch HTTP/1.1\r\nHost: " + where.host +
                              "\r\nContent-Type: application/json\r\nGrpc-Metadata-hasleader: true"
                              "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
        if (!connection_.user.empty()) request += "Authorization: " + token() + "\r\n";
        request += "\r\n" + body;
        if (!send_all(state->socket.get(), request, deadline)) {
            why = "cannot send the watch request: " + std::string(std::strerror(errno));
            return false;
        }
        stream_ = std::move(state);
        poller_.add(stream_->socket.get(), socket_tag);
        while (stream_ && !stream_->created) {
            const auto left = until(deadline);
            pollfd ready{stream_->socket.get(), POLLIN, 0};
            if (left.count() <= 0 || ::poll(&ready, 1, static_cast<int>(left.count())) <= 0) {
                why = "no answer to the watch request in " + std::to_string(connection_.timeout.count()) + " ms";
                close();
                return false;
            }
            receive(held_);  // events replayed with the confirmation count too
        }
        if (!stream_) {
            why = compacted_ ? "compacted" : broken_why_;
            compacted_ = false;
            return false;
        }
        return true;
    }

    static std::chrono::milliseconds until(std::chrono::steady_clock::time_point deadline) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    }

    static unique_fd connect_to(const etcd_endpoint& where, std::chrono::steady_clock::time_point deadline,
                                std::string& why) {
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICSERV;
        addrinfo* found = nullptr;
        if (const int rc = ::getaddrinfo(where.host.c_str(), where.port.c_str(), &hints, &found); rc != 0) {
            why = std::string("cannot resolve: ") + ::gai_strerror(rc);
            return unique_fd();
        }
        std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owned(found, &::freeaddrinfo);
        for (const addrinfo* a = found; a; a = a->ai_next) {
            unique_fd s(::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol));
            if (!s) continue;
            if (::connect(s.get(), a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
                why = std::string("connect: ") + std::strerror(errno);
                continue;
            }
            const auto left = until(deadline);
            pollfd ready{s.get(), POLLOUT, 0};
            int error_code = 0;
            socklen_t size = sizeof error_code;
            if (left.count() <= 0 || ::poll(&ready, 1, static_cast<int>(left.count())) <= 0) {
                why = "connect timed out";
                continue;
            }
            if (::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &error_code, &size) != 0 || error_code != 0) {
                why = std::string("connect: ") + std::strerror(error_code);
                continue;
            }
            return s;
        }
        if (why.empty()) why = "no address to connect to";
        return unique_fd();
    }

    static bool send_all(int socket, const std::string& bytes, std::chrono::steady_clock::time_point deadline) {
        std::size_t done = 0;
        while (done < bytes.size()) {
            const ssize_t n = ::send(socket, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
            if (n > 0) {
                done += static_cast<std::size_t>(n);
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno != EAGAIN) return false;
            const auto left = until(deadline);
            pollfd ready{socket, POLLOUT, 0};
            if (left.count() <= 0 || ::poll(&ready, 1, static_cast<int>(left.count())) <= 0) {
                errno = ETIMEDOUT;
                return false;
            }
        }
        return true;
    }

    std::string token() {
        const boost::json::value answer = client_->call_ok(
            "/v3/auth/authenticate",
            boost::json::object{{"name", connection_.user}, {"password", connection_.password}});
        const auto* t = answer.as_object().if_contains("token");
        return t && t->is_string() ? std::string(t->get_string()) : std::string();
    }

    // Reads what the socket has, feeds the parser, handles each whole message.
    void receive(change_news& news) {
        char buffer[16384];
        std::string ended;  // why the connection ended, once what came before is handled
        for (;;) {
            const ssize_t n = ::recv(stream_->socket.get(), buffer, sizeof buffer, MSG_DONTWAIT);
            if (n > 0) {
                last_heard_ = std::chrono::steady_clock::now();
                stream_->in.append(buffer, static_cast<std::size_t>(n));
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            ended = n == 0 ? "the member closed the stream" : std::string("receive: ") + std::strerror(errno);
            break;
        }
        namespace http = boost::beast::http;
        while (!stream_->in.empty()) {
            boost::system::error_code ec;
            const std::size_t used =
                stream_->parser.put(boost::asio::buffer(stream_->in.data(), stream_->in.size()), ec);
            stream_->in.erase(0, used);
            if (ec == http::error::need_more) break;
            if (ec) return broken("bad HTTP: " + ec.message());
            if (stream_->parser.is_header_done() && stream_->parser.get().result_int() != 200) {
                return broken("HTTP status " + std::to_string(stream_->parser.get().result_int()));
            }
            if (stream_->parser.is_done()) return broken("the stream ended");
            if (used == 0) break;
        }
        for (std::size_t newline; stream_ && (newline = stream_->lines.find('\n')) != std::string::npos;) {
            const std::string line = stream_->lines.substr(0, newline);
            stream_->lines.erase(0, newline + 1);
            handle(line, news);
        }
        if (stream_ && !ended.empty()) broken(ended);
    }

    void handle(const std::string& line, change_news& news) {
        boost::system::error_code ec;
        const boost::json::value parsed = boost::json::parse(line, ec);
        const boost::json::object* message = ec ? nullptr : parsed.if_object();
        const auto* result = message ? message->if_contains("result") : nullptr;
        if (!result || !result->is_object()) return broken("not a watch response: " + quote_untrusted(line, 160));
        const auto& r = result->get_object();
        if (const auto* canceled = r.if_contains("canceled"); canceled && canceled->is_bool() && canceled->get_bool()) {
            if (etcd_client::int_field(r, "compact_revision") > 0) {
                // The revision to resume from is gone: start from now and read everything again.
                revision_ = 0;
                resync_ = true;
                compacted_ = true;
                return broken("compacted");
            }
            return broken("the watch was canceled");
        }
        if (const auto* created = r.if_contains("created"); created && created->is_bool() && created->get_bool()) {
            stream_->created = true;
            if (revision_ == 0) {
                const auto* header = r.if_contains("header");
                if (header && header->is_object()) revision_ = etcd_client::int_field(header->get_object(), "revision");
            }
        }
        const auto* events = r.if_contains("events");
        if (!events || !events->is_array()) return;
        // The owners that ended in this message: (lease, revision) of each
        // owner marker deleted. A revision's events come in one message.
        std::set<std::pair<std::int64_t, std::int64_t>> ended;
        for (const auto& item : events->get_array()) {
            const auto* event = item.if_object();
            const auto* kv = event ? event->if_contains("kv") : nullptr;
            const auto key = kv && kv->is_object() ? key_of(kv->get_object()) : std::nullopt;
            if (!key || !is_delete(*event) || key->compare(0, owners_.size(), owners_) != 0) continue;
            const std::string_view digits = std::string_view(*key).substr(owners_.size());
            std::int64_t lease = 0;
            const auto [end, fault] = std::from_chars(digits.data(), digits.data() + digits.size(), lease);
            if (fault != std::errc() || end != digits.data() + digits.size() || lease <= 0) continue;  // not a marker
            ended.emplace(lease, etcd_client::int_field(kv->get_object(), "mod_revision"));
        }
        for (const auto& item : events->get_array()) {
            const auto* event = item.if_object();
            const auto* kv = event ? event->if_contains("kv") : nullptr;
            if (!kv || !kv->is_object()) continue;
            const std::int64_t revision = etcd_client::int_field(kv->get_object(), "mod_revision");
            revision_ = std::max(revision_, revision);
            const auto key = key_of(kv->get_object());
            if (!key || key->compare(0, start_.size(), start_) != 0) continue;  // a marker, or not ours
            news.changed = true;
            const auto* previous = event->if_contains("prev_kv");
            if (!is_delete(*event) || !previous || !previous->is_object()) continue;
            const std::int64_t lease = etcd_client::int_field(previous->get_object(), "lease");
            if (lease != 0 && ended.count({lease, revision}) != 0) news.owner_gone.push_back(key->substr(start_.size()));
        }
    }

    static std::optional<std::string> key_of(const boost::json::object& kv) {
        const auto* key64 = kv.if_contains("key");
        return key64 && key64->is_string() ? base64_decode(key64->get_string()) : std::nullopt;
    }

    static bool is_delete(const boost::json::object& event) {
        const auto* type = event.if_contains("type");
        return type && type->is_string() && type->get_string() == "DELETE";
    }

    // A member that stops answering without closing TCP (stopped, cut off,
    // its host dead) leaves the stream silent forever. So when the stream
    // has been silent for idle_interval(), the watched member is asked for
    // one key of the prefix, linearizably (it needs a leader), within the
    // timeout; no answer breaks the stream, which opens again on the next
    // member from the last revision seen.
    void check_alive() {
        std::uint64_t expirations = 0;
        if (::read(idle_.get(), &expirations, sizeof expirations) != static_cast<ssize_t>(sizeof expirations)) return;
        const auto silent = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                                  last_heard_);
        if (silent < idle_interval()) return set_timer(idle_.get(), idle_interval() - silent);
        std::string why;
        try {
            etcd_connection one = connection_;
            one.endpoints = {watched_};
            etcd_client probe(one);
            (void)probe.call_ok("/v3/kv/range", boost::json::object{{"key", base64_encode(start_)},
                                                                     {"range_end", base64_encode(end_)},
                                                                     {"limit", "1"},
                                                                     {"keys_only", true}});
        } catch (const std::exception& e) {
            why = e.what();
        }
        if (why.empty()) {
            last_heard_ = std::chrono::steady_clock::now();
            return set_timer(idle_.get(), idle_interval());
        }
        ++current_;  // the silent member is tried last
        broken("silent for " + std::to_string(silent.count()) + " ms and no answer to a probe: " + why);
    }

    void broken(std::string why) {
        broken_why_ = std::move(why);
        close();
        arm(std::chrono::milliseconds(0));  // drain() opens it again at once
    }

    void close() {
        if (!stream_) return;
        poller_.remove(stream_->socket.get());
        stream_.reset();
        set_timer(idle_.get(), std::chrono::milliseconds(-1));  // no stream, nothing to probe
    }

    void arm(std::chrono::milliseconds after) { set_timer(retry_.get(), after); }
    void disarm() { set_timer(retry_.get(), std::chrono::milliseconds(-1)); }

    // Fires `timer` once after `after` (at once when zero); a negative
    // `after` stops it and drops an expiry not yet read.
    static void set_timer(int timer, std::chrono::milliseconds after) {
        struct ::itimerspec spec {};
        if (after.count() >= 0) {
            const auto ns = std::max<std::int64_t>(std::chrono::nanoseconds(after).count(), 1);
            spec.it_value.tv_sec = static_cast<time_t>(ns / 1000000000);
            spec.it_value.tv_nsec = static_cast<long>(ns % 1000000000);
        }
        (void)::timerfd_settime(timer, 0, &spec, nullptr);
        if (after.count() < 0) {
            std::uint64_t expirations = 0;
            (void)!::read(timer, &expirations, sizeof expirations);
        }
    }

    etcd_connection connection_;
    std::string start_;
    std::string end_;
    std::string owners_;  // the owner markers' prefix, `<prefix>.owners/`
    std::unique_ptr<etcd_client> client_;  // authentication and the idle probe
    unique_fd retry_;
    unique_fd idle_;  // fires when the stream may have been silent for idle_interval()
    event_poller poller_;
    std::unique_ptr<connection_state> stream_;
    change_news held_;         // news received and not yet drained (also while opening)
    std::size_t current_ = 0;  // the member tried first
    std::int64_t revision_ = 0;
    std::uint64_t reopened_ = 0;
    std::string broken_why_;
    std::string watched_;  // the member the stream is open on
    std::chrono::steady_clock::time_point last_heard_{};
    bool resync_ = false;
    bool compacted_ = false;
    bool opened_once_ = false;
};

}  // namespace procreg::detail
