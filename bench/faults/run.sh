#!/usr/bin/env bash
# Fault campaign (issue 14): one alert per fault scenario through sirenad, on loopback, with
# about N push recipients (70% APNs, 30% FCM, as bench/fanout) and NSMS phone-only ones, and
# one markdown table row per scenario, each number against its bound:
#
#   baseline        no fault
#   redis-kill      Redis kill -9 after ~20% accepted, restarted on the same AOF directory
#   redis-stop      Redis SIGSTOP for STOP_S (5) s, longer than redis.command_timeout_ms (2000), then SIGCONT
#   sirenad-kill    sirenad kill -9 after ~20% accepted, restarted on the same Redis
#   gateway-faults  the push simulators restarted with --fail 503:0.05 --fail 429:0.01
#                   --goaway-every 500 --reset-every 2000, for a whole alert
#   cancel-push     cancel after ~20% accepted (APNs and FCM): what arrived after the 200
#   cancel-sms      the same through the SMS gateway (kannel profile, sirena-sim sms, 500/s)
#   burst           BURST_S (10) s of small alerts (wrk, 32 connections, no recipient each),
#                   then one real alert: time from its POST to its first message
#
# Columns: planned (progress.*.planned), unique received (the simulators' unique_recipients),
# lost (planned - unique; a cancel's are expected), duplicates (the simulators') against the
# bound, progress == simulators (progress.<channel>.accepted = that simulator's unique
# recipients, and pending 0 once the alert is final), time to recover (from the fault's end:
# to the first new message, and to the alert's last), verdict. Bounds:
#   duplicates per crash (Redis or sirenad): APNs + FCM max_in_flight + dispatch.max_unconfirmed
#     + 2048 (one write-back batch); per connection reset of a simulator: that gateway's
#     max_in_flight; no fault: 0;
#   after a cancel's 200: each gateway's in-flight window (push: max_in_flight requests;
#     SMS: max_in_flight x batch_size numbers);
#   time to recover, from the fault's end to the alert's final state (every message sent):
#     RECOVER_BOUND_S (30); the burst's first message: 2 s after the POST.
#
# Exit status: 1 if any verdict is FAIL (or the set-up fails), else 0.
#
# Usage: bench/faults/run.sh [--short] [N]   N push recipients, default 100000; --short: N=5000,
#   a 3 s burst, smaller windows, dispatch batches of 100 with 4 in work, the push gateways
#   paced to ~PACE_S (3) s an alert (for CI)
# Environment: NSMS (phone-only recipients, default 5000; --short 1500), APNS_IN_FLIGHT,
#   FCM_IN_FLIGHT (2000; --short 256), MAX_UNCONFIRMED (10000; --short 1000), DISPATCH_BATCH
#   (1000; --short 100), MAX_BATCHES (64; --short 4), STOP_S (5),
#   BURST_S (10; --short 3), BURST_FIRST_BOUND_MS (2000), RECOVER_BOUND_S (30),
#   FINAL_TIMEOUT_S (180; --short 60), SCENARIOS (the names above, space-separated: a subset),
#   SIRENAD, SIM (binaries, default build/bin), KEEP=1 (keep the work directory and its logs).
set -euo pipefail

FAULTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$FAULTS/../.." && pwd)
SHORT=0
[[ ${1:-} == --short ]] && { SHORT=1; shift; }
usage() { sed -n '2,43s/^# \{0,1\}//p' "$0"; exit 2; }
if ((SHORT)); then N=${1:-5000}; else N=${1:-100000}; fi
if ! [[ $N =~ ^[0-9]+$ ]] || ((N < 1000)); then usage; fi
# The SMS gateway's rate (500/s) lets its first second go at once: the cancel needs more.
if ((SHORT)); then NSMS=${NSMS:-1500}; else NSMS=${NSMS:-5000}; fi
if ((SHORT)); then
  APNS_IN_FLIGHT=${APNS_IN_FLIGHT:-256} FCM_IN_FLIGHT=${FCM_IN_FLIGHT:-256} MAX_UNCONFIRMED=${MAX_UNCONFIRMED:-1000}
  BURST_S=${BURST_S:-3} FINAL_TIMEOUT_S=${FINAL_TIMEOUT_S:-60} PACE_S=${PACE_S:-3}
  # Batches claimed all through the fan-out, as with 100 batches of 1000 against 64 in work at
  # N = 100000; 5 batches of 1000 would all be claimed before any fault.
  DISPATCH_BATCH=${DISPATCH_BATCH:-100} MAX_BATCHES=${MAX_BATCHES:-4}
else
  DISPATCH_BATCH=${DISPATCH_BATCH:-1000} MAX_BATCHES=${MAX_BATCHES:-64}
  APNS_IN_FLIGHT=${APNS_IN_FLIGHT:-2000} FCM_IN_FLIGHT=${FCM_IN_FLIGHT:-2000} MAX_UNCONFIRMED=${MAX_UNCONFIRMED:-10000}
  BURST_S=${BURST_S:-10} FINAL_TIMEOUT_S=${FINAL_TIMEOUT_S:-180} PACE_S=${PACE_S:-0}
fi
STOP_S=${STOP_S:-5} BURST_FIRST_BOUND_MS=${BURST_FIRST_BOUND_MS:-2000} RECOVER_BOUND_S=${RECOVER_BOUND_S:-30}
COMMAND_TIMEOUT_MS=2000 SMS_BATCH=100 SMS_IN_FLIGHT=16 SMS_RATE=500 WRITE_BACK_BATCH=2048
SIRENAD=${SIRENAD:-$ROOT/build/bin/sirenad} SIM=${SIM:-$ROOT/build/bin/sirena-sim}
SCENARIOS=${SCENARIOS:-baseline redis-kill redis-stop sirenad-kill gateway-faults cancel-push cancel-sms burst}

BENCH=faults
source "$ROOT/bench/lib.sh"  # die, say, PIDS, SIRENAD_PID, stop_pid, forget_pid, cleanup, free_port, wait_for
for tool in curl jq node wrk redis-server redis-cli python3; do
  command -v $tool >/dev/null || die "$tool is not installed (scripts/deps.sh)"
done
[[ -x $SIRENAD && -x $SIM ]] || die "build first: ninja -C build -j2 sirenad sirena-sim"

WORK=$(mktemp -d /tmp/sirena-faults.XXXXXX)
# A Redis left stopped by an interrupted run would not see the TERM.
trap '[[ -z ${REDIS_PID:-} ]] || kill -CONT "$REDIS_PID" 2>/dev/null; cleanup' EXIT
trap 'exit 130' INT TERM
# Copies: a rebuild of the tree during the run changes nothing.
mkdir -p "$WORK/bin"
cp "$SIRENAD" "$WORK/bin/sirenad"; cp "$SIM" "$WORK/bin/sirena-sim"
BUILT="$(date -u -r "$SIRENAD" '+%Y-%m-%d %H:%M UTC') in a tree at $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')"
SIRENAD=$WORK/bin/sirenad SIM=$WORK/bin/sirena-sim
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# --- sirenad's settings: what the bounds are computed from -------------------------------------
if ((SHORT && PACE_S > 0)); then
  # N = 5000 would take a fraction of a second: the faults could not land mid fan-out.
  APNS_RATE=$((N * 7 / 10 / PACE_S + 1)) FCM_RATE=$((N * 3 / 10 / PACE_S + 1))
else
  APNS_RATE=0 FCM_RATE=${FCM_RATE:-1000000}  # no limit (the simulators have no quota)
fi
# No request rate limits (http.limits): the burst is to load intake and dispatch, not the limiter.
export SIRENA_HTTP_LIMITS_KEY_RATE=0 SIRENA_HTTP_LIMITS_ADDRESS_RATE=0
export SIRENA_REDIS_COMMAND_TIMEOUT_MS=$COMMAND_TIMEOUT_MS SIRENA_DISPATCH_MAX_UNCONFIRMED=$MAX_UNCONFIRMED \
  SIRENA_DISPATCH_BATCH_SIZE=$DISPATCH_BATCH SIRENA_DISPATCH_MAX_BATCHES=$MAX_BATCHES \
  SIRENA_GATEWAYS_APNS_MAX_IN_FLIGHT=$APNS_IN_FLIGHT SIRENA_GATEWAYS_FCM_MAX_IN_FLIGHT=$FCM_IN_FLIGHT \
  SIRENA_GATEWAYS_APNS_RATE=$APNS_RATE \
  SIRENA_GATEWAYS_SMS_PROFILE=kannel SIRENA_GATEWAYS_SMS_BATCH_SIZE=$SMS_BATCH \
  SIRENA_GATEWAYS_SMS_MAX_IN_FLIGHT=$SMS_IN_FLIGHT SIRENA_GATEWAYS_SMS_RATE=$SMS_RATE SIRENA_GATEWAYS_SMS_DLR_URL=
# No delivery reports (the simulator sends none): progress.sms.accepted stays what it accepted.
CRASH_BOUND=$((APNS_IN_FLIGHT + FCM_IN_FLIGHT + MAX_UNCONFIRMED + WRITE_BACK_BATCH))

# --- Redis, the push simulators, recipients: bench/fanout/setup.sh ------------------------------
say "generating $N push recipients and $NSMS phone-only ones; starting Redis and the simulators"
HERE=$ROOT/bench/fanout APPENDFSYNC=always
source "$ROOT/bench/fanout/setup.sh"  # WANT_APNS, WANT_FCM, REDIS_PID, ports, start_sirenad, import_recipients
HERE=$FAULTS
start_redis() {  # as setup.sh, on the same directory (the AOF)
  redis-server --port 0 --unixsocket "$WORK/redis.sock" --unixsocketperm 700 --dir "$WORK/redis" --appendonly yes \
    --appendfsync "$APPENDFSYNC" --save "" --daemonize no --logfile "$WORK/redis.log" &
  REDIS_PID=$!; PIDS+=("$REDIS_PID")
}
start_sims() {  # start_sims [FAULT ARGS...]: sirena-sim apns and fcm, as setup.sh's, with these options
  "$SIM" apns --listen "127.0.0.1:$APNS_PORT" --admin "127.0.0.1:$APNS_ADMIN" "$@" >>"$WORK/apns.log" 2>&1 &
  SIM_PIDS=("$!")
  "$SIM" fcm --listen "127.0.0.1:$FCM_PORT" --admin "127.0.0.1:$FCM_ADMIN" "$@" >>"$WORK/fcm.log" 2>&1 & SIM_PIDS+=("$!")
  PIDS+=("${SIM_PIDS[@]}")
  wait_for "sirena-sim apns" 30 "${SIM_PIDS[0]}" curl -fs "http://127.0.0.1:$APNS_ADMIN/stats"
  wait_for "sirena-sim fcm" 30 "${SIM_PIDS[1]}" curl -fs "http://127.0.0.1:$FCM_ADMIN/stats"
}
start_sims
SMS_PORT=$(free_port) SMS_ADMIN=$(free_port)
"$SIM" sms --listen "127.0.0.1:$SMS_PORT" --admin "127.0.0.1:$SMS_ADMIN" >>"$WORK/sms.log" 2>&1 &
SMS_PID=$!; PIDS+=("$SMS_PID")
wait_for "sirena-sim sms" 30 "$SMS_PID" curl -fs "http://127.0.0.1:$SMS_ADMIN/stats"
export SIRENA_GATEWAYS_SMS_URL=http://127.0.0.1:$SMS_PORT/cgi-bin/sendsms

# Phone-only recipients in a corner south of the push recipients: only the SMS alert's polygon
# covers it. The burst's polygon covers nobody.
POLY_PUSH="44.72,10.90 44.72,10.95 44.76,10.95 44.76,10.90 44.72,10.90"
POLY_SMS="44.699,10.914 44.699,10.926 44.706,10.926 44.706,10.914 44.699,10.914"
POLY_EMPTY="44.710,10.960 44.710,10.961 44.711,10.961 44.711,10.960 44.710,10.960"
awk -v n="$NSMS" 'BEGIN {
  for (i = 0; i < n; ++i)
    printf "{\"id\":\"s-%d\",\"phone\":\"+39333%07d\",\"language\":\"it\",\"topics\":[\"Met\"],\"locations\":[{\"lat\":%.6f,\"lon\":%.6f}]}\n",
      i, 1000000 + i, 44.7000 + (i * 7919 % 5000) / 1e6, 10.9150 + (i * 104729 % 10000) / 1e6
}' >"$WORK/recipients/sms.ndjson"
CAP_PUSH=$ROOT/bench/fanout/flood.cap.xml
sed "s/$POLY_PUSH/$POLY_SMS/" "$CAP_PUSH" >"$WORK/sms.cap.xml"
sed "s/$POLY_PUSH/$POLY_EMPTY/" "$CAP_PUSH" >"$WORK/burst.cap.xml"
grep -q "$POLY_SMS" "$WORK/sms.cap.xml" && grep -q "$POLY_EMPTY" "$WORK/burst.cap.xml" || die "flood.cap.xml's polygon changed"

say "starting sirenad; importing the recipients"
start_sirenad "$SIRENAD"
API=http://127.0.0.1:$PORT
# As setup.sh's import_recipients, but a 503 (sirenad shedding load while Redis is behind, or
# its AOF rewrite) is retried for up to a minute, and any other failure shows sirenad's answer.
import_file() {
  local code
  code=$(curl -s -o "$WORK/import.json" -w '%{http_code}' -X POST -H 'Authorization: Bearer demo-soliera-operator' \
    -H 'Content-Type: application/x-ndjson' --data-binary "@$1" "$API/v1/recipients/import") || code=000
  IMPORT_CODE=$code
  [[ $code == 200 ]]
}
for f in "$WORK"/recipients/*.ndjson; do
  for _ in $(seq 60); do import_file "$f" && break; [[ $IMPORT_CODE == 503 || $IMPORT_CODE == 000 ]] || break; sleep 1; done
  [[ $IMPORT_CODE == 200 ]] || die "import of $f answered $IMPORT_CODE: $(head -c 500 "$WORK/import.json" 2>/dev/null)"
  [[ $(jq '.rejected | length' "$WORK/import.json") == 0 ]] || die "import of $f rejected lines: $(head -c 500 "$WORK/import.json")"
done
AUTH=(-H 'Authorization: Bearer demo-soliera-operator')

# --- helpers ------------------------------------------------------------------------------------
now() { echo "$EPOCHREALTIME"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
stats() { curl -fs --max-time 5 "http://127.0.0.1:$1/stats"; }
# accepted ADMIN_PORT...: messages the simulators accepted, all together (fails if one does not
# answer). One curl, no jq: polled every 20 ms while a fan-out of 100k lasts 2-3 s. /stats keys
# are sorted, so the top-level "accepted" is the one followed by "by_alert".
accepted() {
  local urls=() p out sum=0 n=0 re='"accepted":([0-9]+),"by_alert"'
  for p in "$@"; do urls+=("http://127.0.0.1:$p/stats"); done
  out=$(curl -fs --max-time 5 "${urls[@]}") || return 1
  while [[ $out =~ $re ]]; do sum=$((sum + BASH_REMATCH[1])) n=$((n + 1)); out=${out#*"${BASH_REMATCH[0]}"}; done
  ((n == $#)) || return 1
  echo "$sum"
}
reset_all() { local p; for p in "$APNS_ADMIN" "$FCM_ADMIN" "$SMS_ADMIN"; do curl -fs -X POST -o /dev/null "http://127.0.0.1:$p/reset"; done; }
# until_ok SECONDS CMD...: CMD every 20 ms until it succeeds (0) or the time is up (1).
until_ok() {
  local deadline=$((${EPOCHREALTIME/./} / 1000 + $1 * 1000)); shift  # ms
  until "$@"; do
    (("${EPOCHREALTIME/./}" / 1000 < deadline)) || return 1
    sleep 0.02
  done
}
# post_alert CAP IDENT: sets ID and T_POST (the POST's start)
post_alert() {
  sed "s/IDENTIFIER/$2/" "$1" >"$WORK/post.xml"
  T_POST=$(now)
  local code
  code=$(curl -s -o "$WORK/post.json" -w '%{http_code}' -X POST "${AUTH[@]}" -H 'Content-Type: application/cap+xml' \
    --data-binary "@$WORK/post.xml" "$API/v1/alerts") || code=000
  [[ $code == 202 ]] || die "POST /v1/alerts answered $code: $(cat "$WORK/post.json")"
  ID=$(jq -r .id "$WORK/post.json")
}
# get_alert: GET /v1/alerts/$ID into $WORK/alert.json (fails while sirenad or Redis is down)
get_alert() { curl -fs --max-time 5 "${AUTH[@]}" -o "$WORK/alert.json" "$API/v1/alerts/$ID"; }
state() { jq -r .state "$WORK/alert.json"; }
pending() { jq '[.progress[].pending] | add // 0' "$WORK/alert.json"; }
is_final() { get_alert && [[ $(state) =~ ^(completed|cancelled|expired|superseded)$ ]]; }
is_settled() { is_final && (($(pending) == 0)); }  # a cancelled alert: every message has its outcome
at_least() { local n; n=$(accepted "${@:2}") && ((n >= $1)); }
# resumed A: the simulators have more than A, or the alert is final
resumed() { local n; { n=$(accepted "$APNS_ADMIN" "$FCM_ADMIN") && ((n > $1)); } || is_final; }

ROWS=() FAILED=0
# row SCENARIO PLANNED UNIQUE LOST DUPS PROGRESS RECOVER VERDICT NOTES
row() {
  local IFS='|'
  ROWS+=("| $1 | $2 | $3 | $4 | $5 | $6 | $7 | **$8** | $9 |")
  [[ $8 == OK ]] || FAILED=1
  say "${ROWS[-1]}"
}

# check_alert WANT_STATE: reads the final $WORK/alert.json and the simulators; sets PLANNED, UNIQUE,
# DUPS, LOST, PROG (text), PROG_OK (0/1), and appends what failed to ISSUES.
check_alert() {
  local want=$1 ch port u a
  PLANNED=$(jq '[.progress[].planned] | add // 0' "$WORK/alert.json") UNIQUE=0 DUPS=0 PROG_OK=1 PROG=""
  local st; st=$(state)
  [[ $st == "$want" ]] || ISSUES+=("state $st, not $want")
  for ch in apns fcm sms; do
    port=${ch^^}_ADMIN; port=${!port}
    [[ $(jq ".progress | has(\"$ch\")" "$WORK/alert.json") == true ]] || continue
    stats "$port" >"$WORK/stats-$ch.json" || { ISSUES+=("no /stats from the $ch simulator"); continue; }
    u=$(jq .unique_recipients "$WORK/stats-$ch.json") a=$(jq ".progress.$ch.accepted" "$WORK/alert.json")
    local p; p=$(jq ".progress.$ch.planned" "$WORK/alert.json")
    ((p > 0 || u > 0)) || continue
    UNIQUE=$((UNIQUE + u)) DUPS=$((DUPS + $(jq .duplicates "$WORK/stats-$ch.json")))
    PROG+="${PROG:+, }$ch $a = $u"
    ((a == u)) || { PROG_OK=0; PROG="${PROG% = *} ≠ $u"; ISSUES+=("progress.$ch.accepted $a, the simulator's unique $u"); }
  done
  local pend; pend=$(pending)
  ((pend == 0)) || { PROG_OK=0; ISSUES+=("$st with $pend pending"); }
  PROG="${PROG:-nothing sent}; pending $pend"
  LOST=$((PLANNED - UNIQUE))
}
log_lines() {  # sirenad's warnings and errors since this alert's POST (the last 8), and its own lines
  local since; since=$(date -u -d "@${T_POST%.*}" +%Y-%m-%dT%H:%M:%S)
  { awk -v s="$since" 'match($0, /"ts":"[^"]*"/) && substr($0, RSTART + 6, RLENGTH - 7) >= s' "$WORK/sirenad.log" |
      grep -E '"level":"(warn|error)"' | tail -n 8
    grep -F "\"$ID\"" "$WORK/sirenad.log" | tail -n 5
    # The deliveries that ended without reaching a gateway: their state and reason say why.
    local state
    for state in failed expired cancelled skipped; do
      curl -fs "${AUTH[@]}" "$API/v1/alerts/$ID/deliveries?state=$state&limit=5" | grep -F '"items":[{' |
        sed "s/^/deliveries $state: /"
    done; } | cut -c1-400 >&2 || true
}

join() { local out="" x; for x in "$@"; do out+="${out:+; }$x"; done; echo "$out"; }
within() { awk -v r="$1" -v b="$2" 'BEGIN { exit !(r ~ /^[0-9.]+$/ && r + 0 <= b) }'; }
# first_message_ms: sirenad's dispatch_first_message ms_from_post for $ID (empty until logged)
first_message_ms() { grep -F '"dispatch_first_message"' "$WORK/sirenad.log" | grep -F "\"$ID\"" | head -n 1 | grep -o '"ms_from_post":[0-9]*' | cut -d: -f2; }
logged_first() { [[ -n $(first_message_ms) ]]; }

# push_alert NAME [FAULT_FN]: one alert to every push recipient. FAULT_FN runs once ~20% is
# accepted and sets T_END (when the fault ended); the time to recover is counted from there.
push_alert() {
  local name=$1 fault=${2:-} notes=() want=$((WANT_APNS + WANT_FCM)) bound=0 bound_text="" recover="–"
  ISSUES=()
  reset_all
  post_alert "$CAP_PUSH" "faults-$name-$$-$(date +%s)"
  if [[ -n $fault ]]; then
    until_ok 120 at_least $((want / 5)) "$APNS_ADMIN" "$FCM_ADMIN" || die "$name: 20% not accepted after 120 s"
    local at; at=$(accepted "$APNS_ADMIN" "$FCM_ADMIN")
    notes+=("fault at $at of $want accepted")
    ((at < want)) || ISSUES+=("the fault came after the fan-out: not a test")
    "$fault"
    local a_end; a_end=$(accepted "$APNS_ADMIN" "$FCM_ADMIN" || echo 0)
    if until_ok "$FINAL_TIMEOUT_S" resumed "$a_end"; then recover=$(secs "$T_END" "$(now)"); else recover="> $FINAL_TIMEOUT_S"; fi
    bound=$CRASH_BOUND bound_text="one crash"
  fi
  if [[ $name == burst ]]; then  # the alert right after the burst: its first message
    local ms
    until_ok "$FINAL_TIMEOUT_S" logged_first && ms=$(first_message_ms) || ms=""
    if [[ -n $ms ]]; then recover=$(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }'); else recover="none"; fi
    notes+=("first message ${ms:-never} ms after the POST (≤ $BURST_FIRST_BOUND_MS)")
    [[ -n $ms ]] && ((ms <= BURST_FIRST_BOUND_MS)) || ISSUES+=("first message ${ms:-never} ms after the POST > $BURST_FIRST_BOUND_MS ms")
  fi
  local final_ok=1
  until_ok "$FINAL_TIMEOUT_S" is_final || { final_ok=0; get_alert || true; }
  [[ -s $WORK/alert.json ]] || die "$name: no answer to GET /v1/alerts/$ID"
  local t_final; t_final=$(now)
  notes+=("final after $(secs "$T_POST" "$t_final") s from the POST")
  if [[ -n $fault ]]; then
    local all; all=$(secs "$T_END" "$t_final")
    ((final_ok)) || all="> $FINAL_TIMEOUT_S"
    within "$all" "$RECOVER_BOUND_S" || ISSUES+=("the rest sent $all s after the fault's end > $RECOVER_BOUND_S s")
    recover="$recover; all sent $all"
  fi
  check_alert completed
  ((final_ok)) || ISSUES+=("not final after $FINAL_TIMEOUT_S s")
  if [[ $name == gateway-faults ]]; then
    # A reset connection loses the answers to what was on it: each costs up to that gateway's
    # max_in_flight duplicates. A GOAWAY is graceful (the streams it names are answered).
    local ra rf ga gf r503 r429
    ra=$(jq .resets "$WORK/stats-apns.json") rf=$(jq .resets "$WORK/stats-fcm.json")
    ga=$(jq .goaways "$WORK/stats-apns.json") gf=$(jq .goaways "$WORK/stats-fcm.json")
    r503=$(jq -s 'map(.rejected["503"] // 0) | add' "$WORK/stats-apns.json" "$WORK/stats-fcm.json")
    r429=$(jq -s 'map(.rejected["429"] // 0) | add' "$WORK/stats-apns.json" "$WORK/stats-fcm.json")
    bound=$((ra * APNS_IN_FLIGHT + rf * FCM_IN_FLIGHT)) bound_text="$ra + $rf resets"
    notes=("simulators: $ra + $rf resets, $ga + $gf GOAWAYs, $r503 answered 503, $r429 answered 429" "${notes[@]}")
  fi
  ((PLANNED == want)) || ISSUES+=("planned $PLANNED, but $want recipients are in the area")
  ((LOST == 0)) || ISSUES+=("$LOST lost")
  ((DUPS <= bound)) || ISSUES+=("duplicates $DUPS > $bound")
  [[ -z ${EXTRA_NOTE:-} ]] || notes=("$EXTRA_NOTE" "${notes[@]}")
  [[ -z ${EXTRA_ISSUE:-} ]] || ISSUES+=("$EXTRA_ISSUE")
  local verdict=OK
  if ((${#ISSUES[@]})); then verdict=FAIL; notes+=("FAIL: $(join "${ISSUES[@]}")"); say "$name failed (alert $ID):"; log_lines; fi
  row "$name" "$PLANNED" "$UNIQUE" "$LOST" "$DUPS (≤ $bound${bound_text:+, $bound_text})" \
    "$( ((PROG_OK)) && echo yes || echo NO): $PROG" "$recover" "$verdict" "$(join "${notes[@]}")"
}

# cancel_alert NAME CAP WANT CHANNEL:ADMIN_PORT:BOUND...: cancel once ~20% is accepted; what each
# simulator accepted after the cancel's 200 (read right after it) until the alert is settled
# (cancelled, every message with its outcome) must stay within that gateway's in-flight window.
cancel_alert() {
  local name=$1 cap=$2 want=$3; shift 3
  local gws=("$@") ports=() g notes=() recover
  ISSUES=()
  for g in "${gws[@]}"; do IFS=: read -r _ p _ <<<"$g"; ports+=("$p"); done
  reset_all
  post_alert "$cap" "faults-$name-$$-$(date +%s)"
  until_ok 120 at_least $((want / 5)) "${ports[@]}" || die "$name: 20% not accepted after 120 s"
  local t0 code t200 at=()
  t0=$(now)
  code=$(curl -s -o "$WORK/cancel.json" -w '%{http_code}' -X POST "${AUTH[@]}" "$API/v1/alerts/$ID/cancel") || code=000
  t200=$(now)
  for g in "${gws[@]}"; do IFS=: read -r _ p _ <<<"$g"; at+=("$(accepted "$p")"); done
  (($(IFS=+; echo "$((${at[*]}))") < want)) || ISSUES+=("the cancel came after the fan-out: not a test")
  [[ $code == 200 ]] || ISSUES+=("cancel answered $code: $(head -c 300 "$WORK/cancel.json")")
  local settled=1
  until_ok "$FINAL_TIMEOUT_S" is_settled || { settled=0; get_alert || true; }
  recover="cancel answered in $(awk -v a="$t0" -v b="$t200" 'BEGIN { printf "%.0f", (b - a) * 1000 }') ms; settled after $(secs "$t200" "$(now)") s"
  check_alert cancelled
  ((settled)) || ISSUES+=("not settled (cancelled, pending 0) after $FINAL_TIMEOUT_S s")
  local i=0 after ch p b
  for g in "${gws[@]}"; do
    IFS=: read -r ch p b <<<"$g"
    after=$(( $(accepted "$p") - at[i] ))
    notes+=("$ch: ${at[i]} accepted at the 200, $after after (≤ $b)")
    ((after <= b)) || ISSUES+=("$ch: $after accepted after the cancel's 200 > $b")
    i=$((i + 1))
  done
  ((PLANNED == want)) || ISSUES+=("planned $PLANNED, but $want recipients are in the area")
  ((DUPS == 0)) || ISSUES+=("duplicates $DUPS > 0")
  local verdict=OK
  if ((${#ISSUES[@]})); then verdict=FAIL; notes+=("FAIL: $(join "${ISSUES[@]}")"); say "$name failed (alert $ID):"; log_lines; fi
  row "$name" "$PLANNED" "$UNIQUE" "$LOST (cancelled)" "$DUPS (≤ 0)" \
    "$( ((PROG_OK)) && echo yes || echo NO): $PROG" "$recover" "$verdict" "$(join "${notes[@]}")"
}

# --- the faults ---------------------------------------------------------------------------------
fault_redis_kill() {
  kill -KILL "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true; forget_pid "$REDIS_PID"
  T_END=$(now)
  start_redis
  wait_for redis-server 60 "$REDIS_PID" redis-cli -s "$WORK/redis.sock" ping
}
fault_redis_stop() {
  kill -STOP "$REDIS_PID"
  sleep "$STOP_S"  # the fault itself, longer than redis.command_timeout_ms: the only fixed wait
  kill -CONT "$REDIS_PID"
  T_END=$(now)
}
fault_sirenad_kill() {
  kill -KILL "$SIRENAD_PID"; wait "$SIRENAD_PID" 2>/dev/null || true; SIRENAD_PID=""
  T_END=$(now)
  start_sirenad "$SIRENAD"
}
restart_push_sims() { local p; for p in "${SIM_PIDS[@]}"; do stop_pid "$p"; forget_pid "$p"; done; start_sims "$@"; }

# --- the campaign -------------------------------------------------------------------------------
say "bounds: duplicates per crash $CRASH_BOUND (APNs $APNS_IN_FLIGHT + FCM $FCM_IN_FLIGHT in flight + $MAX_UNCONFIRMED unconfirmed + $WRITE_BACK_BATCH)"
T_START=$SECONDS
want() { [[ " $SCENARIOS " == *" $1 "* ]] && say "$1"; }
! want baseline || push_alert baseline
! want redis-kill || push_alert redis-kill fault_redis_kill
! want redis-stop || push_alert redis-stop fault_redis_stop
! want sirenad-kill || push_alert sirenad-kill fault_sirenad_kill
if want gateway-faults; then
  restart_push_sims --fail 503:0.05 --fail 429:0.01 --goaway-every 500 --reset-every 2000
  push_alert gateway-faults
  restart_push_sims
fi
! want cancel-push ||
  cancel_alert cancel-push "$CAP_PUSH" $((WANT_APNS + WANT_FCM)) "apns:$APNS_ADMIN:$APNS_IN_FLIGHT" "fcm:$FCM_ADMIN:$FCM_IN_FLIGHT"
! want cancel-sms || cancel_alert cancel-sms "$WORK/sms.cap.xml" "$NSMS" "sms:$SMS_ADMIN:$((SMS_IN_FLIGHT * SMS_BATCH))"

if want burst; then
say "burst: ${BURST_S} s of small alerts (wrk, 32 connections)"
# codes: sirena_http_requests_total of POST /v1/alerts, as "CODE COUNT" lines
codes() { curl -fs "$API/metrics" | sed -n 's/^sirena_http_requests_total{\(.*\)} \([0-9.e+]*\)$/\1 \2/p' |
  grep -F 'route="/v1/alerts"' | sed -n 's/.*code="\([0-9]*\)".* \(.*\)$/\1 \2/p'; }
codes >"$WORK/codes-before"
INTAKE_CAP=$WORK/burst.cap.xml INTAKE_RUN="burst-$$-$(date +%s)" \
  wrk -t 2 -c 32 -d "${BURST_S}s" -s "$ROOT/bench/intake.lua" "$API/v1/alerts" >"$WORK/burst.wrk" 2>&1 ||
  { cat "$WORK/burst.wrk" >&2; die "wrk failed"; }
codes >"$WORK/codes-after"
# Per code: after - before.
BURST_CODES=$(awk 'NR == FNR { b[$1] = $2; next } { d = $2 - b[$1]; if (d > 0) printf "%s %d\n", $1, d }' \
  "$WORK/codes-before" "$WORK/codes-after" | sort)
B202=$(awk '$1 == 202 { print $2 }' <<<"$BURST_CODES") B503=$(awk '$1 == 503 { print $2 }' <<<"$BURST_CODES")
B5XX=$(awk '$1 >= 500 && $1 != 503 { s += $2 } END { print s + 0 }' <<<"$BURST_CODES")
EXTRA_NOTE="burst: ${B202:-0} alerts accepted (202) in ${BURST_S} s, ${B503:-0} answered 503, $B5XX other 5xx (must be 0); codes: $(tr '\n' ' ' <<<"$BURST_CODES" | sed 's/ $//; s/ \([0-9]*\) / x\1, /g; s/ \([0-9]*\)$/ x\1/')"
say "$EXTRA_NOTE"
((B5XX == 0)) || EXTRA_ISSUE="$B5XX answers 5xx other than 503 during the burst"
push_alert burst
EXTRA_NOTE="" EXTRA_ISSUE=""
fi

# --- the table ----------------------------------------------------------------------------------
cat <<TABLE

## Sirena fault campaign: $N push recipients ($WANT_APNS APNs, $WANT_FCM FCM), $NSMS phone-only

\`bench/faults/run.sh$( ((SHORT)) && echo " --short") $N\` on $(nproc) cores, loopback, $(date -u '+%Y-%m-%d %H:%M UTC'); load average before: $LOAD_BEFORE; campaign $((SECONDS - T_START)) s.
sirenad built $BUILT; config/demo.yaml with Redis on a unix socket (AOF, appendfsync always),
redis.command_timeout_ms $COMMAND_TIMEOUT_MS, dispatch.max_unconfirmed $MAX_UNCONFIRMED (batch_size $DISPATCH_BATCH, max_batches $MAX_BATCHES), max_in_flight APNs $APNS_IN_FLIGHT and FCM $FCM_IN_FLIGHT
(rate APNs $APNS_RATE, FCM $FCM_RATE a second; 0 = none), SMS kannel profile to \`sirena-sim sms\` (batch $SMS_BATCH, $SMS_IN_FLIGHT in flight, $SMS_RATE/s).
Duplicates bound per crash: $APNS_IN_FLIGHT + $FCM_IN_FLIGHT + $MAX_UNCONFIRMED + $WRITE_BACK_BATCH = $CRASH_BOUND. Time to recover: from the fault's end
(restart issued, SIGCONT) to the simulators' next accepted message (or the alert's final state if none was left), then to the
alert's final state, every message sent ("all sent", bound $RECOVER_BOUND_S s). Burst: from the POST to the first message (bound $BURST_FIRST_BOUND_MS ms).

| scenario | planned | unique received | lost | duplicates (bound) | progress == simulators | time to recover (s) | verdict | notes |
|---|---:|---:|---:|---:|---|---:|---|---|
TABLE
printf '%s\n' "${ROWS[@]}"
if ((FAILED)); then say "FAIL: see the verdicts"; exit 1; fi
exit 0
