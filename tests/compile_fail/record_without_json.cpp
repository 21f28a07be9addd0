// EXPECT: procreg: Record cannot be converted to JSON
// A record with traits but no JSON conversion.
#include <procreg/procreg.hpp>

#include <string>
#include <string_view>

struct opaque {
    std::string name;
    unsigned pid = 0;
};

template <>
struct procreg::record_traits<opaque> {
    static std::string_view key(const opaque& o) { return o.name; }
    static unsigned pid(const opaque& o) { return o.pid; }
};

int main() {
    using reg = procreg::registry<opaque, procreg::lock::flock_lock, procreg::storage::json_table>;
    reg r{procreg::storage::json_table({})};
    (void)r;
}
