// EXPECT: skipped_files\(\) needs a storage that reports skipped entries
// A one-file table fails instead of skipping: asking it for skipped entries
// is a compile error saying so.
#include <procreg/presets/algocline.hpp>

int main() {
    auto reg = procreg::algocline::open("/tmp/never/registry.json");
    reg.transact([](auto& tx) { (void)tx.skipped_files(); });
}
