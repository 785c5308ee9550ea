#!/usr/bin/env bash
# Installs what is missing, builds and runs every test (unit and integration).
#
#   ./scripts/test.sh              plain build in build/, all tests
#   ./scripts/test.sh --sanitize   AddressSanitizer + UBSan build in build-asan/, all tests
#   ./scripts/test.sh --fuzz [S]   clang libFuzzer build in build-fuzz/, each fuzzer S seconds (default 60)
#
# Exits non-zero on any failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
./scripts/deps.sh

mode=${1:-plain}
jobs=$(nproc)

case "$mode" in
  plain)
    cmake -S . -B build -G Ninja -DSIRENA_WERROR=ON >/dev/null
    ninja -C build -j"$jobs"
    ctest --test-dir build --output-on-failure -j2 --timeout 300
    ;;
  --sanitize)
    cmake -S . -B build-asan -G Ninja -DSIRENA_WERROR=ON -DSIRENA_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
    ninja -C build-asan -j"$jobs"
    # sirenad runs as a child of the integration tests and inherits these.
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    ctest --test-dir build-asan --output-on-failure -j2 --timeout 600
    ;;
  --fuzz)
    seconds=${2:-60}
    CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DSIRENA_FUZZ=ON -DSIRENA_WERROR=ON \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    ninja -C build-fuzz -j"$jobs" cap_xml_fuzz alert_json_fuzz recipient_fuzz
    ./tests/fuzz/run.sh build-fuzz/bin "$seconds"
    ;;
  *)
    echo "usage: $0 [--sanitize | --fuzz [SECONDS]]" >&2
    exit 64
    ;;
esac
