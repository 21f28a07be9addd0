// EXPECT: procreg: the storage policy lacks template <class Record> session<Record> begin\(\)
// A storage policy that only knows where its lock is.
#include <procreg/presets/algocline.hpp>

#include <filesystem>

struct pathless_storage {
    std::filesystem::path lock_path() const { return "/tmp/x.lock"; }
};

int main() {
    using reg = procreg::registry<procreg::algocline::pool_session, procreg::lock::flock_lock, pathless_storage>;
    reg r{pathless_storage{}};
    (void)r;
}
