// EXPECT: procreg: transact\(\) steps must return a value, not a reference
// A step that hands out a reference into the transaction, which ends with the lock.
#include <procreg/presets/algocline.hpp>

int main() {
    auto reg = procreg::algocline::open("/tmp/procreg-compile-fail/registry.json");
    const procreg::algocline::pool_session& dangling =
        reg.transact([](auto& tx) -> const procreg::algocline::pool_session& { return *tx.find("x"); });
    (void)dangling;
}
