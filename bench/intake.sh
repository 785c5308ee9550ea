#!/usr/bin/env bash
# Intake benchmark: durable CAP alerts per second through POST /v1/alerts.
#
# Starts sirenad with its managed Redis (AOF, appendfsync always: a 202 means the alert
# is on disk) in a temporary directory, then drives it with wrk on the same machine:
#   1. GET /healthz, the HTTP ceiling of the same daemon (baseline, same -c/-t/-d);
#   2. POST /v1/alerts, each request a CAP 1.2 alert with a unique <identifier>.
# It prints a markdown table: alerts/s, p50/p99, % of the baseline, CPU per 1000
# requests for sirenad and redis-server, and the goal (5000 alerts/s).
#
# Exit status: 0 whether or not the goal is met (a benchmark reports); 1 when alerts
# were lost (202s counted by sirenad != alerts in Redis) or any request failed.
#
# Usage: bench/intake.sh [-d DURATION] [-c CONNECTIONS] [-t THREADS]
#   or env DURATION (10s), CONNECTIONS (32), THREADS (2), PORT (a free one), GOAL (5000),
#   APPENDFSYNC (always; everysec only to see what the fsync per write costs),
#   SIRENAD (build/bin/sirenad, built if missing; another binary to compare builds).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10s} CONNECTIONS=${CONNECTIONS:-32} THREADS=${THREADS:-2} GOAL=${GOAL:-5000}
while getopts "d:c:t:h" opt; do
  case $opt in
    d) DURATION=$OPTARG ;;
    c) CONNECTIONS=$OPTARG ;;
    t) THREADS=$OPTARG ;;
    *) sed -n '2,18s/^# \{0,1\}//p' "$0"; exit 2 ;;
  esac
done

die() { echo "intake: $*" >&2; exit 1; }
for tool in wrk curl redis-cli redis-server; do command -v $tool >/dev/null || die "$tool is not installed"; done

SIRENAD=${SIRENAD:-$ROOT/build/bin/sirenad}
if [[ ! -x $SIRENAD && $SIRENAD == "$ROOT/build/bin/sirenad" ]]; then
  echo "intake: building sirenad" >&2
  cmake -S "$ROOT" -B "$ROOT/build" -G Ninja >&2 && ninja -C "$ROOT/build" -j2 sirenad >&2
fi

WORK=$(mktemp -d /tmp/sirena-intake.XXXXXX)
SOCK=$WORK/redis/redis.sock
SIRENAD_PID="" REDIS_PID=""
cleanup() {
  # sirenad stops its managed Redis on SIGTERM; Redis is killed directly only if it outlives it.
  if [[ -n $SIRENAD_PID ]] && kill -TERM "$SIRENAD_PID" 2>/dev/null; then
    for _ in $(seq 50); do kill -0 "$SIRENAD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SIRENAD_PID" 2>/dev/null || true
    wait "$SIRENAD_PID" 2>/dev/null || true
  fi
  # A sirenad that fails after spawning Redis leaves it running; its log names the pid.
  [[ -n $REDIS_PID ]] || REDIS_PID=$(sed -n 's/.*"managed_redis_started".*"pid":\([0-9]*\).*/\1/p' "$WORK/sirenad.log" 2>/dev/null || true)
  ours() { grep -qs "$WORK" "/proc/$REDIS_PID/cmdline"; }  # false once it exits (or is a zombie)
  if [[ -n $REDIS_PID ]] && ours; then
    kill -TERM "$REDIS_PID" 2>/dev/null || true
    for _ in $(seq 50); do ours || break; sleep 0.1; done
    ! ours || kill -KILL "$REDIS_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
  echo $((20000 + RANDOM % 20000)))}
URL=http://127.0.0.1:$PORT
[[ $SIRENAD == /* ]] || SIRENAD=$PWD/$SIRENAD
# It measures intake capacity, not the rate-limit policy: lift http.limits (README) for it.
export SIRENA_HTTP_LIMITS_KEY_RATE=${SIRENA_HTTP_LIMITS_KEY_RATE:-0}
export SIRENA_HTTP_LIMITS_ADDRESS_RATE=${SIRENA_HTTP_LIMITS_ADDRESS_RATE:-0}
# From the repository root, as the demo config names some files relative to it (config/zones).
(cd "$ROOT" && SIRENA_HTTP_LISTEN=127.0.0.1:$PORT SIRENA_REDIS_URL=managed SIRENA_REDIS_MANAGED_DIR=$WORK/redis \
  SIRENA_REDIS_MANAGED_APPENDFSYNC=${APPENDFSYNC:-always} exec "$SIRENAD" --config config/demo.yaml) \
  >"$WORK/sirenad.log" 2>&1 &
SIRENAD_PID=$!

deadline=$((SECONDS + 20))
until curl -fs -o /dev/null "$URL/readyz"; do
  kill -0 "$SIRENAD_PID" 2>/dev/null || { tail -5 "$WORK/sirenad.log" >&2; die "sirenad exited during start-up"; }
  ((SECONDS < deadline)) || die "sirenad not ready after 20 s"
  sleep 0.05
done
REDIS_PID=$(redis-cli -s "$SOCK" INFO server | tr -d '\r' | sed -n 's/^process_id://p')
FSYNC=$(redis-cli -s "$SOCK" CONFIG GET appendfsync | tail -1)
AOF=$(redis-cli -s "$SOCK" CONFIG GET appendonly | tail -1)

# cpu_ticks PID: utime + stime, plus reaped children (Redis forks to rewrite its AOF).
cpu_ticks() { local s; s=$(<"/proc/$1/stat"); set -- ${s##*) }; echo $(( ${12} + ${13} + ${14} + ${15} )); }
# metric REGEX: the sum of the /metrics samples matching REGEX.
metric() { curl -fs "$URL/metrics" | awk -v re="$1" '$0 ~ re { s += $NF } END { printf "%d", s }'; }
received() { metric '^sirena_alerts_received_total\\{.*tenant="soliera"'; }
answered_not_202() {
  local all ok
  all=$(metric '^sirena_http_requests_total\\{.*route="/v1/alerts"') ok=$(metric '^sirena_http_requests_total\\{code="202",route="/v1/alerts"')
  echo $((all - ok))
}
durable() { redis-cli -s "$SOCK" ZCARD '{t:soliera}:alerts'; }
# busy_ticks: CPU time used by everything on the machine (user, nice, system, irq, softirq, steal).
busy_ticks() { local u n s x y z; read -r _ u n s _ _ x y z _ </proc/stat; echo $((u + n + s + x + y + z)); }
HZ=$(getconf CLK_TCK)

# run NAME URL [ENV...]: one wrk run; sets R_<field> from intake.lua's result line, plus CPU seconds.
run() {
  local name=$1 url=$2; shift 2
  local s0 r0 b0 line TIMEFORMAT='%U %S'
  s0=$(cpu_ticks "$SIRENAD_PID") r0=$(cpu_ticks "$REDIS_PID") b0=$(busy_ticks)
  { time env "$@" wrk -t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" -s "$ROOT/bench/intake.lua" "$url" \
      >"$WORK/$name.wrk" 2>&1; } 2>"$WORK/$name.time" || { cat "$WORK/$name.wrk" >&2; die "wrk failed ($name)"; }
  R_SIRENAD=$(( $(cpu_ticks "$SIRENAD_PID") - s0 )) R_REDIS=$(( $(cpu_ticks "$REDIS_PID") - r0 ))
  R_WRK=$(awk '{ printf "%.2f", $1 + $2 }' "$WORK/$name.time")
  # CPU that neither wrk, sirenad nor Redis used: another job on the machine skews the run.
  R_OTHER=$(awk -v b=$(( $(busy_ticks) - b0 - R_SIRENAD - R_REDIS )) -v w="$R_WRK" -v hz="$HZ" \
    'BEGIN { o = b / hz - w; printf "%.2f", (o > 0 ? o : 0) }')
  line=$(grep '^result ' "$WORK/$name.wrk") || { cat "$WORK/$name.wrk" >&2; die "no result from wrk ($name)"; }
  # The fields in intake.lua's done() order, names dropped.
  read -r _ R_requests R_duration_us R_p50_us R_p99_us _ R_err_connect R_err_read R_err_write R_err_timeout \
    R_err_status <<<"$(sed 's/ [a-z0-9_]*=/ /g' <<<"$line")"
  R_RPS=$(awk -v n="$R_requests" -v us="$R_duration_us" 'BEGIN { printf "%.0f", n / (us / 1e6) }')
  # wrk counts a response whose body ends at EOF (Connection: close, no length) both as a
  # request and as a read error, so "read" is reported apart, as connections closed.
  R_ERRORS=$((R_err_connect + R_err_write + R_err_timeout + R_err_status)) R_CLOSED=$R_err_read
}
ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }
per_k() { awk -v t="$1" -v n="$2" -v hz="$HZ" 'BEGIN { printf "%.3f", n ? t / hz / n * 1000 : 0 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f%%", b ? 100 * a / b : 0 }'; }

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
echo "intake: GET /healthz baseline, $DURATION ..." >&2
run healthz "$URL/healthz"
H_RPS=$R_RPS H_P50=$R_p50_us H_P99=$R_p99_us H_N=$R_requests H_ERR=$R_ERRORS H_CLOSED=$R_CLOSED
H_SIRENAD=$R_SIRENAD H_REDIS=$R_REDIS H_WRK=$R_WRK H_OTHER=$R_OTHER

echo "intake: POST /v1/alerts, $DURATION ..." >&2
CAP=$ROOT/config/examples/secchia-flood.cap.xml
before=$(received) not_202_before=$(answered_not_202)
run alerts "$URL/v1/alerts" INTAKE_CAP="$CAP" INTAKE_RUN="bench-$$-$(date +%s)"
# Requests in flight when wrk stopped may finish after it: wait until the daemon is quiet.
# A 202 is sent only once the alert is in Redis, so the counter is read before ZCARD.
deadline=$((SECONDS + 10))
while accepted=$(($(received) - before)) && stored=$(durable) && ((accepted != stored && SECONDS < deadline)); do
  sleep 0.1
done
# wrk cannot tell a 200 (idempotent duplicate, nothing new stored) from a 202: ask the server.
not_202=$(($(answered_not_202) - not_202_before))

status=0 lost_check=OK error_check=OK
((accepted == stored)) || lost_check=FAIL status=1
((R_ERRORS == 0 && H_ERR == 0 && not_202 == 0 && accepted >= R_requests)) || error_check=FAIL status=1
goal=$(awk -v r="$R_RPS" -v g="$GOAL" 'BEGIN { print (r >= g ? "PASS" : "FAIL") }')
# Capacity of one workload in CPU-seconds; other jobs taking over 10% of it make the numbers doubtful.
capacity=$(awk -v us="$R_duration_us" -v n="$(nproc)" 'BEGIN { printf "%.0f", us / 1e6 * n }')
quiet=$(awk -v a="$H_OTHER" -v b="$R_OTHER" -v c="$capacity" 'BEGIN { print (a > c / 10 || b > c / 10 ? "NO: rerun" : "yes") }')

cat <<EOF

## Sirena intake: durable CAP alerts through POST /v1/alerts

wrk $THREADS threads and $CONNECTIONS connections (HTTP/1.1), $DURATION per workload, on the same $(nproc) cores as sirenad
and redis-server, nothing pinned. "other CPU s" is what other processes used meanwhile (load average
before: $LOAD). Redis is managed by sirenad, over a unix socket: appendonly $AOF, appendfsync **$FSYNC**.
Each alert is ${CAP#"$ROOT"/} ($(wc -c <"$CAP") bytes, status Actual) with its own identifier.

| workload | req/s | p50 ms | p99 ms | vs /healthz | sirenad CPU s/1k req | redis CPU s/1k req | wrk CPU s | other CPU s | errors | conns closed by server |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
| GET /healthz (baseline: HTTP ceiling) | $H_RPS | $(ms "$H_P50") | $(ms "$H_P99") | 100% | $(per_k "$H_SIRENAD" "$H_N") | $(per_k "$H_REDIS" "$H_N") | $H_WRK | $H_OTHER | $H_ERR | $H_CLOSED |
| POST /v1/alerts (durable CAP alerts) | $R_RPS | $(ms "$R_p50_us") | $(ms "$R_p99_us") | $(pct "$R_RPS" "$H_RPS") | $(per_k "$R_SIRENAD" "$R_requests") | $(per_k "$R_REDIS" "$R_requests") | $R_WRK | $R_OTHER | $R_ERRORS | $R_CLOSED |

| check | result |
|---|---|
| durable: 202s counted by sirenad = alerts in Redis (ZCARD) | $accepted = $stored: **$lost_check** |
| every alert answered 202: no wrk errors, no other status at the server | $R_requests answered, $R_ERRORS errors, $not_202 not 202: **$error_check** |
| goal: at least $GOAL durable alerts/s | $R_RPS/s: **$goal** |
| quiet machine: other processes under 10% of the $capacity CPU-s per workload | $H_OTHER and $R_OTHER CPU-s: **$quiet** |
EOF
exit $status
