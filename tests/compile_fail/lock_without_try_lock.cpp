// EXPECT: procreg: the lock policy lacks a try_lock\(\) member function
// A lock policy with lock() and unlock() only.
#include <procreg/presets/algocline.hpp>

#include <filesystem>

struct half_lock {
    explicit half_lock(const std::filesystem::path&) {}
    void lock() {}
    void unlock() {}
};

int main() {
    using reg = procreg::registry<procreg::algocline::pool_session, half_lock, procreg::storage::json_table>;
    reg r{procreg::storage::json_table(procreg::algocline::options("/tmp/x/registry.json"))};
    (void)r;
}
