#!/usr/bin/env bash
# Index rebuild A/B: N recipients imported once through the API, then sirenad builds taking
# turns, ROUNDS restarts each, on the same Redis. Each restart rebuilds the index from Redis;
# the table gives each build's median (and range) of the rate its `directory_loaded` line
# reports, the time to /readyz, and the CPU sirenad and Redis spent until then. On a shared
# machine one restart says little: taking turns puts the builds in the same conditions.
#
# Exit status: 0, or 1 when a build did not load all N recipients.
#
# Usage: bench/directory/rebuild.sh N ROUNDS SIRENAD_A [SIRENAD_B ...]
# Environment: KEEP=1 keeps the work directory (Redis data, logs).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BENCH=rebuild
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
(($# >= 3)) && [[ $1 =~ ^[0-9]+$ && $2 =~ ^[0-9]+$ ]] || { sed -n '2,11s/^# \{0,1\}//p' "$0"; exit 2; }
N=$1 ROUNDS=$2; shift 2
WORK=$(mktemp -d /tmp/sirena-rebuild.XXXXXX)
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK/redis" "$WORK/import"
copy_bins "$@"

# --- Redis and the directory ----------------------------------------------------------------
# No persistence: the rebuild reads memory, and the import is not what is measured here.
redis-server --port 0 --unixsocket "$WORK/redis.sock" --unixsocketperm 700 --dir "$WORK/redis" \
  --appendonly no --save "" --daemonize no --logfile "$WORK/redis.log" &
REDIS_PID=$!; PIDS+=("$REDIS_PID")
wait_for redis-server 10 "$REDIS_PID" redis-cli -s "$WORK/redis.sock" ping

PORT=$(free_port)
start_sirenad() {  # start_sirenad BIN LOG: the demo config, from the repository root (it names files relative to it)
  (cd "$ROOT" && exec env SIRENA_HTTP_LISTEN="127.0.0.1:$PORT" SIRENA_REDIS_URL="unix://$WORK/redis.sock" \
    SIRENA_GATEWAYS_APNS_URL=http://127.0.0.1:1 SIRENA_GATEWAYS_FCM_URL=http://127.0.0.1:1 \
    "$1" --config config/demo.yaml) >"$2" 2>&1 &
  SIRENAD_PID=$!
  LOG=$2 wait_for sirenad 600 "$SIRENAD_PID" curl -fs "http://127.0.0.1:$PORT/readyz"
}
stop_sirenad() { stop_pid "$SIRENAD_PID"; SIRENAD_PID=""; }

# Soliera's citizens (bench/directory/recipients.awk), imported 50,000 a request, as `sirena
# import` sends them.
say "importing $N recipients"
start_sirenad "${BINS[0]}" "$WORK/import.log"
t0=$SECONDS
awk -v n="$N" -f "$HERE/recipients.awk" | split -l 50000 - "$WORK/import/part-"
for f in "$WORK"/import/part-*; do
  out=$(curl -fsS -X POST -H 'Authorization: Bearer demo-soliera-operator' -H 'Content-Type: application/x-ndjson' \
    --data-binary "@$f" "http://127.0.0.1:$PORT/v1/recipients/import") || die "import of $f failed"
  [[ $out == *'"rejected":[]'* || $out != *'"rejected"'* ]] || die "import of $f rejected lines: ${out:0:300}"
  rm "$f"
done
stop_sirenad
IMPORT_S=$((SECONDS - t0))
say "imported in $IMPORT_S s; Redis used $(redis-cli -s "$WORK/redis.sock" info memory | sed -n 's/^used_memory_human:\(.*\)\r$/\1/p')"

# --- restarts, taking turns -------------------------------------------------------------------
# Round 0 is not counted: each build starts once first, so that a build that keeps the
# index in another form than the importing one converts it there, not in a counted round.
: >"$WORK/rows"
status=0
for r in $(seq 0 "$ROUNDS"); do
  for i in "${!BINS[@]}"; do
    log=$WORK/sirenad-$r-$i.log
    r0=$(cpu_ticks "$REDIS_PID") b0=$(busy_ticks) ms0=$(date +%s%3N)
    start_sirenad "${BINS[i]}" "$log"
    ready_ms=$(( $(date +%s%3N) - ms0 ))
    s=$(cpu_ticks "$SIRENAD_PID") redis=$(( $(cpu_ticks "$REDIS_PID") - r0 )) busy=$(( $(busy_ticks) - b0 ))
    line=$(grep '"directory_loaded"' "$log" | grep '"soliera"') || die "no directory_loaded line in $log"
    read -r loaded ms rate < <(node -e 'const o = JSON.parse(require("fs").readFileSync(0));
      console.log(o.recipients, o.ms, o.per_second)' <<<"$line")
    ((loaded == N)) || { say "${NAMES[i]} loaded $loaded of $N"; status=1; }
    ((r == 0)) || echo "$i $rate $ms $ready_ms $s $redis $((busy - s - redis))" >>"$WORK/rows"
    say "round $r$( ((r > 0)) || echo ' (not counted)'), ${NAMES[i]}: $rate/s ($ms ms)"
    stop_sirenad
  done
done

echo
echo "## Index rebuild from Redis: $N recipients, $ROUNDS restarts per build, taking turns (median [min-max])"
echo
echo "Command: \`bench/directory/rebuild.sh $N $ROUNDS $*\`; $(nproc) cores; load average after: $(cut -d' ' -f1-3 /proc/loadavg)."
echo "Imported once (${IMPORT_S} s, with the first build); a first start of each build not counted. CPU is counted from"
echo "sirenad's start to /readyz (sirenad's includes its start-up); \"other\" is the rest of the machine."
echo
echo "| sirenad | recipients/s (directory_loaded) | load ms | start to /readyz ms | sirenad CPU s | Redis CPU s | other CPU s |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for i in "${!BINS[@]}"; do
  awk -v i="$i" -v hz="$HZ" -v name="${NAMES[i]}" '
    function med(a, k,   j, t, m) {  # sorts a[1..k] in place
      for (j = 2; j <= k; ++j) { t = a[j]; for (m = j - 1; m >= 1 && a[m] > t; --m) a[m + 1] = a[m]; a[m + 1] = t }
      return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
    function cell(a, k, fmt,   m) { m = med(a, k); return sprintf(fmt " [" fmt "-" fmt "]", m, a[1], a[k]) }
    $1 == i { ++k; rate[k] = $2; ms[k] = $3; ready[k] = $4; s[k] = $5 / hz; r[k] = $6 / hz; o[k] = $7 / hz }
    END { printf "| %s | %s | %s | %s | %s | %s | %s |\n", name, cell(rate, k, "%.0f"), cell(ms, k, "%.0f"),
          cell(ready, k, "%.0f"), cell(s, k, "%.2f"), cell(r, k, "%.2f"), cell(o, k, "%.2f") }' "$WORK/rows"
done
exit $status
