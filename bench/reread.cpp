// bench/reread.cpp — CPU cost of json_table's re-read path (issue 17).
//
// Two registry objects on one algocline table (tmpfs, no fsync) take turns,
// so every timed call finds a file the other object wrote: the load, decode
// and first-save work that two processes taking turns pay, without the
// hand-over (a process switch) that would bury it on a shared machine.
// Prints the median CPU time (CLOCK_PROCESS_CPUTIME_ID, stable under load)
// of insert, erase, find and list after the other's write, and of a list
// that finds its own state (the unchanged-file shortcut).
//
//     procreg_reread <N> [calls]      e.g. procreg_reread 1000 31
//
// docs/benchmarks.md ("The re-read path") has its figures.
#include <procreg/presets/algocline.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <time.h>
#include <unistd.h>

namespace {

using procreg::algocline::pool_session;

double cpu_now_us() {
    timespec ts{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

pool_session record(const std::string& sid) {
    return {sid, 1, "/run/user/1000/algocline/worker-00000000.sock", "0.30.0", "2026-01-01T00:00:00Z"};
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// Runs `call` and appends the CPU time it took to `into`.
template <class Call>
auto timed(std::vector<double>& into, Call&& call) {
    const double start = cpu_now_us();
    auto result = call();
    into.push_back(cpu_now_us() - start);
    return result;
}

std::string numbered(const char* prefix, int i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s-%08d", prefix, i);
    return buf;
}

}  // namespace

int main(int argc, char** argv) {
    const int n = argc > 1 ? std::atoi(argv[1]) : 1000;
    const int calls = argc > 2 ? std::atoi(argv[2]) : 21;
    const std::filesystem::path dir = "/dev/shm/procreg-reread-" + std::to_string(::getpid());
    std::filesystem::remove_all(dir);
    auto opts = procreg::algocline::options(dir / "registry.json");
    opts.durable = false;
    auto a = procreg::algocline::open(opts);
    auto b = procreg::algocline::open(opts);
    a.transact([&](auto& tx) {
        for (int i = 0; i < n; ++i) tx.insert(record(numbered("sid", i)));
    });
    std::vector<double> insert, erase, find, list, list_own;
    for (int i = 0; i < calls; ++i) {
        const std::string key = numbered("new", i), one = numbered("one", i), three = numbered("thr", i);
        a.insert(record(one));  // untimed: b's next call finds a's write
        timed(insert, [&] {
            b.insert(record(key));
            return true;
        });
        timed(erase, [&] { return a.erase(key); });
        b.erase(one);  // untimed
        if (!timed(find, [&] { return a.find("sid-00000000"); })) return 1;
        a.insert(record(three));  // untimed
        if (timed(list, [&] { return b.list(); }).size() != static_cast<std::size_t>(n) + 1) return 1;
        timed(list_own, [&] { return b.list(); });
        b.erase(three);  // untimed
    }
    std::printf("N=%d CPU us, median of %d: insert %.1f erase %.1f find %.1f list %.1f | list (own state) %.1f\n", n,
                calls, median(insert), median(erase), median(find), median(list), median(list_own));
    std::filesystem::remove_all(dir);
    return 0;
}
