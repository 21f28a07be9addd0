# conanfile.py — the Conan 2 recipe of procreg, a header-only C++17 library.
#
#   conan create . -pr:h .ci/conan/profile -pr:b .ci/conan/profile
#   (what .ci/conan-create.sh runs, offline, with Boost from the system)
#
# The version is read from include/procreg/version.hpp, the one place it lives
# (CMake and pkg-config read the same three lines).
#
# Boost: procreg's headers include Boost's, and programs using them link the
# compiled Boost.JSON library. From a Conan remote, `boost` has components
# and procreg requires `boost::headers` and `boost::json`. From the system,
# through a profile's `[platform_requires]` (how CI runs: no Conan remote is
# reachable), `boost` has no cpp_info and no components, and naming them in
# `cpp_info.requires` breaks the consumer (Conan issue #17348): the issue
# reports CMakeDeps (Conan 2.9) failing with "required 'boost::headers', but
# 'boost' is not a direct dependency"; Conan 2.34 drops the requirement
# silently and the test package fails to link (undefined boost::json
# symbols). package_info()
# therefore names the components only when boost is a real Conan package,
# and otherwise links the system's `boost_json`, whose headers and library
# are in the compiler's default search paths. See docs/packaging.md.
import os
import re

from conan import ConanFile
from conan.errors import ConanInvalidConfiguration
from conan.tools.build import check_min_cppstd
from conan.tools.files import copy, load
from conan.tools.layout import basic_layout

required_conan_version = ">=2.0.9"


class ProcregConan(ConanFile):
    name = "procreg"
    description = "Crash-safe registries of live processes (header-only, C++17)"
    topics = ("registry", "process", "pid", "lock", "crash-safety", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    no_copy_source = True
    exports_sources = "include/*"

    def set_version(self):
        header = load(self, os.path.join(self.recipe_folder, "include", "procreg", "version.hpp"))
        parts = []
        for part in ("MAJOR", "MINOR", "PATCH"):
            found = re.search(r"^#define[ \t]+PROCREG_VERSION_%s[ \t]+([0-9]+)[ \t]*$" % part, header, re.MULTILINE)
            if not found:
                raise ConanInvalidConfiguration(
                    "include/procreg/version.hpp has no '#define PROCREG_VERSION_%s <n>' line" % part)
            parts.append(found.group(1))
        self.version = ".".join(parts)

    def layout(self):
        basic_layout(self, src_folder=".")

    def requirements(self):
        # procreg's public headers include Boost's, and programs that use
        # them link Boost.JSON: both must reach the consumer.
        self.requires("boost/[>=1.81]", transitive_headers=True, transitive_libs=True)

    def package_id(self):
        self.info.clear()

    def validate(self):
        if self.settings.get_safe("compiler.cppstd"):
            check_min_cppstd(self, 17)
        if self.settings.get_safe("os") not in (None, "Linux"):
            raise ConanInvalidConfiguration(
                "procreg needs Linux (flock, pidfd_open, /proc); os=%s is not supported" % self.settings.os)

    def build(self):
        pass  # header-only: nothing to build

    def package(self):
        copy(self, "*.hpp", src=os.path.join(self.source_folder, "include"),
             dst=os.path.join(self.package_folder, "include"))

    def package_info(self):
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.set_property("cmake_file_name", "procreg")
        self.cpp_info.set_property("cmake_target_name", "procreg::procreg")
        self.cpp_info.set_property("pkg_config_name", "procreg")
        if self._boost_is_platform_package():
            # Workaround for Conan issue #17348 (see the top of this file).
            self.cpp_info.system_libs = ["boost_json", "pthread"]
        else:
            self.cpp_info.requires = ["boost::headers", "boost::json"]
            self.cpp_info.system_libs = ["pthread"]

    def _boost_is_platform_package(self):
        # A [platform_requires] dependency stays in the graph (as
        # boost/1.81.0#platform) but has no package folder and no cpp_info:
        # the system provides it. (self.dependencies["boost"] raises for it,
        # hence the walk.)
        for requirement, dependency in self.dependencies.host.items():
            if requirement.ref.name == "boost":
                return dependency.package_folder is None
        return True
