#!/usr/bin/env bash
# Recipient import through the API, durable: N recipients (bench/directory/recipients.awk) sent
# with `sirena import` (the CLI a user runs: consecutive requests of at most 8 MiB) to sirenad,
# whose Redis writes its AOF with appendfsync always, as the managed Redis does. Each build
# imports into an empty directory ("new"), then the same file again ("same": nothing to
# write), then the same recipients with other topics ("changed": every line an update).
# Builds take turns, ROUNDS times; the table gives medians [min-max].
#
# Baseline, same run and Redis: the same N lines written with `redis-cli --pipe` as one HSET
# field each, no validation and no index: what durable Redis alone takes of these bytes.
#
# Then what validation alone costs sirenad, on one thread (build/bin/validate_bench, on the
# first 200k lines of the same file), and the CPU budget a recipient that 200k/s leaves.
#
# Exit status: 0, or 1 when an import did not store all N recipients.
#
# Usage: bench/directory/import.sh N [ROUNDS [SIRENAD_A [SIRENAD_B ...]]]
# Environment: KEEP=1 keeps the work directory; CLI names another `sirena` binary;
#   SIRENAD_ENV="K=V ..." adds to sirenad's environment (e.g. UV_THREADPOOL_SIZE=1).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BENCH=import
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
[[ ${1:-} =~ ^[0-9]+$ && ${2:-1} =~ ^[0-9]+$ ]] || { sed -n '2,16s/^# \{0,1\}//p' "$0"; exit 2; }
N=$1 ROUNDS=${2:-1}; shift; (($# == 0)) || shift
(($# > 0)) || set -- "$ROOT/build/bin/sirenad"
CLI=${CLI:-$ROOT/build/bin/sirena}
VALIDATE=${VALIDATE:-$ROOT/build/bin/validate_bench}
WORK=$(mktemp -d /tmp/sirena-import.XXXXXX)
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK/redis"
copy_bins "$@"
for b in "$CLI" "$VALIDATE"; do [[ -x $b ]] || die "$b is not executable (build first: ./scripts/test.sh or ninja -C build)"; done
cp "$CLI" "$WORK/bin/sirena"

say "generating $N recipients"
awk -v n="$N" -f "$HERE/recipients.awk" >"$WORK/recipients.ndjson"
awk -v n="$N" -v variant=1 -f "$HERE/recipients.awk" >"$WORK/changed.ndjson"
BYTES=$(stat -c %s "$WORK/recipients.ndjson")

redis-server --port 0 --unixsocket "$WORK/redis.sock" --unixsocketperm 700 --dir "$WORK/redis" \
  --appendonly yes --appendfsync always --save "" --daemonize no --logfile "$WORK/redis.log" &
REDIS_PID=$!; PIDS+=("$REDIS_PID")
wait_for redis-server 10 "$REDIS_PID" redis-cli -s "$WORK/redis.sock" ping
rcli() { redis-cli -s "$WORK/redis.sock" "$@"; }

PORT=$(free_port)
start_sirenad() {  # start_sirenad BIN LOG: the demo config, from the repository root (it names files relative to it)
  (cd "$ROOT" && exec env ${SIRENAD_ENV:-} SIRENA_HTTP_LISTEN="127.0.0.1:$PORT" SIRENA_REDIS_URL="unix://$WORK/redis.sock" \
    SIRENA_GATEWAYS_APNS_URL=http://127.0.0.1:1 SIRENA_GATEWAYS_FCM_URL=http://127.0.0.1:1 \
    "$1" --config config/demo.yaml) >"$2" 2>&1 &
  SIRENAD_PID=$!
  LOG=$2 wait_for sirenad 600 "$SIRENAD_PID" curl -fs "http://127.0.0.1:$PORT/readyz"
}
stop_sirenad() { stop_pid "$SIRENAD_PID"; SIRENAD_PID=""; }

# one_import BUILD KIND FILE: sirena import of the whole file into the running sirenad; appends
# "build kind milliseconds sirenad_ticks redis_ticks cli_ticks other_ticks" to rows.
one_import() {
  local i=$1 kind=$2 file=$3 s0 r0 b0 ms0 ms out stored
  settle_redis "$WORK/redis.sock"
  s0=$(cpu_ticks "$SIRENAD_PID") r0=$(cpu_ticks "$REDIS_PID") b0=$(busy_ticks) ms0=$(date +%s%3N)
  out=$(/usr/bin/time -f '%U %S' -o "$WORK/cli.time" "$WORK/bin/sirena" --url "http://127.0.0.1:$PORT" \
    --key demo-soliera-operator import "$file" 2>"$WORK/cli.err") ||
    { tail -c 500 "$WORK/cli.err" >&2; die "sirena import failed"; }
  ms=$(( $(date +%s%3N) - ms0 ))
  local s=$(( $(cpu_ticks "$SIRENAD_PID") - s0 )) r=$(( $(cpu_ticks "$REDIS_PID") - r0 )) busy=$(( $(busy_ticks) - b0 ))
  local c; c=$(awk -v hz="$HZ" '{ printf "%d", ($1 + $2) * hz }' "$WORK/cli.time")
  [[ $(node -e 'const o = JSON.parse(require("fs").readFileSync(0)); console.log(o.imported, o.rejected.length)' <<<"$out") == "$N 0" ]] ||
    die "import did not take all $N lines: ${out:0:300}"
  stored=$(rcli hlen "{t:soliera}:recipients")
  ((stored == N)) || { say "${NAMES[i]}: Redis holds $stored recipients after the import, not $N"; STATUS=1; }
  local other=$((busy - s - r - c)); ((other > 0)) || other=0  # ticks are counted apart: a rounding below 0
  echo "$i $kind $ms $s $r $c $other" >>"$WORK/rows"
  say "round $ROUND, ${NAMES[i]}, $kind: $(awk -v n="$N" -v ms="$ms" 'BEGIN { printf "%.0f/s (%.1f s)", n / ms * 1000, ms / 1000 }')"
}

: >"$WORK/rows"
STATUS=0
for ROUND in $(seq 1 "$ROUNDS"); do
  for i in "${!BINS[@]}"; do
    rcli flushall >/dev/null
    start_sirenad "${BINS[i]}" "$WORK/sirenad-$ROUND-$i.log"
    one_import "$i" new "$WORK/recipients.ndjson"
    one_import "$i" same "$WORK/recipients.ndjson"
    one_import "$i" changed "$WORK/changed.ndjson"
    stop_sirenad
  done
done

# The baseline: the same lines as HSET fields, through redis-cli --pipe (RESP made by awk, in bytes).
say "baseline: redis-cli --pipe"
rcli flushall >/dev/null
LC_ALL=C awk '{ id = $0; sub(/^\{"id":"/, "", id); sub(/".*/, "", id)
  printf "*4\r\n$4\r\nHSET\r\n$12\r\nbench:import\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(id), id, length($0), $0 }' \
  "$WORK/recipients.ndjson" >"$WORK/pipe.resp"
settle_redis "$WORK/redis.sock"
r0=$(cpu_ticks "$REDIS_PID") ms0=$(date +%s%3N)
/usr/bin/time -f '%U %S' -o "$WORK/pipe.time" redis-cli -s "$WORK/redis.sock" --pipe <"$WORK/pipe.resp" >"$WORK/pipe.out" ||
  { cat "$WORK/pipe.out" >&2; die "redis-cli --pipe failed"; }
PIPE_MS=$(( $(date +%s%3N) - ms0 )) PIPE_R=$(( $(cpu_ticks "$REDIS_PID") - r0 ))
PIPE_C=$(awk -v hz="$HZ" '{ printf "%d", ($1 + $2) * hz }' "$WORK/pipe.time")
(( $(rcli hlen bench:import) == N )) || die "redis-cli --pipe stored $(rcli hlen bench:import) of $N"

echo
echo "## Recipient import through the API, durable: $N recipients, $ROUNDS rounds per build, taking turns (median [min-max])"
echo
echo "Command: \`bench/directory/import.sh $N $ROUNDS $*\`; $(nproc) cores; load average after: $(cut -d' ' -f1-3 /proc/loadavg)."
echo "$(awk -v b="$BYTES" -v n="$N" 'BEGIN { printf "%.0f MiB of NDJSON, %.0f bytes a line", b / 1048576, b / n }');" \
  "70% with a phone, 60% with a push token; Redis with appendfsync always. \"new\": into an empty directory;"
echo "\"same\": the same file once more (nothing to write); \"changed\": every recipient with other topics."
echo "CPU per 100k recipients; \"other\" is the rest of the machine (with Redis's AOF rewrites, which run in a child)."
echo
echo "| importer | import | recipients/s | seconds | sirenad CPU s/100k | Redis CPU s/100k | CLI CPU s/100k | other CPU s/100k |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for i in "${!BINS[@]}"; do
  for kind in new same changed; do
    awk -v i="$i" -v kind="$kind" -v n="$N" -v hz="$HZ" -v name="${NAMES[i]}" '
      function med(a, k,   j, t, m) {  # sorts a[1..k] in place
        for (j = 2; j <= k; ++j) { t = a[j]; for (m = j - 1; m >= 1 && a[m] > t; --m) a[m + 1] = a[m]; a[m + 1] = t }
        return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
      function cell(a, k, fmt,   m) { m = med(a, k); return k == 1 ? sprintf(fmt, m) : sprintf(fmt " [" fmt "-" fmt "]", m, a[1], a[k]) }
      $1 == i && $2 == kind { ++k; rate[k] = n / $3 * 1000; secs[k] = $3 / 1000
        s[k] = $4 / hz / n * 1e5; r[k] = $5 / hz / n * 1e5; c[k] = $6 / hz / n * 1e5; o[k] = $7 / hz / n * 1e5 }
      END { printf "| sirenad %s | %s | %s | %s | %s | %s | %s | %s |\n", name, kind, cell(rate, k, "%.0f"), cell(secs, k, "%.1f"),
            cell(s, k, "%.2f"), cell(r, k, "%.2f"), cell(c, k, "%.2f"), cell(o, k, "%.2f") }' "$WORK/rows"
  done
done
awk -v n="$N" -v ms="$PIPE_MS" -v r="$PIPE_R" -v c="$PIPE_C" -v hz="$HZ" 'BEGIN {
  printf "| redis-cli --pipe, one HSET a line (baseline) | new | %.0f | %.1f | | %.2f | %.2f | |\n", n / ms * 1000, ms / 1000, r / hz / n * 1e5, c / hz / n * 1e5 }'

echo
head -n 200000 "$WORK/recipients.ndjson" >"$WORK/sample.ndjson"
"$VALIDATE" "$WORK/sample.ndjson" 3 | tee "$WORK/validate.md"
VALIDATE_US=$(awk -F'|' '/^\| as imported/ { print $3 + 0 }' "$WORK/validate.md")
echo
awk -v cores="$(nproc)" -v v="$VALIDATE_US" -v r="$PIPE_R" -v n="$N" -v hz="$HZ" 'BEGIN {
  redis = r / hz / n * 1e6
  printf "Budget: 200k recipients/s on %d cores leaves %.1f us of CPU a recipient for every process together;", cores, cores * 1e6 / 200000
  printf " validation alone takes %.1f us and durable Redis alone (the baseline) %.1f us, %.1f us together.\n", v, redis, v + redis }'
exit $STATUS
