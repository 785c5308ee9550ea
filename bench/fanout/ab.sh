#!/usr/bin/env bash
# Fan-out A/B: two (or more) sirenad binaries, one alert each in turn, ROUNDS times, on the
# same Redis, simulators and N recipients (70% APNs, 30% FCM, as run.sh). On a shared
# machine a single run says little; taking turns puts both sides in the same conditions,
# and the table gives each side's median (and range) over its rounds. A side given as
# SIRENAD,SIM also runs its own simulator binary (then every side starts fresh simulators
# at each turn).
#
# Exit status: 0, or 1 when a binary lost or duplicated a message.
#
# Usage: bench/fanout/ab.sh N ROUNDS SIRENAD_A[,SIM_A] [SIRENAD_B[,SIM_B] ...]
# Environment: SIM (default build/bin/sirena-sim), APPENDFSYNC (always), FCM_RATE (1000000),
#   TLS=1 (APNs over TLS), TIMELINE=1 prints each round's accepted messages every 500 ms
#   (where a run slows down).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
(($# >= 3)) && [[ $1 =~ ^[0-9]+$ && $2 =~ ^[0-9]+$ ]] || { sed -n '2,14s/^# \{0,1\}//p' "$0"; exit 2; }
N=$1 ROUNDS=$2; shift 2
SIM=${SIM:-$ROOT/build/bin/sirena-sim} APPENDFSYNC=${APPENDFSYNC:-always} FCM_RATE=${FCM_RATE:-1000000}
BINS=() SIMS=()
for side in "$@"; do
  BINS+=("${side%%,*}"); [[ $side == *,* ]] && SIMS+=("${side#*,}") || SIMS+=("")
done
for b in "${BINS[@]}" "${SIMS[@]}" "$SIM"; do [[ -z $b || -x $b ]] || { echo "ab: $b is not executable" >&2; exit 2; }; done

BENCH=ab
source "$ROOT/bench/lib.sh"  # PIDS, SIRENAD_PID, cleanup, free_port, cpu_ticks, settle_redis
WORK=$(mktemp -d /tmp/sirena-ab.XXXXXX)
trap cleanup EXIT
source "$HERE/setup.sh"  # Redis, the simulators, start_sirenad, import_recipients
start_sims

start_sirenad "${BINS[0]}"
import_recipients
stop_sirenad

status=0
: >"$WORK/rows"
for r in $(seq "$ROUNDS"); do
  for i in "${!BINS[@]}"; do
    # With a side's own simulators, every side starts with fresh ones: the same for all.
    [[ -z $(printf %s "${SIMS[@]}") ]] || { stop_sims; start_sims "${SIMS[i]}"; }
    start_sirenad "${BINS[i]}"
    reset_sims
    settle_redis "$WORK/redis.sock"
    r0=$(cpu_ticks "$REDIS_PID") s0=$(( $(cpu_ticks "${SIM_PIDS[0]}") + $(cpu_ticks "${SIM_PIDS[1]}") ))
    out=$(node "$HERE/alert.js" "http://127.0.0.1:$PORT" "$SIRENAD_PID" "$HERE/flood.cap.xml" "ab-$$-$r-$i" \
      "http://127.0.0.1:$APNS_ADMIN" "http://127.0.0.1:$FCM_ADMIN" "$WANT_APNS" "$WANT_FCM")
    secs() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'; }
    redis_s=$(secs $(( $(cpu_ticks "$REDIS_PID") - r0 )))
    sims_s=$(secs $(( $(cpu_ticks "${SIM_PIDS[0]}") + $(cpu_ticks "${SIM_PIDS[1]}") - s0 )))
    sa=$(curl -fs "http://127.0.0.1:$APNS_ADMIN/stats") sf=$(curl -fs "http://127.0.0.1:$FCM_ADMIN/stats")
    dup=$(( $(field duplicates <<<"$sa") + $(field duplicates <<<"$sf") ))
    uniq=$(( $(field unique_recipients <<<"$sa") + $(field unique_recipients <<<"$sf") ))
    ((dup == 0 && uniq == WANT_APNS + WANT_FCM)) || status=1
    [[ -z ${TIMELINE:-} ]] || node -e 'let p = [0, 0]; for (const [t, n] of JSON.parse(require("fs").readFileSync(0)).timeline) {
        console.log(`${t} ms ${n} accepted ${Math.round((n - p[1]) / (t - p[0]) * 1000)}/s`); p = [t, n] }' <<<"$out" >&2
    first=$(field first_metric_ms <<<"$out") done_ms=$(field done_ms <<<"$out")
    [[ -n $done_ms ]] || { echo "ab: ${BINS[i]} did not complete the alert: $out" >&2; exit 1; }
    echo "$i ${first:--1} $done_ms $(field cpu_s <<<"$out") $redis_s $dup $uniq $sims_s" >>"$WORK/rows"
    stop_sirenad
  done
done

echo
echo "## sirenad A/B: $N push recipients, $ROUNDS rounds, taking turns (median [min-max])"
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); Redis appendfsync $APPENDFSYNC; APNs over $APNS_OVER"
echo
echo "| sirenad | first message ms | messages/s | time to 100% ms | sirenad CPU s/100k | Redis CPU s/100k | simulators CPU s/100k | lost or duplicated |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for i in "${!BINS[@]}"; do
  awk -v i="$i" -v n="$N" -v want=$((WANT_APNS + WANT_FCM)) -v name="${BINS[i]}${SIMS[i]:+, sim ${SIMS[i]}}" '
    function med(a, k,   j, t, m) {  # sorts a[1..k] in place
      for (j = 2; j <= k; ++j) { t = a[j]; for (m = j - 1; m >= 1 && a[m] > t; --m) a[m + 1] = a[m]; a[m + 1] = t }
      return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
    function cell(a, k, fmt,   m) { m = med(a, k); return sprintf(fmt " [" fmt "-" fmt "]", m, a[1], a[k]) }
    $1 == i { ++k; f[k] = $2; d[k] = $3; rate[k] = n / ($3 / 1000); c[k] = $4 * 100000 / n; r[k] = $5 * 100000 / n
              sim[k] = $8 * 100000 / n; bad += $6 + want - $7 }
    END { printf "| %s | %s | %s | %s | %s | %s | %s | %d |\n", name, cell(f, k, "%.1f"), cell(rate, k, "%.0f"),
          cell(d, k, "%.0f"), cell(c, k, "%.2f"), cell(r, k, "%.2f"), cell(sim, k, "%.2f"), bad }' "$WORK/rows"
done
exit $status
