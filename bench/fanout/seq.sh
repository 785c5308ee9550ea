#!/usr/bin/env bash
# Fan-out sequence: one sirenad binary in the states a deployment goes through, to tell a
# cost of the daemon's state (just imported, restarted, idle, fresh simulators) from the
# machine's own variation. The run.sh set-up (Redis with appendfsync always, sirena-sim apns
# and fcm over h2c, N push recipients imported through sirenad), then STEPS, one letter each:
#   a  one alert through the running sirenad (simulators reset, Redis AOF settled first)
#   r  restart sirenad (it loads the index from Redis)
#   s  restart both simulators (fresh processes)
#   w  wait IDLE seconds (default 20: about a 1M import's length)
#   i  stop sirenad, FLUSHALL Redis, start sirenad and import the N recipients again
#   p  time 30 POST /v1/alerts/preview of the alert (parsing and resolution, no side effects)
#   b  keep every core busy for IDLE seconds (shell loops): as much CPU as an import, no state
# One row per alert: what came before it, the load average, a fixed single-threaded Python
# workload's ms just before it (the machine's speed then), first message, time to 100%, CPU.
# Exit status: 0, or 1 when an alert lost or duplicated a message.
#
# Usage: bench/fanout/seq.sh N STEPS [SIRENAD]    e.g.  seq.sh 1000000 araiara
# Environment: SIM (default build/bin/sirena-sim), APPENDFSYNC (always), FCM_RATE (1000000),
#   TLS=1 (APNs over TLS), TIMELINE=1 (accepted messages every 500 ms), DETAIL=1 (sirenad's
#   page faults and context switches, Redis's commandstats of each alert), PERF=1 (perf
#   record -g of sirenad during each alert, into the work directory), STRACE=1 (its first
#   1.5 s of I/O, strace -T; STRACE_SET names the system calls), KEEP=1 keeps the work
#   directory, IDLE (w's seconds).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
(($# >= 2)) && [[ $1 =~ ^[0-9]+$ && $2 =~ ^[arswibp]+$ ]] || { sed -n '2,23s/^# \{0,1\}//p' "$0"; exit 2; }
N=$1 STEPS=$2 SIRENAD=${3:-$ROOT/build/bin/sirenad}
SIM=${SIM:-$ROOT/build/bin/sirena-sim} APPENDFSYNC=${APPENDFSYNC:-always} FCM_RATE=${FCM_RATE:-1000000}
IDLE=${IDLE:-20}
for b in "$SIRENAD" "$SIM"; do [[ -x $b ]] || { echo "seq: $b is not executable" >&2; exit 2; }; done

BENCH=seq
source "$ROOT/bench/lib.sh"  # PIDS, SIRENAD_PID, cleanup, free_port, cpu_ticks, settle_redis, stop_pid, forget_pid
WORK=$(mktemp -d /tmp/sirena-seq.XXXXXX)
trap cleanup EXIT
proc_counts() {  # minflt, voluntary and involuntary context switches of a process
  local st; st=$(<"/proc/$1/stat"); set -- ${st##*) }
  echo "$8 $(awk '/^voluntary_ctxt/ { v = $2 } /^nonvoluntary_ctxt/ { n = $2 } END { print v, n }' "/proc/$SIRENAD_PID/status")"
}
secs() { awk -v t="$1" -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }'; }

source "$HERE/setup.sh"  # Redis, the simulators, start_sirenad, import_recipients
import() {
  local t0; t0=$(date +%s.%N)
  import_recipients
  say "imported $N in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
}
start_sims
start_sirenad "$SIRENAD"
import

status=0 k=0 since=import
echo "| # | after | load | calib ms | first ms | done ms | msg/s | sirenad CPU s | Redis CPU s | sims CPU s | other CPU s | sirenad RSS MiB | dup | unique |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for ((j = 0; j < ${#STEPS}; ++j)); do
  case ${STEPS:j:1} in
    r) stop_sirenad; start_sirenad "$SIRENAD"; since=restart ;;
    s) stop_sims; start_sims; since="$since+sims" ;;
    w) sleep "$IDLE"; since="$since+idle" ;;
    p) sed "s/IDENTIFIER/preview-$$/" "$HERE/flood.cap.xml" >"$WORK/preview.xml"
       for _ in $(seq 30); do
         curl -fs -o /dev/null -w '%{time_total}\n' -X POST -H 'Authorization: Bearer demo-soliera-operator' \
           -H 'Content-Type: application/cap+xml' --data-binary "@$WORK/preview.xml" "http://127.0.0.1:$PORT/v1/alerts/preview"
       done >"$WORK/preview.times"
       sort -n "$WORK/preview.times" | awk -v s="$since" -v first="$(head -1 "$WORK/preview.times")" '{ t[NR] = $1 * 1000 } END {
         printf "  preview after %s: first %.1f ms, then median %.1f, min %.1f, max %.1f (30 requests)", s, first * 1000,
           t[int((NR + 1) / 2)], t[1], t[NR] }' >&2
       awk '/^Rss:/ { printf "; sirenad %s %d MiB", $1, $2 / 1024 } END { print "" }' "/proc/$SIRENAD_PID/smaps_rollup" >&2 ;;
    b) burn=()
       for _ in $(seq "$(nproc)"); do timeout "$IDLE" bash -c 'while :; do :; done' & burn+=("$!"); done
       wait "${burn[@]}" || true; since="$since+busy" ;;
    i) stop_sirenad; settle_redis "$WORK/redis.sock"; redis-cli -s "$WORK/redis.sock" flushall >/dev/null
       start_sirenad "$SIRENAD"; import; since=import ;;
    a)
      k=$((k + 1))
      reset_sims
      settle_redis "$WORK/redis.sock"
      la=$(cut -d' ' -f1 /proc/loadavg)
      # The machine's speed now (it varies): a fixed single-threaded hash-table workload, in ms.
      calib=$(python3 -c 'import time
t = time.perf_counter(); d = {}
for i in range(1500000): d[i * 2654435761 % 1000003] = i
print(round((time.perf_counter() - t) * 1000))')
      r0=$(cpu_ticks "$REDIS_PID") s0=$(( $(cpu_ticks "${SIM_PIDS[0]}") + $(cpu_ticks "${SIM_PIDS[1]}") )) b0=$(busy_ticks)
      if [[ -n ${DETAIL:-} ]]; then
        redis-cli -s "$WORK/redis.sock" config resetstat >/dev/null
        d0=$(proc_counts "$SIRENAD_PID")
      fi
      if [[ -n ${STRACE:-} ]]; then  # the alert's first 1.5 s of sirenad's I/O, timed
        timeout 1.5 strace -f -tt -T -e trace=${STRACE_SET:-read,readv,write,writev,sendmsg,recvfrom,sendto,epoll_wait,fsync,fdatasync} \
          -o "$WORK/strace-$k.txt" -p "$SIRENAD_PID" 2>/dev/null &
        # The alert starts once strace is attached (sirenad's TracerPid is set).
        wait_for strace 5 "$!" bash -c "! grep -q '^TracerPid:[[:space:]]*0$' /proc/$SIRENAD_PID/status"
      fi
      if [[ -n ${PERF:-} ]]; then
        perf record -g -o "$WORK/perf-$k.data" -p "$SIRENAD_PID" >/dev/null 2>&1 & PERF_PID=$!
        wait_for perf 5 "$PERF_PID" test -s "$WORK/perf-$k.data"  # its header is written once it records
      fi
      out=$(node "$HERE/alert.js" "http://127.0.0.1:$PORT" "$SIRENAD_PID" "$HERE/flood.cap.xml" "seq-$$-$k" \
        "http://127.0.0.1:$APNS_ADMIN" "http://127.0.0.1:$FCM_ADMIN" "$WANT_APNS" "$WANT_FCM")
      [[ -z ${PERF:-} ]] || { kill -INT "$PERF_PID"; wait "$PERF_PID" || true; }
      echo "$out" >"$WORK/alert-$k.json"
      if [[ -n ${DETAIL:-} ]]; then
        read -r f0 v0 i0 <<<"$d0"; read -r f1 v1 i1 <<<"$(proc_counts "$SIRENAD_PID")"
        redis-cli -s "$WORK/redis.sock" info commandstats | tr -d '\r' >"$WORK/cmdstats-$k.txt"
        echo "  alert $k: sirenad minor faults $((f1 - f0)), voluntary switches $((v1 - v0)), involuntary $((i1 - i0)); Redis:" \
          "$(awk -F'[:,=]' '/^cmdstat_/ { sub(/cmdstat_/, "", $1); printf "%s %d calls %.0f ms (%.2f us/call); ", $1, $3, $5 / 1000, $7 }' \
             "$WORK/cmdstats-$k.txt")" >&2
      fi
      redis_s=$(secs $(( $(cpu_ticks "$REDIS_PID") - r0 )))
      sims_s=$(secs $(( $(cpu_ticks "${SIM_PIDS[0]}") + $(cpu_ticks "${SIM_PIDS[1]}") - s0 )))
      machine_s=$(secs $(( $(busy_ticks) - b0 )))
      sa=$(curl -fs "http://127.0.0.1:$APNS_ADMIN/stats") sf=$(curl -fs "http://127.0.0.1:$FCM_ADMIN/stats")
      dup=$(( $(field duplicates <<<"$sa") + $(field duplicates <<<"$sf") ))
      uniq=$(( $(field unique_recipients <<<"$sa") + $(field unique_recipients <<<"$sf") ))
      ((dup == 0 && uniq == WANT_APNS + WANT_FCM)) || status=1
      done_ms=$(field done_ms <<<"$out")
      [[ -n $done_ms ]] || { echo "seq: the alert did not complete: $out" >&2; exit 1; }
      rss=$(awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$SIRENAD_PID/status")
      awk -v k="$k" -v s="$since" -v f="$(field first_metric_ms <<<"$out")" -v d="$done_ms" -v n="$N" \
        -v c="$(field cpu_s <<<"$out")" -v r="$redis_s" -v m="$sims_s" -v rss="$rss" -v dup="$dup" -v u="$uniq" -v la="$la" -v calib="$calib" -v ms="$machine_s" \
        'BEGIN { o = ms - c - r - m; printf "| %d | %s | %s | %s | %.1f | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %s | %d | %d |\n", k, s, la, calib, f, d, n / (d / 1000), c, r, m, (o > 0 ? o : 0), rss, dup, u }'
      [[ -z ${TIMELINE:-} ]] || node -e 'let p = [0, 0]; for (const [t, n] of JSON.parse(require("fs").readFileSync(0)).timeline) {
          console.log(`  ${t} ms ${n} accepted ${Math.round((n - p[1]) / (t - p[0]) * 1000)}/s`); p = [t, n] }' <<<"$out" >&2
      since=alert ;;
  esac
done
exit $status
