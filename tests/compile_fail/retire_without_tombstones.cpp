// EXPECT: procreg: retire/unretire/hard_delete/exists/exists_anywhere/list_active need a storage policy that keeps tombstones
// retire() on a registry whose storage (json_table) keeps no retired records.
#include <procreg/presets/algocline.hpp>

int main() {
    auto registry = procreg::algocline::open("/tmp/procreg-compile-fail/registry.json");
    (void)registry.retire("sid-1");
}
