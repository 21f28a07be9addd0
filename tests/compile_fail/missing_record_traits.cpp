// EXPECT: procreg: no record_traits<Record> specialization
// A record type without a procreg::record_traits specialization.
#include <procreg/procreg.hpp>

#include <boost/describe/class.hpp>

#include <string>

struct bare {
    std::string name;
    unsigned pid = 0;
};
BOOST_DESCRIBE_STRUCT(bare, (), (name, pid))

int main() {
    using reg = procreg::registry<bare, procreg::lock::flock_lock, procreg::storage::json_table>;
    reg r{procreg::storage::json_table({})};
    (void)r;
}
