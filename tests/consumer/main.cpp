// Consumer smoke test: open a registry, insert a session, find it again.
// Shared by every consumer project beside this file (each builds ../main.cpp)
// and compiled directly for consumer.pkg_config.
#include <procreg/presets/algocline.hpp>

#include <cstdint>
#include <cstdio>
#include <string>

#include <stdlib.h>
#include <unistd.h>

int main() {
    char tmpl[] = "/tmp/procreg-consumer-XXXXXX";
    const char* dir = ::mkdtemp(tmpl);
    if (!dir) return 1;
    auto reg = procreg::algocline::open(std::string(dir) + "/registry.json");
    reg.insert(procreg::algocline::pool_session::make(
        "s1", static_cast<std::uint32_t>(::getpid()), "/tmp/s1.sock", "0.30.0"));
    auto found = reg.find("s1");
    std::printf("found=%d\n", found ? 1 : 0);
    return found ? 0 : 1;  // (the temp dir is left behind; fine)
}
