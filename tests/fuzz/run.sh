#!/usr/bin/env bash
# Runs every fuzz target for a fixed time, each seeded from the repository; any crash,
# sanitizer report or timeout fails the run (libFuzzer exits non-zero).
#   tests/fuzz/run.sh BIN_DIR SECONDS
set -euo pipefail
bin=${1:?usage: run.sh BIN_DIR SECONDS}
seconds=${2:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/sirena-fuzz-XXXXXX)
trap 'rm -rf "$work"' EXIT

run() {
  local target=$1 seeds=$2
  [ -x "$bin/$target" ] || { echo "fuzz: $bin/$target was not built" >&2; exit 1; }
  mkdir -p "$work/$target"
  echo "fuzz: $target for ${seconds}s (seeds: ${seeds#$root/})"
  # New inputs go to a scratch corpus; the committed seeds stay untouched.
  "$bin/$target" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/$target-" "$work/$target" "$seeds" 2>"$work/$target.log" || {
    echo "fuzz: $target FAILED; the last lines of its log:" >&2
    tail -n 40 "$work/$target.log" >&2
    ls "$work"/"$target"-* 2>/dev/null | head -n 3 | while read -r f; do echo "crashing input: $f ($(wc -c <"$f") bytes)" >&2; base64 -w0 "$f" | head -c 2000 >&2; echo >&2; done
    exit 1
  }
  grep -E "stat::number_of_executed_units" "$work/$target.log" | sed "s/^/fuzz: $target /"
}

run cap_xml_fuzz "$root/tests/data/cap"
run alert_json_fuzz "$root/tests/fuzz/seeds/json"
if [ -x "$bin/recipient_fuzz" ]; then run recipient_fuzz "$root/tests/fuzz/seeds/recipient"; fi
echo "fuzz: all targets ran ${seconds}s without a failure"
