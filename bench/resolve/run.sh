#!/usr/bin/env bash
# Resolution benchmark: Sirena's geo index against PostGIS and Redis GEOSEARCH on the
# same synthetic directory of N recipients (default 1,000,000) and the same polygons.
#
# Builds resolve_bench (in $BUILD_DIR, default build/), starts a private PostgreSQL +
# PostGIS cluster and a redis-server on loopback ports (installing PostGIS with apt-get
# if missing), runs the benchmark, and stops both by PID on exit. Prints markdown.
#
# Usage: bench/resolve/run.sh [N]
#   env: BUILD_DIR, RUNS (51), SEED (42), PEERS=0 to measure Sirena alone.
# Loading 10M recipients into PostGIS (COPY, GiST, CLUSTER) takes several minutes.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
N=${1:-1000000}
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
RUNS=${RUNS:-51} SEED=${SEED:-42} PEERS=${PEERS:-1}

if [[ ! -f $BUILD_DIR/build.ninja ]]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
fi
ninja -C "$BUILD_DIR" -j2 resolve_bench >&2

# shellcheck source=bench/resolve/peers.sh
source "$ROOT/bench/resolve/peers.sh"
WORK=$(mktemp -d /tmp/sirena-resolve.XXXXXX)
cleanup() {
  peers_stop
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ARGS=(--n "$N" --runs "$RUNS" --seed "$SEED")
if [[ $PEERS == 1 ]]; then
  peers_install
  peers_start "$WORK"
  ARGS+=(--pg-port "$PG_PORT" --redis-port "$REDIS_PORT")
fi

echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "Command: bench/resolve/run.sh $N"
echo
"$BUILD_DIR/bin/resolve_bench" "${ARGS[@]}" 2>"$WORK/bench.log" || { cat "$WORK/bench.log" >&2; exit 1; }
grep -A20 "PostGIS plan" "$WORK/bench.log" >&2 || true
