#!/usr/bin/env bash
# Fan-out benchmark: one CAP alert to N push recipients (70% APNs, 30% FCM) through sirenad
# and the loopback simulators, beside the ceiling (h2load) and two Node peers, in one run.
#
#   1. sirenad (h2c): redis-server as sirenad's managed one runs it (unix socket, AOF,
#      appendfsync always), sirena-sim apns and fcm over h2c, N recipients imported, then
#      POST /v1/alerts and watch until every message is accepted. Then sirenad again, same
#      Redis and recipients, with APNs over TLS (the simulator on 127.0.0.1:443; sirenad
#      verifies the self-signed certificate through SSL_CERT_FILE), a second alert.
#   2. the ceiling: h2load POSTing the same APNs requests (headers, JWT, payload, tokens) to
#      the same simulators, h2c and TLS, over 1, 2 and 4 connections.
#   3. the peers: the npm packages apns2 and @parse/node-apn (pinned in package.json,
#      installed here into node_modules) sending to the TLS simulator on port 443.
# It prints markdown tables and the issue's goals, PASS or FAIL.
#
# Exit status: 0 whether the goals are met or not (a benchmark reports); 1 when sirenad lost
# or duplicated a message (simulator unique_recipients != recipients, or duplicates > 0).
#
# Usage: bench/fanout/run.sh [N]      N recipients, default 1000000 (100000 for a quick run)
# Environment: PEER_N (messages per Node peer, default min(N, 100000): the rate is
#   extrapolated to N), FCM_RATE (sirenad's FCM token bucket, default 1000000/s: the simulator
#   has no quota; production keeps 9500/s), APPENDFSYNC (always, as managed Redis; everysec
#   only to see what the fsync per write-back costs), H2LOAD_STREAMS (-m, default 500), TLS_PORT (443),
#   SIRENAD, SIM (binaries, default build/bin), KEEP=1 keeps the work directory.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
N=${1:-1000000}
[[ $N =~ ^[0-9]+$ ]] && ((N >= 1000)) || { sed -n '2,24s/^# \{0,1\}//p' "$0"; exit 2; }
PEER_N=${PEER_N:-$((N < 100000 ? N : 100000))}
FCM_RATE=${FCM_RATE:-1000000} APPENDFSYNC=${APPENDFSYNC:-always} H2LOAD_STREAMS=${H2LOAD_STREAMS:-500} TLS_PORT=${TLS_PORT:-443}
SIRENAD=${SIRENAD:-$ROOT/build/bin/sirenad} SIM=${SIM:-$ROOT/build/bin/sirena-sim}
KEY=$ROOT/config/demo-keys/apns-demo.p8

BENCH=fanout
source "$ROOT/bench/lib.sh"  # die, say, PIDS, SIRENAD_PID, stop_pid, cleanup, free_port, wait_for, cpu_ticks, HZ, busy_ticks,
                             # settle_redis
for tool in curl node npm h2load openssl redis-server redis-cli python3 /usr/bin/time; do
  command -v $tool >/dev/null || die "$tool is not installed"
done
[[ -x $SIRENAD && -x $SIM ]] || die "build first: ninja -C build -j2 sirenad sirena-sim"

WORK=$(mktemp -d /tmp/sirena-fanout.XXXXXX)
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the peers' packages ------------------------------------------------------------------
if [[ ! -d $HERE/node_modules/apns2 || ! -d $HERE/node_modules/@parse/node-apn ]]; then
  say "installing the Node peers (npm)"
  (cd "$HERE" && if [[ -f package-lock.json ]]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi) >&2
fi
APNS2_VERSION=$(node -p "require('$HERE/node_modules/apns2/package.json').version")
NODE_APN_VERSION=$(node -p "require('$HERE/node_modules/@parse/node-apn/package.json').version")

# --- inputs -------------------------------------------------------------------------------
say "generating $N recipients and the h2load inputs"
mkdir -p "$WORK/recipients" "$WORK/redis"
read -r WANT_APNS WANT_FCM < <(node "$HERE/gen.js" recipients "$N" "$WORK/recipients" 50000)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
JWT=$(node "$HERE/gen.js" jwt "$KEY" DEMOKEY001 DEMOTEAM01)
node "$HERE/gen.js" payload "h2load-$$" >"$WORK/payload.json"

# --- Redis and the simulators ---------------------------------------------------------------
# As sirenad's managed Redis (daemon/store/managed_redis.cc), but ours, so that sirenad can restart.
redis-server --port 0 --unixsocket "$WORK/redis.sock" --unixsocketperm 700 --dir "$WORK/redis" \
  --appendonly yes --appendfsync "$APPENDFSYNC" --save "" --daemonize no --logfile "$WORK/redis.log" &
REDIS_PID=$!; PIDS+=("$REDIS_PID")
wait_for redis-server 10 "$REDIS_PID" redis-cli -s "$WORK/redis.sock" ping

start_sim() {  # start_sim VAR KIND PORT [ARGS...]: sets VAR_PID, VAR_ADMIN
  local var=$1 kind=$2 port=$3; shift 3
  local admin; admin=$(free_port)
  "$SIM" "$kind" --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" "$@" >"$WORK/sim-$var.log" 2>&1 &
  PIDS+=("$!")
  printf -v "${var}_PID" %s "$!"; printf -v "${var}_ADMIN" %s "http://127.0.0.1:$admin"
  wait_for "sirena-sim $kind ($var)" 10 "$!" curl -fs "http://127.0.0.1:$admin/stats"
}
APNS_PORT=$(free_port) FCM_PORT=$(free_port)
start_sim APNS apns "$APNS_PORT"
start_sim FCM fcm "$FCM_PORT"
TLS_OK=1
if python3 -c "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $TLS_PORT))" 2>/dev/null; then
  start_sim TLS apns "$TLS_PORT" --tls "$WORK/cert.pem" "$WORK/key.pem"
else
  TLS_OK=0; say "127.0.0.1:$TLS_PORT is taken: no TLS runs (apns2, node-apn, sirenad over TLS)"
fi
stats() { curl -fs "$1/stats"; }
reset_sims() { for a in "$@"; do curl -fs -X POST -o /dev/null "$a/reset"; done; }
field() { node -e 'const o = JSON.parse(require("fs").readFileSync(0)); const v = process.argv[1].split(".").reduce((a, k) => a == null ? a : a[k], o); console.log(v === undefined ? "" : v)' "$1"; }

# --- sirenad --------------------------------------------------------------------------------
SIRENAD_PORT=$(free_port)
SIRENAD_URL=http://127.0.0.1:$SIRENAD_PORT
start_sirenad() {  # start_sirenad NAME APNS_URL [ENV...]
  local name=$1 apns_url=$2; shift 2
  # From the repository root: the demo config names files relative to it.
  (cd "$ROOT" && exec env SIRENA_HTTP_LISTEN=127.0.0.1:$SIRENAD_PORT SIRENA_REDIS_URL=unix://$WORK/redis.sock \
    SIRENA_GATEWAYS_APNS_URL="$apns_url" SIRENA_GATEWAYS_FCM_URL=http://127.0.0.1:$FCM_PORT \
    SIRENA_GATEWAYS_FCM_TOKEN_URL=http://127.0.0.1:$FCM_PORT/token SIRENA_GATEWAYS_FCM_RATE="$FCM_RATE" \
    SIRENA_TENANTS_SOLIERA_APPROVAL_MIN_RECIPIENTS=1000000000 "$@" \
    "$SIRENAD" --config config/demo.yaml) >"$WORK/sirenad-$name.log" 2>&1 &
  SIRENAD_PID=$!
  LOG=$WORK/sirenad-$name.log wait_for sirenad 60 "$SIRENAD_PID" curl -fs "$SIRENAD_URL/readyz"
}
stop_sirenad() { stop_pid "$SIRENAD_PID"; SIRENAD_PID=""; }

# measure NAME: one alert through the running sirenad; sets S_<NAME>_* from alert.js and the sims.
measure() {
  local name=$1 apns_admin=$2 r0 f0 a0 b0 r1 f1 a1 b1 result
  reset_sims "$apns_admin" "$FCM_ADMIN"
  local apns_pid=$APNS_PID; [[ $apns_admin == "$APNS_ADMIN" ]] || apns_pid=$TLS_PID
  settle_redis "$WORK/redis.sock"
  r0=$(cpu_ticks "$REDIS_PID") a0=$(cpu_ticks "$apns_pid") f0=$(cpu_ticks "$FCM_PID") b0=$(busy_ticks)
  result=$(node "$HERE/alert.js" "$SIRENAD_URL" "$SIRENAD_PID" "$HERE/flood.cap.xml" "bench-$name-$$-$(date +%s)" \
    "$apns_admin" "$FCM_ADMIN" "$WANT_APNS" "$WANT_FCM") || die "alert.js failed ($name)"
  # Read the counters now: the node processes that parse the results below cost ~1 CPU s.
  r1=$(cpu_ticks "$REDIS_PID") a1=$(cpu_ticks "$apns_pid") f1=$(cpu_ticks "$FCM_PID") b1=$(busy_ticks)
  echo "$result" >"$WORK/alert-$name.json"
  local sa sf; sa=$(stats "$apns_admin") sf=$(stats "$FCM_ADMIN")
  local -A v=(
    [done_ms]=$(field done_ms <<<"$result") [apns_ms]=$(field apns_ms <<<"$result") [fcm_ms]=$(field fcm_ms <<<"$result")
    [first_metric_ms]=$(field first_metric_ms <<<"$result") [first_sim_ms]=$(field first_sim_ms <<<"$result")
    [post_ms]=$(field post_ms <<<"$result") [cpu_s]=$(field cpu_s <<<"$result") [hwm_kb]=$(field hwm_kb <<<"$result")
    [state]=$(field state <<<"$result") [planned]=$(field progress.apns.planned <<<"$result")
    [accepted_apns]=$(field progress.apns.accepted <<<"$result") [accepted_fcm]=$(field progress.fcm.accepted <<<"$result")
    [uniq_apns]=$(field unique_recipients <<<"$sa") [uniq_fcm]=$(field unique_recipients <<<"$sf")
    [dup]=$(( $(field duplicates <<<"$sa") + $(field duplicates <<<"$sf") ))
    [req_apns]=$(field requests <<<"$sa") [req_fcm]=$(field requests <<<"$sf")
    [redis_s]=$(awk -v t=$((r1 - r0)) -v hz=$HZ 'BEGIN { printf "%.2f", t / hz }')
    [apns_sim_s]=$(awk -v t=$((a1 - a0)) -v hz=$HZ 'BEGIN { printf "%.2f", t / hz }')
    [fcm_sim_s]=$(awk -v t=$((f1 - f0)) -v hz=$HZ 'BEGIN { printf "%.2f", t / hz }')
    [machine_s]=$(awk -v t=$((b1 - b0)) -v hz=$HZ 'BEGIN { printf "%.2f", t / hz }')
  )
  # CPU that none of the benchmark's processes used: another job on the machine skews the run.
  v[other_s]=$(awk -v m="${v[machine_s]}" -v a="${v[cpu_s]}" -v b="${v[redis_s]}" -v c="${v[apns_sim_s]}" -v d="${v[fcm_sim_s]}" \
    'BEGIN { o = m - a - b - c - d; printf "%.2f", (o > 0 ? o : 0) }')
  for k in "${!v[@]}"; do printf -v "S_${name}_$k" %s "${v[$k]}"; done
}

say "sirenad (h2c): importing $N recipients ($WANT_APNS APNs, $WANT_FCM FCM)"
start_sirenad h2c "http://127.0.0.1:$APNS_PORT"
t_import=$SECONDS
for f in "$WORK"/recipients/*.ndjson; do
  code=$(curl -s -o "$WORK/import.out" -w '%{http_code}' -X POST -H 'Authorization: Bearer demo-soliera-operator' \
    -H 'Content-Type: application/x-ndjson' --data-binary "@$f" "$SIRENAD_URL/v1/recipients/import")
  [[ $code == 200 ]] || die "import of $f: HTTP $code $(head -c 300 "$WORK/import.out")"
done
IMPORT_S=$((SECONDS - t_import))
say "sirenad (h2c): imported in ${IMPORT_S} s; fan-out"
measure h2c "$APNS_ADMIN"
RUNS=(h2c)
if ((TLS_OK)); then
  say "sirenad (APNs over TLS): restart on the same Redis; fan-out"
  stop_sirenad
  start_sirenad tls "https://127.0.0.1:$TLS_PORT" SSL_CERT_FILE="$WORK/cert.pem"
  measure tls "$TLS_ADMIN"
  RUNS+=(tls)
fi
stop_sirenad

# --- the ceiling: h2load --------------------------------------------------------------------
# h2load uses the URI list in the same order on each client, so with C clients each token is
# sent C times: the simulator counts repeats as duplicates, which cost it what new ones do.
H2_ROWS=()
h2load_run() {  # h2load_run NAME BASE_URL ADMIN CONNECTIONS
  local name=$1 base=$2 admin=$3 c=$4 out
  node "$HERE/gen.js" uris "$N" "$base" "$WORK/uris-$name.txt"
  reset_sims "$admin"
  /usr/bin/time -f '%U %S %M' -o "$WORK/h2load-$name.time" h2load -i "$WORK/uris-$name.txt" -n "$N" -c "$c" -t 1 \
    -m "$H2LOAD_STREAMS" -d "$WORK/payload.json" -H "authorization: bearer $JWT" -H 'apns-topic: it.comune.soliera.app' \
    -H 'apns-push-type: alert' -H 'apns-priority: 10' -H "apns-expiration: $(( $(date +%s) + 86400 ))" \
    -H "apns-collapse-id: h2load-$$" >"$WORK/h2load-$name.out" 2>&1 || { cat "$WORK/h2load-$name.out" >&2; die "h2load failed ($name)"; }
  out=$(<"$WORK/h2load-$name.out")
  local rps secs ok cpu rss dup
  # "finished in 718.36ms, 139205.78 req/s, ...": the unit is us, ms or s.
  read -r secs rps < <(awk '/^finished in/ { t = $3; sub(/,$/, "", t); u = t; gsub(/[0-9.]/, "", u); t += 0
    print (u == "ms" ? t / 1e3 : u == "us" ? t / 1e6 : t), $4 }' <<<"$out")
  [[ -n $rps ]] || { echo "$out" >&2; die "no result from h2load ($name)"; }
  ok=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
  read -r cpu rss < <(awk '{ printf "%.2f %d\n", $1 + $2, $3 }' "$WORK/h2load-$name.time")
  dup=$(stats "$admin" | field duplicates)
  H2_ROWS+=("$name|$c|$rps|$secs|$ok|$cpu|$rss|$dup")
  printf -v "H2_RPS_$name" %s "$rps"
}
say "h2load ceiling (h2c 1/2/4, TLS 1/4 connections)"
for c in 1 2 4; do h2load_run "h2c_c$c" "http://127.0.0.1:$APNS_PORT" "$APNS_ADMIN" "$c"; done
if ((TLS_OK)); then
  for c in 1 4; do h2load_run "tls_c$c" "https://127.0.0.1:$TLS_PORT" "$TLS_ADMIN" "$c"; done
fi

# --- the peers ------------------------------------------------------------------------------
PEER_ROWS=()
peer_run() {  # peer_run NAME CONNECTIONS WINDOW
  local name=$1 conns=$2 win=$3 out
  reset_sims "$TLS_ADMIN"
  out=$(NODE_TLS_REJECT_UNAUTHORIZED=0 node "$HERE/peer.js" "$name" "$PEER_N" "peer-$name-$$" "$KEY" "$TLS_PORT" \
    "$conns" "$win" 2>"$WORK/peer-$name.err") || { cat "$WORK/peer-$name.err" >&2; die "peer $name failed"; }
  echo "$out" >"$WORK/peer-$name.json"
  local s; s=$(stats "$TLS_ADMIN")
  PEER_ROWS+=("$name|$(field ok <<<"$out")|$(field failed <<<"$out")|$(field seconds <<<"$out")|$(field first_ms <<<"$out")|$(field cpu_s <<<"$out")|$(field maxrss_kb <<<"$out")|$(field duplicates <<<"$s")|$(field unique_recipients <<<"$s")|$(field error <<<"$out")")
}
if ((TLS_OK)); then
  say "peers: apns2 $APNS2_VERSION, @parse/node-apn $NODE_APN_VERSION, $PEER_N messages each"
  peer_run apns2 32 3200        # its own pool: 32 connections x 100 streams
  peer_run node-apn 2 2000      # as sirenad: 2 connections, 2000 in flight
fi

# --- report ---------------------------------------------------------------------------------
f1() { awk -v x="$1" 'BEGIN { printf "%.1f", x }'; }
f0() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }'; }  # messages, seconds
per100k() { awk -v c="$1" -v n="$2" 'BEGIN { printf "%.2f", (n ? c / n * 100000 : 0) }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }
status=0
declare -A RATE
cat <<EOF

## Sirena fan-out: $N push recipients ($WANT_APNS APNs, $WANT_FCM FCM) on loopback simulators

\`bench/fanout/run.sh $N\` on $(nproc) cores, nothing pinned; load average before: $(cut -d' ' -f1-3 /proc/loadavg).
sirenad: config/demo.yaml (2 connections and 2000 in flight per gateway), Redis as managed (unix socket,
appendfsync **$APPENDFSYNC**), **FCM rate limit raised to $FCM_RATE/s** (the simulator has no quota; production keeps
9500/s, which alone would make 300k FCM messages take 32 s). Times are from the POST /v1/alerts.
Node peers: apns2 $APNS2_VERSION, @parse/node-apn $NODE_APN_VERSION, $PEER_N messages each over TLS to the same
simulator (rates extrapolated to N when PEER_N < N). h2load: $(h2load --version | head -1 | cut -d' ' -f2), -m $H2LOAD_STREAMS, one thread.

| sender | messages | messages/s | time to 100% | first message ms | CPU s/100k | peak RSS | duplicates |
|---|---:|---:|---:|---:|---:|---:|---:|
EOF
for r in "${RUNS[@]}"; do
  eval "done_ms=\$S_${r}_done_ms first=\$S_${r}_first_metric_ms first_sim=\$S_${r}_first_sim_ms cpu=\$S_${r}_cpu_s hwm=\$S_${r}_hwm_kb dup=\$S_${r}_dup"
  RATE[$r]=$(rate "$N" "$(awk -v m="$done_ms" 'BEGIN { print m / 1000 }')")
  label="sirenad (APNs h2c, FCM h2c)"; [[ $r == tls ]] && label="sirenad (APNs TLS, FCM h2c)"
  echo "| $label | $N | ${RATE[$r]} | $(f0 "$done_ms") ms | $(f1 "$first") (sim saw ≤ $(f1 "$first_sim")) | $(per100k "$cpu" "$N") | $(mib "$hwm") | $dup |"
done
for row in "${H2_ROWS[@]}"; do
  IFS='|' read -r name c rps secs ok cpu rss dup <<<"$row"
  proto=${name%%_*}
  echo "| h2load ceiling (APNs ${proto^^}, $c connection$([[ $c == 1 ]] || echo s)) | $ok | $(f0 "$rps") | $(f0 "$(awk -v s="$secs" 'BEGIN { print s * 1000 }')") ms | – | $(per100k "$cpu" "$ok") | $(mib "$rss") | $dup (replayed URIs) |"
done
for row in "${PEER_ROWS[@]}"; do
  IFS='|' read -r name ok failed secs first cpu rss dup uniq err <<<"$row"
  RATE[$name]=$(rate "$ok" "$secs")
  extra=""; ((PEER_N < N)) && extra=" (N: $(f1 "$(awk -v n="$N" -v r="${RATE[$name]}" 'BEGIN { print n / r }')") s extrapolated)"
  label=$name; [[ $name == node-apn ]] && label=@parse/node-apn
  echo "| $label (APNs TLS) | $ok of $PEER_N$([[ $failed == 0 ]] || echo ", $failed failed: $err") | ${RATE[$name]} | $(f0 "$(awk -v s="$secs" 'BEGIN { print s * 1000 }')") ms$extra | $(f1 "$first") (incl. connect) | $(per100k "$cpu" "$ok") | $(mib "$rss") | $dup |"
done

cat <<EOF

Where the time and CPU went in the sirenad runs (the machine's 2 cores are shared by sirenad, Redis and both simulators):

| run | POST ms | APNs all accepted at | FCM all accepted at | completed at | APNs msg/s | sirenad CPU s | Redis CPU s | APNs sim CPU s | FCM sim CPU s | other processes CPU s | sirenad RSS |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
for r in "${RUNS[@]}"; do
  eval "p=\$S_${r}_post_ms a=\$S_${r}_apns_ms f=\$S_${r}_fcm_ms d=\$S_${r}_done_ms cpu=\$S_${r}_cpu_s rc=\$S_${r}_redis_s ac=\$S_${r}_apns_sim_s fc=\$S_${r}_fcm_sim_s m=\$S_${r}_other_s hwm=\$S_${r}_hwm_kb"
  echo "| $r | $(f1 "$p") | $(f0 "$a") ms | $(f0 "$f") ms | $(f0 "$d") ms | $(rate "$WANT_APNS" "$(awk -v m="$a" 'BEGIN { print m / 1000 }')") | $cpu | $rc | $ac | $fc | $m | $(mib "$hwm") |"
done
echo
echo "Import of $N recipients: $IMPORT_S s (not part of the fan-out)."

# --- checks and goals -----------------------------------------------------------------------
pf() { awk "BEGIN { exit !($1) }" && echo PASS || echo FAIL; }
echo
echo "| check | measured | result |"
echo "|---|---|---|"
for r in "${RUNS[@]}"; do
  eval "ua=\$S_${r}_uniq_apns uf=\$S_${r}_uniq_fcm dup=\$S_${r}_dup st=\$S_${r}_state"
  ok=PASS; [[ $ua == "$WANT_APNS" && $uf == "$WANT_FCM" && $dup == 0 && $st == completed ]] || { ok=FAIL; status=1; }
  echo "| correctness ($r): unique recipients = $WANT_APNS APNs + $WANT_FCM FCM, no duplicate, alert completed | $ua + $uf, $dup duplicates, $st | **$ok** |"
done
best=h2c; [[ -n ${RATE[tls]:-} ]] && best=tls
c2=${H2_RPS_h2c_c2:-0}
echo "| ≥ 50% of h2load's rate (sirenad h2c, all messages, vs h2load h2c 2 connections) | ${RATE[h2c]} vs $(f0 "$c2"): $(awk -v a="${RATE[h2c]}" -v b="$c2" 'BEGIN { printf "%.0f%%", (b ? 100 * a / b : 0) }') | **$(pf "${RATE[h2c]} >= 0.5 * $c2")** |"
if [[ -n ${H2_RPS_tls_c1:-} && -n ${RATE[tls]:-} ]]; then
  t1=$(awk -v a="$H2_RPS_tls_c1" -v b="${H2_RPS_tls_c4:-0}" 'BEGIN { print (a > b ? a : b) }')
  echo "| ≥ 50% of h2load's rate (sirenad APNs TLS, vs the best h2load TLS) | ${RATE[tls]} vs $(f0 "$t1"): $(awk -v a="${RATE[tls]}" -v b="$t1" 'BEGIN { printf "%.0f%%", 100 * a / b }') | **$(pf "${RATE[tls]} >= 0.5 * $t1")** |"
fi
if [[ -n ${RATE[apns2]:-} ]]; then
  peer=$(awk -v a="${RATE[apns2]}" -v b="${RATE[node-apn]}" 'BEGIN { print (a > b ? a : b) }')
  echo "| ≥ 10× the faster Node peer (sirenad $best vs $peer/s, both over TLS) | $(awk -v a="${RATE[$best]}" -v b="$peer" 'BEGIN { printf "%.1f×", a / b }') | **$(pf "${RATE[$best]} >= 10 * $peer")** |"
fi
eval "d=\$S_${best}_done_ms"
if ((N >= 1000000)); then
  echo "| 1M push accepted ≤ 5 s after the POST ($best) | $(f0 "$d") ms for $N | **$(pf "$d <= 5000")** |"
else
  x=$(awk -v d="$d" -v n="$N" 'BEGIN { printf "%.0f", d * 1000000 / n }')
  echo "| 1M push accepted ≤ 5 s after the POST ($best; **extrapolated** linearly from $N) | $(f0 "$d") ms → ~$x ms | **$(pf "$x <= 5000")** |"
fi
for r in "${RUNS[@]}"; do
  eval "first=\$S_${r}_first_metric_ms"
  echo "| first message ≤ 20 ms after the POST ($r, sirena_time_to_first_message_seconds) | $(f1 "$first") ms | **$(pf "$first <= 20")** |"
done
exit $status
