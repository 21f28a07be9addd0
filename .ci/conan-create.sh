#!/usr/bin/env bash
# .ci/conan-create.sh — package procreg with Conan 2 and prove the package
# works: `conan create .` exports the recipe (conanfile.py), packages the
# headers, then builds test_package/ against the package with
# find_package(procreg CONFIG REQUIRED) and runs it.
#
# Called by .ci/run and by `./run package`. Runs offline by design: no Conan
# remote is reachable from the project's machines, so every remote is removed
# from a Conan home private to the build directory, and Boost comes from the
# system packages through the profile .ci/conan/profile ([platform_requires]
# boost/1.81.0; Debian 12's libboost1.81-dev and libboost-json1.81-dev).
#
# Environment: BUILD_DIR (default: build) holds the Conan venv
# (conan-venv/), the Conan home (conan-home/) and the test package's build
# tree (conan-test-package/). CONAN_HOME overrides the Conan home.
# Idempotent: Conan is installed only when the venv lacks it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BUILD_DIR="${BUILD_DIR:-build}"
case "$BUILD_DIR" in
  /*) build_abs="$BUILD_DIR" ;;
  *)  build_abs="$ROOT/$BUILD_DIR" ;;
esac
mkdir -p "$build_abs"

CONAN_SPEC="conan>=2,<3"
VENV="$build_abs/conan-venv"
export CONAN_HOME="${CONAN_HOME:-$build_abs/conan-home}"
PROFILE="$ROOT/.ci/conan/profile"
TEST_BUILD="$build_abs/conan-test-package"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'conan-create: %s\n' "$*" >&2; exit 1; }

# The Python that has Conan: the venv's; or, where venvs cannot be made (a
# system Python without ensurepip), the system Python itself.
python_with_conan() {
  if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import conans' 2>/dev/null; then
    echo "$VENV/bin/python"
    return
  fi
  command -v python3 >/dev/null 2>&1 || die "python3 is not installed (apt-get install python3)"
  log "installing Conan ($CONAN_SPEC) with pip into $VENV"
  if python3 -m venv "$VENV" >&2 2>&1 && "$VENV/bin/python" -m pip install --quiet "$CONAN_SPEC" >&2; then
    echo "$VENV/bin/python"
    return
  fi
  rm -rf "$VENV"
  log "no venv possible; installing Conan into $(command -v python3) instead"
  if ! python3 -m pip install --quiet "$CONAN_SPEC" >&2; then
    # Debian's own python3 refuses (PEP 668: externally managed environment).
    python3 -m pip install --quiet --break-system-packages "$CONAN_SPEC" >&2
  fi
  command -v python3
}

PY="$(python_with_conan)"
conan() { "$PY" -m conans.conan "$@"; }

log "Conan home: $CONAN_HOME"
conan --version
# The default profile (compiler, libstdc++ ABI, C++ standard) is detected
# afresh each time, so a compiler upgrade on the machine cannot leave a stale one.
conan profile detect --force >/dev/null 2>&1 || die "conan profile detect failed"
# Offline: no remote at all, so nothing can be downloaded (an unsatisfiable
# requirement fails at once instead of timing out on the network).
conan remote remove '*' >/dev/null
log "Conan remotes (none expected):"
conan remote list
log "host and build profile: $PROFILE (the detected default, plus:)"
sed -n '/^\[platform_requires\]/,$p' "$PROFILE"

log "conan create . (builds and runs test_package/)"
log_file="$build_abs/conan-create.log"
set +e
conan create . -pr:h "$PROFILE" -pr:b "$PROFILE" \
  -c "tools.cmake.cmake_layout:test_folder=$TEST_BUILD" 2>&1 | tee "$log_file"
status=${PIPESTATUS[0]}
set -e
if ((status != 0)); then
  die "conan create failed (exit $status); full log: $log_file"
fi
# conan create skips test() when it cannot run the program (cross builds):
# here that would be a silent pass, so insist on the program's own line.
if ! grep -q '^procreg test_package: OK$' "$log_file"; then
  die "conan create succeeded but the test package did not run (no 'procreg test_package: OK' in $log_file)"
fi
log "conan create: package built, test_package built and ran"
