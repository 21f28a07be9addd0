// EXPECT: procreg: retire/unretire/hard_delete/exists/exists_anywhere/list_active need a storage policy that keeps tombstones
// A tombstone step inside a transaction on a storage without tombstones.
#include <procreg/presets/algocline.hpp>

int main() {
    auto registry = procreg::algocline::open("/tmp/procreg-compile-fail/registry.json");
    registry.transact([](procreg::algocline::pool_registry::transaction_type& tx) { (void)tx.exists_anywhere("sid-1"); });
}
