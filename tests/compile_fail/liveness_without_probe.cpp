// EXPECT: procreg: the liveness policy lacks bool is_alive
// A liveness policy that cannot answer whether an owner is alive.
#include <procreg/presets/algocline.hpp>

struct mute_liveness {
    void stamp_identity(std::uint64_t, boost::json::object&) const {}
};

int main() {
    using reg = procreg::registry<procreg::algocline::pool_session, procreg::lock::flock_lock,
                                  procreg::storage::json_table, mute_liveness>;
    reg r{procreg::storage::json_table(procreg::algocline::options("/tmp/x/registry.json"))};
    (void)r;
}
