// Regression (issue 14, item 14): a demo worker must stop on a SIGTERM that
// arrives before it starts waiting.
//
// The worker of procreg_demo waited with `while (!stop) pause();`: a SIGTERM
// handled between the test and pause() was lost and the worker waited for
// ever. The window cannot be hit on purpose, so this test makes the signal
// early for certain: it starts the worker with SIGTERM blocked (a blocked
// signal stays pending, as a supervisor's mask is inherited across exec),
// sends SIGTERM once the worker is registered, and requires the worker to
// exit within a bounded wait. Usage: procreg_demo_signal_test <procreg_demo>.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace {

bool file_mentions(const fs::path& file, const std::string& text) {
    std::ifstream in(file);
    const std::string contents((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return contents.find(text) != std::string::npos;
}

// Waits up to `limit` for `pid` to exit; its wait status, or -1 if it did not.
int wait_for_exit(pid_t pid, std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
        if (::waitpid(pid, &status, WNOHANG) == pid) return status;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s <procreg_demo>\n", argv[0]);
        return 2;
    }
    char pattern[] = "/tmp/procreg-demo-signal-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) {
        std::perror("mkdtemp");
        return 2;
    }
    const fs::path dir = pattern;
    const fs::path registry = dir / "registry.json";

    const pid_t worker = ::fork();
    if (worker < 0) {
        std::perror("fork");
        return 2;
    }
    if (worker == 0) {
        sigset_t terminate;
        sigemptyset(&terminate);
        sigaddset(&terminate, SIGTERM);
        sigprocmask(SIG_BLOCK, &terminate, nullptr);  // inherited across exec
        ::execl(argv[1], argv[1], "--worker", "w1", registry.c_str(), static_cast<char*>(nullptr));
        std::perror("exec");
        ::_exit(127);
    }

    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!file_mentions(registry, "\"w1\"") && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(worker, SIGTERM);
    const int status = wait_for_exit(worker, std::chrono::seconds(10));
    bool ok = true;
    if (status == -1) {
        std::fprintf(stderr, "FAIL: the worker did not stop within 10 s of SIGTERM: the signal was lost\n");
        ::kill(worker, SIGKILL);
        ::waitpid(worker, nullptr, 0);
        ok = false;
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::fprintf(stderr, "FAIL: the worker ended with wait status %d\n", status);
        ok = false;
    } else if (file_mentions(registry, "\"w1\"")) {
        std::fprintf(stderr, "FAIL: the worker exited without deregistering\n");
        ok = false;
    }
    std::error_code ignored;
    fs::remove_all(dir, ignored);
    if (ok) std::printf("OK: the worker stopped on a SIGTERM sent before it waited, and deregistered\n");
    return ok ? 0 : 1;
}
