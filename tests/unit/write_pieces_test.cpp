// detail::write_all over text_pieces — more pieces than
// one writev batch (256), empty pieces, and short writevs (a pipe written
// while signals interrupt it, SA_RESTART off) must write exactly the text.
#define BOOST_TEST_MODULE procreg write_all pieces
#include <boost/test/unit_test.hpp>

#include <procreg/detail/file_io.hpp>

#include "support/fault_injection.hpp"

#include <cerrno>
#include <csignal>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <sys/time.h>
#include <unistd.h>

namespace {
void on_alarm(int) {}
unsigned long writes = 0;
int count_writes(procreg::detail::sys::call c, void*) {
    if (c == procreg::detail::sys::call::write) ++writes;
    return 0;
}
}

BOOST_AUTO_TEST_CASE(pieces_written_through_short_writes) {
    std::mt19937 rng(7);
    std::vector<std::string> store;
    for (int i = 0; i < 3000; ++i) {
        const std::size_t n = (i % 7 == 0) ? 0 : rng() % 4000;
        store.emplace_back(n, static_cast<char>('a' + i % 26));
    }
    std::vector<std::string_view> pieces(store.begin(), store.end());
    std::string want;
    for (auto& s : store) want += s;

    struct sigaction sa {};
    struct sigaction before {};
    sa.sa_handler = on_alarm;  // no SA_RESTART: a blocked pipe write returns short
    ::sigaction(SIGALRM, &sa, &before);
    itimerval tv{{0, 200}, {0, 200}};
    ::setitimer(ITIMER_REAL, &tv, nullptr);

    int fds[2];
    BOOST_TEST_REQUIRE(::pipe(fds) == 0);
    std::string got;
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGALRM);
    ::pthread_sigmask(SIG_BLOCK, &block, nullptr);  // the reader inherits it
    std::thread reader([&] {
        char buf[1000];
        for (;;) {
            const ssize_t r = ::read(fds[0], buf, sizeof buf);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            got.append(buf, static_cast<std::size_t>(r));
            ::usleep(20);
        }
    });
    ::pthread_sigmask(SIG_UNBLOCK, &block, nullptr);  // SIGALRM only on the writer
    procreg_test::faults::hook_guard guard(&count_writes, nullptr);
    const int err = procreg::detail::write_all(fds[1], procreg::detail::text_pieces{pieces.data(), pieces.size()});
    itimerval off{};
    ::setitimer(ITIMER_REAL, &off, nullptr);
    ::close(fds[1]);
    reader.join();
    ::close(fds[0]);
    ::sigaction(SIGALRM, &before, nullptr);
    BOOST_TEST_MESSAGE("writev calls: " << writes << " (11 without short writes)");
    BOOST_TEST(writes > 12u);
    BOOST_TEST(err == 0);
    BOOST_TEST(got.size() == want.size());
    BOOST_TEST((got == want));
}
