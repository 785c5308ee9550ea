#!/usr/bin/env bash
# Fan-out benchmark: one CAP alert to N push recipients (70% APNs, 30% FCM) through sirenad
# and the loopback simulators, beside the ceiling (h2load) and two Node peers, in one run.
#
#   1. sirenad (h2c): redis-server as sirenad's managed one runs it (unix socket, AOF,
#      appendfsync always), sirena-sim apns and fcm over h2c, N recipients imported, then
#      POST /v1/alerts and watch until every message is accepted.
#   2. the ceiling: h2load POSTing the same APNs requests (headers, JWT, payload, tokens) to
#      the same simulator over h2c, 2 connections, right after each sirenad alert: steps 1
#      and 2 alternate ROUNDS times, so that each ratio compares runs of the same minute (this
#      machine's speed varies by 30% and more from one minute to the next).
#   3. the same over TLS: sirenad restarted on the same Redis and recipients with APNs over
#      TLS (the simulator on 127.0.0.1:443; sirenad verifies the self-signed certificate
#      through SSL_CERT_FILE), alternating with h2load over TLS, 4 connections. Then h2load
#      once more with the other connection counts (h2c 1 and 4, TLS 1).
#   4. the peers: the npm packages apns2 and @parse/node-apn (pinned in package.json,
#      installed here into node_modules) sending to the TLS simulator on port 443.
# It prints markdown tables (each sirenad row is its kind's median round, by time to 100%)
# and the issue's goals, PASS or FAIL, on the medians of the rounds.
#
# Exit status: 0 whether the goals are met or not (a benchmark reports); 1 when sirenad lost
# or duplicated a message (simulator unique_recipients != recipients, or duplicates > 0).
#
# Usage: bench/fanout/run.sh [N]      N recipients, default 1000000 (100000 for a quick run)
# Environment: PEER_N (messages per Node peer, default min(N, 100000): the rate is
#   extrapolated to N), ROUNDS (sirenad alerts of each kind, each followed by h2load, default
#   3), FCM_RATE (sirenad's FCM token bucket, default 1000000/s: the simulator has no quota;
#   production keeps 9500/s), APPENDFSYNC (always, as managed Redis; everysec
#   only to see what the fsync per write-back costs), H2LOAD_STREAMS (-m, default 500), TLS_PORT (443),
#   SIRENAD, SIM (binaries, default build/bin), KEEP=1 keeps the work directory.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
N=${1:-1000000}
ROUNDS=${ROUNDS:-3}
[[ $N =~ ^[0-9]+$ && $ROUNDS =~ ^[1-9][0-9]*$ ]] && ((N >= 1000)) || { sed -n '2,30s/^# \{0,1\}//p' "$0"; exit 2; }
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

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
say "sirenad (h2c): importing $N recipients ($WANT_APNS APNs, $WANT_FCM FCM)"
start_sirenad h2c "http://127.0.0.1:$APNS_PORT"
t_import=$SECONDS
for f in "$WORK"/recipients/*.ndjson; do
  code=$(curl -s -o "$WORK/import.out" -w '%{http_code}' -X POST -H 'Authorization: Bearer demo-soliera-operator' \
    -H 'Content-Type: application/x-ndjson' --data-binary "@$f" "$SIRENAD_URL/v1/recipients/import")
  [[ $code == 200 ]] || die "import of $f: HTTP $code $(head -c 300 "$WORK/import.out")"
done
IMPORT_S=$((SECONDS - t_import))
say "sirenad (h2c): imported in ${IMPORT_S} s"

# --- the ceiling: h2load --------------------------------------------------------------------
# h2load uses the URI list in the same order on each client, so with C clients each token is
# sent C times: the simulator counts repeats as duplicates, which cost it what new ones do.
H2_ROWS=()
h2load_run() {  # h2load_run NAME BASE_URL ADMIN CONNECTIONS
  local name=$1 base=$2 admin=$3 c=$4 out uris=$WORK/uris-${1%%_*}.txt
  [[ -f $uris ]] || node "$HERE/gen.js" uris "$N" "$base" "$uris"
  reset_sims "$admin"
  /usr/bin/time -f '%U %S %M' -o "$WORK/h2load-$name.time" h2load -i "$uris" -n "$N" -c "$c" -t 1 \
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

# rounds KIND ADMIN H2_BASE H2_CONNECTIONS: ROUNDS sirenad alerts, each followed by h2load.
RUNS=()
rounds() {
  local kind=$1 admin=$2 base=$3 c=$4 r
  for r in $(seq 1 "$ROUNDS"); do
    say "round $r of $ROUNDS: sirenad ($kind) fan-out, then h2load ($kind, $c connections)"
    measure "${kind}_$r" "$admin"
    RUNS+=("${kind}_$r")
    h2load_run "${kind}_c${c}_$r" "$base" "$admin" "$c"
  done
}
rounds h2c "$APNS_ADMIN" "http://127.0.0.1:$APNS_PORT" 2
KINDS=(h2c)
if ((TLS_OK)); then
  say "sirenad (APNs over TLS): restart on the same Redis"
  stop_sirenad
  start_sirenad tls "https://127.0.0.1:$TLS_PORT" SSL_CERT_FILE="$WORK/cert.pem"
  rounds tls "$TLS_ADMIN" "https://127.0.0.1:$TLS_PORT" 4
  KINDS+=(tls)
fi
stop_sirenad
say "h2load with the other connection counts (h2c 1 and 4, TLS 1)"
for c in 1 4; do h2load_run "h2c_c$c" "http://127.0.0.1:$APNS_PORT" "$APNS_ADMIN" "$c"; done
((TLS_OK)) && h2load_run "tls_c1" "https://127.0.0.1:$TLS_PORT" "$TLS_ADMIN" 1

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
get() { local v="S_$1_$2"; echo "${!v}"; }  # get RUN FIELD: what measure() recorded
med() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
# mid KIND: the round of KIND whose time to 100% is the median; the main table shows it whole.
mid() { local r; for r in "${RUNS[@]}"; do [[ $r == "$1"_* ]] || continue; echo "$(get "$r" done_ms) $r"; done |
  sort -g | awk '{ a[NR] = $2 } END { print a[int((NR + 1) / 2)] }'; }
declare -A RATE
for r in "${RUNS[@]}"; do RATE[$r]=$(rate "$N" "$(awk -v m="$(get "$r" done_ms)" 'BEGIN { print m / 1000 }')"); done
h2_of() { case $1 in h2c_*) echo "h2c_c2_${1#h2c_}" ;; tls_*) echo "tls_c4_${1#tls_}" ;; esac; }  # the h2load run after it
ratio_of() { local v; v="H2_RPS_$(h2_of "$1")"; awk -v a="${RATE[$1]}" -v b="${!v}" 'BEGIN { printf "%.3f", (b ? a / b : 0) }'; }
cat <<EOF

## Sirena fan-out: $N push recipients ($WANT_APNS APNs, $WANT_FCM FCM) on loopback simulators

\`bench/fanout/run.sh $N\` on $(nproc) cores, nothing pinned; load average before: $LOAD_BEFORE.
sirenad: config/demo.yaml (2 connections and 2000 in flight per gateway), Redis as managed (unix socket,
appendfsync **$APPENDFSYNC**), **FCM rate limit raised to $FCM_RATE/s** (the simulator has no quota; production keeps
9500/s, which alone would make 300k FCM messages take 32 s). Times are from the POST /v1/alerts.
$ROUNDS rounds of each kind, each sirenad alert followed by h2load; a sirenad row is the round with the median time to 100%.
Node peers: apns2 $APNS2_VERSION, @parse/node-apn $NODE_APN_VERSION, $PEER_N messages each over TLS to the same
simulator (rates extrapolated to N when PEER_N < N). h2load: $(h2load --version | head -1 | cut -d' ' -f2), -m $H2LOAD_STREAMS, one thread.

| sender | messages | messages/s | time to 100% | first message ms | CPU s/100k | peak RSS | duplicates |
|---|---:|---:|---:|---:|---:|---:|---:|
EOF
for kind in "${KINDS[@]}"; do
  r=$(mid "$kind")
  label="sirenad (APNs h2c, FCM h2c)"; [[ $kind == tls ]] && label="sirenad (APNs TLS, FCM h2c)"
  echo "| $label, median round | $N | ${RATE[$r]} | $(f0 "$(get "$r" done_ms)") ms | $(f1 "$(get "$r" first_metric_ms)") (sim saw ≤ $(f1 "$(get "$r" first_sim_ms)")) | $(per100k "$(get "$r" cpu_s)" "$N") | $(mib "$(get "$r" hwm_kb)") | $(get "$r" dup) |"
done
for row in "${H2_ROWS[@]}"; do
  IFS='|' read -r name c rps secs ok cpu rss dup <<<"$row"
  proto=${name%%_*} round=""; [[ $name =~ _c[0-9]+_([0-9]+)$ ]] && round=", round ${BASH_REMATCH[1]}"
  echo "| h2load ceiling (APNs ${proto^^}, $c connection$([[ $c == 1 ]] || echo s)$round) | $ok | $(f0 "$rps") | $(f0 "$(awk -v s="$secs" 'BEGIN { print s * 1000 }')") ms | – | $(per100k "$cpu" "$ok") | $(mib "$rss") | $dup (replayed URIs) |"
done
for row in "${PEER_ROWS[@]}"; do
  IFS='|' read -r name ok failed secs first cpu rss dup uniq err <<<"$row"
  RATE[$name]=$(rate "$ok" "$secs")
  extra=""; ((PEER_N < N)) && extra=" (N: $(f1 "$(awk -v n="$N" -v r="${RATE[$name]}" 'BEGIN { print n / r }')") s extrapolated)"
  label=$name; [[ $name == node-apn ]] && label=@parse/node-apn
  echo "| $label (APNs TLS) | $ok of $PEER_N$([[ $failed == 0 ]] || echo ", $failed failed: $err") | ${RATE[$name]} | $(f0 "$(awk -v s="$secs" 'BEGIN { print s * 1000 }')") ms$extra | $(f1 "$first") (incl. connect) | $(per100k "$cpu" "$ok") | $(mib "$rss") | $dup |"
done

cat <<EOF

Each round: the sirenad alert, then h2load in the same minute (h2c on 2 connections, TLS on 4), and
where the time and CPU went (the machine's 2 cores are shared by sirenad, Redis and both simulators):

| round | time to 100% | messages/s | h2load msg/s | sirenad / h2load | first message ms | POST ms | APNs all accepted at | FCM all accepted at | sirenad CPU s | Redis CPU s | APNs sim CPU s | FCM sim CPU s | other processes CPU s | sirenad RSS |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
for r in "${RUNS[@]}"; do
  h2="H2_RPS_$(h2_of "$r")"
  echo "| $r | $(f0 "$(get "$r" done_ms)") ms | ${RATE[$r]} | $(f0 "${!h2}") | $(awk -v x="$(ratio_of "$r")" 'BEGIN { printf "%.0f%%", 100 * x }') | $(f1 "$(get "$r" first_metric_ms)") | $(f1 "$(get "$r" post_ms)") | $(f0 "$(get "$r" apns_ms)") ms | $(f0 "$(get "$r" fcm_ms)") ms | $(get "$r" cpu_s) | $(get "$r" redis_s) | $(get "$r" apns_sim_s) | $(get "$r" fcm_sim_s) | $(get "$r" other_s) | $(mib "$(get "$r" hwm_kb)") |"
done
echo
echo "Import of $N recipients: $IMPORT_S s (not part of the fan-out)."

# --- checks and goals (medians of the rounds) ------------------------------------------------
pf() { awk "BEGIN { exit !($1) }" && echo PASS || echo FAIL; }
of_kind() {  # of_kind KIND FIELD: the rounds' values, one a line (FIELD ratio: sirenad / h2load)
  local r
  for r in "${RUNS[@]}"; do
    [[ $r == "$1"_* ]] || continue
    if [[ $2 == ratio ]]; then ratio_of "$r"; echo; else get "$r" "$2"; fi
  done
}
rounds_of() { of_kind "$1" "$2" | awk -v pct="${3:-0}" '{ printf "%s%.0f%s", (NR > 1 ? ", " : ""), (pct ? 100 * $1 : $1), (pct ? "%" : "") }'; }
echo
echo "| check | measured | result |"
echo "|---|---|---|"
for r in "${RUNS[@]}"; do
  ua=$(get "$r" uniq_apns) uf=$(get "$r" uniq_fcm) dup=$(get "$r" dup) st=$(get "$r" state)
  ok=PASS; [[ $ua == "$WANT_APNS" && $uf == "$WANT_FCM" && $dup == 0 && $st == completed ]] || { ok=FAIL; status=1; }
  echo "| correctness ($r): unique recipients = $WANT_APNS APNs + $WANT_FCM FCM, no duplicate, alert completed | $ua + $uf, $dup duplicates, $st | **$ok** |"
done
for kind in "${KINDS[@]}"; do
  x=$(of_kind "$kind" ratio | med) what="h2c, vs h2load h2c on 2 connections"
  [[ $kind == tls ]] && what="APNs TLS, vs h2load TLS on 4 connections"
  echo "| ≥ 50% of h2load's rate (sirenad $what; median of the rounds' ratios) | $(awk -v x="$x" 'BEGIN { printf "%.0f%%", 100 * x }') ($(rounds_of "$kind" ratio 1)) | **$(pf "$x >= 0.5")** |"
done
if [[ -n ${RATE[apns2]:-} && -n ${RATE[tls_1]:-} ]]; then  # the peers speak TLS: so does sirenad's APNs here
  tls_rate=$(rate "$N" "$(awk -v m="$(of_kind tls done_ms | med)" 'BEGIN { print m / 1000 }')")
  peer=$(awk -v a="${RATE[apns2]}" -v b="${RATE[node-apn]}" 'BEGIN { print (a > b ? a : b) }')
  echo "| ≥ 10× the faster Node peer (sirenad tls median, $tls_rate/s, vs $peer/s, both over TLS) | $(awk -v a="$tls_rate" -v b="$peer" 'BEGIN { printf "%.1f×", a / b }') | **$(pf "$tls_rate >= 10 * $peer")** |"
fi
for kind in "${KINDS[@]}"; do
  d=$(of_kind "$kind" done_ms | med)
  if ((N >= 1000000)); then
    echo "| 1M push accepted ≤ 5 s after the POST ($kind median) | $(f0 "$d") ms for $N ($(rounds_of "$kind" done_ms)) | **$(pf "$d <= 5000")** |"
  else
    x=$(awk -v d="$d" -v n="$N" 'BEGIN { printf "%.0f", d * 1000000 / n }')
    echo "| 1M push accepted ≤ 5 s after the POST ($kind median; **extrapolated** linearly from $N) | $(f0 "$d") ms → ~$x ms | **$(pf "$x <= 5000")** |"
  fi
done
for kind in "${KINDS[@]}"; do
  first=$(of_kind "$kind" first_metric_ms | med)
  echo "| first message ≤ 20 ms after the POST ($kind median, sirena_time_to_first_message_seconds) | $(f1 "$first") ms ($(rounds_of "$kind" first_metric_ms)) | **$(pf "$first <= 20")** |"
done
exit $status
