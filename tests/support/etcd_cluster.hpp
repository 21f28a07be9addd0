// tests/support/etcd_cluster.hpp — real etcd members on loopback, started and stopped by the test.
//
// Each member is the etcd binary found at configure time (PROCREG_ETCD_BINARY),
// on loopback ports chosen here (never 2379/2380, where a system daemon may
// listen), with its --data-dir in the test's temp directory. Members die
// with the test: the destructor SIGKILLs and reaps them, and each is started
// with PR_SET_PDEATHSIG so a crashed test leaves none running.
#pragma once

#include "support/temp_dir.hpp"

#include <procreg/detail/etcd_client.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PROCREG_ETCD_BINARY
#error "PROCREG_ETCD_BINARY must name the etcd executable"
#endif

namespace procreg_test {

/// A free loopback TCP port (bound to port 0, then released).
inline int free_loopback_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error("socket failed");
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    socklen_t size = sizeof address;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), size) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
        ::close(fd);
        throw std::runtime_error("bind failed");
    }
    ::close(fd);
    return ntohs(address.sin_port);
}

/// `members` etcd members forming one cluster on loopback.
class etcd_cluster {
public:
    /// Starts the members and waits until the cluster answers. `extra` is added to every member's command line.
    /// A port another test took between its choice and etcd's bind makes
    /// a member exit: the cluster is then started again on new ports (3 tries).
    explicit etcd_cluster(int members = 1, std::vector<std::string> extra = {}) : extra_(std::move(extra)) {
        for (int attempt = 0;; ++attempt) {
            members_.clear();
            initial_cluster_.clear();
            token_ = "procreg-" + std::to_string(::getpid()) + "-" + std::to_string(free_loopback_port());
            for (int i = 0; i < members; ++i) {
                member m;
                m.name = "a" + std::to_string(attempt) + "m" + std::to_string(i);
                m.client_port = free_loopback_port();
                m.peer_port = free_loopback_port();
                members_.push_back(m);
            }
            for (const auto& m : members_) {
                initial_cluster_ += (initial_cluster_.empty() ? "" : ",") + m.name + "=http://127.0.0.1:" +
                                    std::to_string(m.peer_port);
            }
            for (std::size_t i = 0; i < members_.size(); ++i) start(i);
            try {
                wait_ready();
                return;
            } catch (const std::exception&) {
                for (std::size_t i = 0; i < members_.size(); ++i) kill(i);
                if (attempt == 2) throw;
            }
        }
    }

    etcd_cluster(const etcd_cluster&) = delete;
    etcd_cluster& operator=(const etcd_cluster&) = delete;

    ~etcd_cluster() {
        for (std::size_t i = 0; i < members_.size(); ++i) kill(i);
    }

    /// "127.0.0.1:<port>" of every member.
    std::vector<std::string> endpoints() const {
        std::vector<std::string> out;
        for (const auto& m : members_) out.push_back(endpoint(m));
        return out;
    }

    /// A connection to every member with `timeout`.
    procreg::detail::etcd_connection connection(std::chrono::milliseconds timeout = std::chrono::seconds(3)) const {
        procreg::detail::etcd_connection c;
        c.endpoints = endpoints();
        c.timeout = timeout;
        return c;
    }

    /// SIGKILLs member `i` (no-op when not running) and reaps it.
    void kill(std::size_t i) {
        member& m = members_.at(i);
        if (m.pid <= 0) return;
        ::kill(m.pid, SIGKILL);
        int status = 0;
        while (::waitpid(m.pid, &status, 0) < 0 && errno == EINTR) {
        }
        m.pid = -1;
    }

    /// SIGSTOPs / SIGCONTs member `i`.
    void signal(std::size_t i, int sig) { ::kill(members_.at(i).pid, sig); }

    /// Starts member `i` again on its data directory.
    void restart(std::size_t i) {
        start(i);
    }

    /// Waits (up to 30 s) until a write through every endpoint's client succeeds.
    void wait_ready() {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        for (;;) {
            try {
                procreg::detail::etcd_client client(connection(std::chrono::seconds(2)));
                client.call_ok("/v3/kv/put", boost::json::object{{"key", procreg::detail::base64_encode("ready")},
                                                                  {"value", procreg::detail::base64_encode("1")}});
                return;
            } catch (const std::exception&) {
                if (std::chrono::steady_clock::now() > deadline || any_exited()) {
                    throw std::runtime_error("etcd did not become ready (a member exited, or 30 s passed); logs in " +
                                             dir_.path().string());
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
        }
    }

    /// The temp directory holding data directories and logs.
    const std::filesystem::path& dir() const { return dir_.path(); }

private:
    struct member {
        std::string name;
        int client_port = 0;
        int peer_port = 0;
        pid_t pid = -1;
    };

    // Whether a member started by this fixture has exited (reaped here).
    bool any_exited() {
        bool exited = false;
        for (auto& m : members_) {
            int status = 0;
            if (m.pid > 0 && ::waitpid(m.pid, &status, WNOHANG) == m.pid) {
                m.pid = -1;
                exited = true;
            }
        }
        return exited;
    }

    static std::string endpoint(const member& m) { return "127.0.0.1:" + std::to_string(m.client_port); }

    void start(std::size_t i) {
        member& m = members_.at(i);
        if (m.pid > 0) return;
        const std::string client_url = "http://" + endpoint(m);
        const std::string peer_url = "http://127.0.0.1:" + std::to_string(m.peer_port);
        std::vector<std::string> args = {PROCREG_ETCD_BINARY,
                                         "--name", m.name,
                                         "--data-dir", (dir_.path() / (m.name + ".data")).string(),
                                         "--listen-client-urls", client_url,
                                         "--advertise-client-urls", client_url,
                                         "--listen-peer-urls", peer_url,
                                         "--initial-advertise-peer-urls", peer_url,
                                         "--initial-cluster", initial_cluster_,
                                         "--initial-cluster-token", token_,
                                         "--initial-cluster-state", "new",
                                         "--heartbeat-interval", "50",
                                         "--election-timeout", "500"};
        for (const auto& e : extra_) args.push_back(e);
        const std::string log = (dir_.path() / (m.name + ".log")).string();
        std::fflush(nullptr);
        const pid_t pid = ::fork();
        if (pid < 0) throw std::runtime_error("fork failed");
        if (pid == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
            if (fd >= 0) {
                ::dup2(fd, 1);
                ::dup2(fd, 2);
            }
            std::vector<char*> argv;
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        m.pid = pid;
    }

    temp_dir dir_;
    std::vector<std::string> extra_;
    std::vector<member> members_;
    std::string initial_cluster_;
    std::string token_;
};

}  // namespace procreg_test
