// test_package.cpp — a registry with a record type of its own, through the
// installed package: insert this process, find it, see it alive, reap nothing.
#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/lock/flock_lock.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/json_table.hpp>
#include <procreg/version.hpp>

#include <boost/describe/class.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include <unistd.h>

struct worker {
    std::string name;
    std::uint32_t pid = 0;
};
BOOST_DESCRIBE_STRUCT(worker, (), (name, pid))

template <>
struct procreg::record_traits<worker> {
    static std::string_view key(const worker& w) { return w.name; }
    static std::uint32_t pid(const worker& w) { return w.pid; }
};

using worker_registry = procreg::registry<worker, procreg::lock::flock_lock, procreg::storage::json_table,
                                          procreg::liveness::kill_liveness>;

int main() {
    char pattern[] = "/tmp/procreg-test-package-XXXXXX";
    const char* dir = ::mkdtemp(pattern);
    if (!dir) return 1;
    int status = 1;
    {
        procreg::storage::json_table_options options;
        options.file = std::filesystem::path(dir) / "workers.json";
        options.array_key = "workers";
        worker_registry registry{procreg::storage::json_table(options)};
        registry.insert(worker{"indexer", static_cast<std::uint32_t>(::getpid())});
        const auto found = registry.find("indexer");
        const auto rows = registry.list();
        const auto reaped = registry.reap();
        if (found && rows.size() == 1 && rows[0].alive && reaped.empty()) status = 0;
        std::printf("procreg %d.%d.%d: found=%d alive=%d reaped=%zu\n", PROCREG_VERSION_MAJOR,
                    PROCREG_VERSION_MINOR, PROCREG_VERSION_PATCH, found ? 1 : 0,
                    rows.empty() ? 0 : (rows[0].alive ? 1 : 0), reaped.size());
    }
    std::filesystem::remove_all(dir);
    std::puts(status == 0 ? "procreg test_package: OK" : "procreg test_package: FAILED");
    return status;
}
