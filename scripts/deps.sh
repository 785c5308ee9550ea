#!/usr/bin/env bash
# Installs the Debian packages Sirena builds, tests and runs with.
# Idempotent: when everything is present it only runs dpkg-query and exits.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config ccache clang libclang-rt-14-dev
  clang-format           # clang-format and git-clang-format: .ci/run checks the changed lines (scripts/check-format.sh)
  # libraries (DESIGN.md "Dependencies")
  libuv1-dev libh2o-dev libhiredis-dev libxml2-dev libxml2-utils libssl-dev
  nlohmann-json3-dev libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev
  prometheus-cpp-dev libnghttp2-dev libcurl4-openssl-dev
  libs2-dev libphonenumber-dev libsimdjson-dev libjemalloc-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # real peers for tests and benchmarks
  redis-server redis-tools wrk nghttp2-client nghttp2-server curl jq python3 openssl
  kannel kannel-extras   # bearerbox, smsbox and /usr/lib/kannel/test/fakesmsc for the SMS tests
  prometheus             # prometheus and promtool for tests/ops (dashboards/); the tests start their own
  nodejs                 # bench/fanout's generator and watchers; bench/faults/run.sh --short (ctest faults.short) uses the generator
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
# redis-server's package starts a system instance on 6379; Sirena never uses it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
  $SUDO systemctl stop redis-server || true
fi
