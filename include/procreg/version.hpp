// procreg/version.hpp — the one place the version number lives.
//
// CMake, the Conan recipe and the pkg-config file all read these three
// lines; change the version here and nowhere else.
#pragma once

#define PROCREG_VERSION_MAJOR 0
#define PROCREG_VERSION_MINOR 1
#define PROCREG_VERSION_PATCH 0

/// The version as one number: major * 10000 + minor * 100 + patch.
#define PROCREG_VERSION \
    (PROCREG_VERSION_MAJOR * 10000 + PROCREG_VERSION_MINOR * 100 + PROCREG_VERSION_PATCH)
