// EXPECT: procreg: record_traits<Record> lacks static pid\(const Record&\)
// record_traits specialized with key() but no pid().
#include <procreg/procreg.hpp>

#include <boost/describe/class.hpp>

#include <string>
#include <string_view>

struct keyed {
    std::string name;
};
BOOST_DESCRIBE_STRUCT(keyed, (), (name))

template <>
struct procreg::record_traits<keyed> {
    static std::string_view key(const keyed& k) { return k.name; }
};

int main() {
    using reg = procreg::registry<keyed, procreg::lock::flock_lock, procreg::storage::json_table>;
    reg r{procreg::storage::json_table({})};
    (void)r;
}
