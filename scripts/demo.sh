#!/usr/bin/env bash
# The Sirena demo: builds, starts the gateway simulators and sirenad (which starts its
# private Redis) with config/demo.yaml, loads two sample towns, sends the sample Secchia
# flood alert, approves it as the second person, shows live progress and the result.
#
#   ./scripts/demo.sh          start (or restart) and run the demo
#   ./scripts/demo.sh stop     stop everything the demo started
#
# SIRENA_HTTP_LISTEN=127.0.0.1:PORT moves the API off the default 127.0.0.1:8080.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
run="$root/var/demo"
listen=${SIRENA_HTTP_LISTEN:-127.0.0.1:8080}
base="http://$listen"
operator_key=demo-soliera-operator
approver_key=demo-soliera-approver

say() { printf '\033[1m%s\033[0m\n' "$*"; }

stop_pid() {  # name
  local f="$run/$1.pid" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then echo "$1 (pid $pid) did not stop within 30 s" >&2; return 1; fi
  fi
  rm -f "$f"
}

stop_demo() {
  stop_pid sirenad
  for s in apns fcm sms; do stop_pid "sim-$s"; done
}

wait_http() {  # url, what
  for _ in $(seq 1 300); do
    if curl -fs "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "$2 did not come up; see $run/*.log" >&2
  exit 1
}

if [ "${1:-}" = "stop" ]; then
  say "Stopping the demo..."
  stop_demo
  say "Demo stopped. Alerts and citizens stay in var/redis for the next run."
  exit 0
fi

say "1/7 Installing missing packages and building..."
./scripts/deps.sh
cmake -S . -B build -G Ninja >/dev/null
ninja -C build sirenad sirena-sim sirena >/dev/null

say "2/7 Starting the APNs, FCM and SMS simulators (127.0.0.1:18101-18103)..."
stop_demo
mkdir -p "$run"
port=18101
for s in apns fcm sms; do
  admin=$((port + 10))
  # Realistic gateway latency, so that the fan-out takes long enough to watch. The SMS
  # simulator checks the demo's sendsms user and sends delivery reports back, like Kannel.
  extra=()
  [ "$s" = sms ] && extra=(--username sirena --password demo --dlr)
  nohup build/bin/sirena-sim "$s" --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" --latency-ms 20,150 \
    "${extra[@]}" >"$run/sim-$s.log" 2>&1 &
  echo $! >"$run/sim-$s.pid"
  wait_http "http://127.0.0.1:$admin/stats" "sirena-sim $s"
  port=$((port + 1))
done

say "3/7 Starting sirenad with config/demo.yaml on $base (Redis data under var/redis)..."
SIRENA_HTTP_LISTEN="$listen" SIRENA_GATEWAYS_SMS_DLR_URL="$base" nohup build/bin/sirenad --config config/demo.yaml >"$run/sirenad.log" 2>&1 &
echo $! >"$run/sirenad.pid"
for _ in $(seq 1 600); do
  curl -fs "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "$(cat "$run/sirenad.pid")" 2>/dev/null || { tail -n 20 "$run/sirenad.log" >&2; exit 1; }
  sleep 0.1
done
curl -fs "$base/readyz" >/dev/null || { echo "sirenad did not become ready; see var/demo/sirenad.log" >&2; exit 1; }

say "4/7 Loading the sample towns: 12,000 citizens of Soliera and 3,000 of Bastiglia..."
# Citizens spread over each town; 70% with the app on iPhone, 30% on Android, most with
# a phone number; 1 in 10 English speakers. Generated the same way every time (srand 42).
make_town() {  # prefix count lat0 lat1 lon0 lon1 seed
  awk -v p="$1" -v n="$2" -v la0="$3" -v la1="$4" -v lo0="$5" -v lo1="$6" -v seed="$7" 'BEGIN {
    srand(seed);
    topics[0] = "\"Met\""; topics[1] = "\"Met\",\"viabilita\""; topics[2] = "\"Safety\""; topics[3] = "\"Geo\",\"Met\"";
    for (i = 0; i < n; i++) {
      lat = la0 + rand() * (la1 - la0); lon = lo0 + rand() * (lo1 - lo0);
      lang = (i % 10 == 0) ? "en" : "it";
      if (i % 10 < 7) push = sprintf("{\"platform\":\"apns\",\"app\":\"it.comune.soliera.app\",\"token\":\"%08x%056d\"}", seed, i);
      else push = sprintf("{\"platform\":\"fcm\",\"app\":\"soliera-app\",\"token\":\"demo-%s-%d-%0120d\"}", p, i, 0);
      phone = (i % 5 == 4) ? "" : sprintf(",\"phone\":\"+39333%07d\"", seed * 100000 + i);
      printf "{\"id\":\"%s-%06d\",\"language\":\"%s\",\"topics\":[%s],\"push\":[%s]%s,\"locations\":[{\"lat\":%.5f,\"lon\":%.5f,\"label\":\"home\"}]}\n",
        p, i, lang, topics[i % 4], push, phone, lat, lon;
    }
  }'
}
make_town soliera 12000 44.725 44.770 10.900 10.975 42 >"$run/soliera.ndjson"
make_town bastiglia 3000 44.715 44.740 10.980 11.005 43 >"$run/bastiglia.ndjson"
SIRENA_URL="$base" build/bin/sirena --key "$operator_key" import "$run/soliera.ndjson" | jq -c '{imported, rejected: (.rejected | length)}'
SIRENA_URL="$base" build/bin/sirena --key demo-bastiglia-operator import "$run/bastiglia.ndjson" | jq -c '{imported, rejected: (.rejected | length)}'

say "5/7 Previewing the flood alert (config/examples/secchia-flood.cap.xml)..."
# A fresh identifier and sent time per run: the same sender+identifier+sent is answered
# 200 with the alert of the earlier run.
stamp=$(date -u +%Y%m%dT%H%M%S)
now=$(date -u +%Y-%m-%dT%H:%M:%S+00:00)
sed -e "s|<identifier>soliera-2026-secchia-0001</identifier>|<identifier>soliera-secchia-$stamp</identifier>|" \
    -e "s|<sent>[^<]*</sent>|<sent>$now</sent>|" config/examples/secchia-flood.cap.xml >"$run/flood.cap.xml"
SIRENA_URL="$base" build/bin/sirena --key "$operator_key" preview "$run/flood.cap.xml" |
  jq '{recipients, by_channel, by_language, by_tenant, unreachable, sms: [.sms[] | {language, encoding, segments, text}]}'

say "6/7 Sending it as Soliera's operator; it reaches over 1000 people, so a second person approves it..."
reply=$(SIRENA_URL="$base" build/bin/sirena --key "$operator_key" send "$run/flood.cap.xml")
echo "$reply" | jq -c '{id, state, recipients}'
id=$(echo "$reply" | jq -r .id)
if [ "$(echo "$reply" | jq -r .state)" = "pending_approval" ]; then
  SIRENA_URL="$base" build/bin/sirena --key "$approver_key" approve "$id" | jq -c '{id, state, approved_by: "soliera-approver"}'
fi

say "7/7 Fan-out progress:"
start=$(date +%s.%N)
state=""
for _ in $(seq 1 1200); do
  a=$(curl -s "$base/v1/alerts/$id" -H "Authorization: Bearer $operator_key")
  state=$(echo "$a" | jq -r .state)
  read -r planned done_ < <(echo "$a" | jq -r '[.progress[] | .planned] as $p | [.progress[] | (.accepted + .delivered + .failed + .expired + .cancelled + .skipped)] as $d | "\($p | add // 0) \($d | add // 0)"')
  pct=$(( planned > 0 ? done_ * 100 / planned : 100 ))
  bar=$(printf '%*s' $((pct / 2)) '' | tr ' ' '#')
  printf '\r  [%-50s] %3d%%  %d/%d messages  %s   ' "$bar" "$pct" "$done_" "$planned" "$state"
  case "$state" in completed|cancelled|expired|superseded) break ;; esac
  sleep 0.1  # the refresh interval of the bar
done
echo
elapsed=$(echo "$(date +%s.%N) - $start" | bc 2>/dev/null || echo "?")
curl -s "$base/v1/alerts/$id" -H "Authorization: Bearer $operator_key" |
  jq '{id, state, status, recipients, progress: (.progress | map_values({planned, accepted, delivered, failed, pending}))}'
echo "  simulators: apns $(curl -s http://127.0.0.1:18111/stats | jq -c '{accepted, duplicates}')," \
     "fcm $(curl -s http://127.0.0.1:18112/stats | jq -c '{accepted, duplicates}')," \
     "sms $(curl -s http://127.0.0.1:18113/stats | jq -c '{accepted, duplicates}')"
echo "  (Extreme alerts go on every channel at once; SMS delivery reports keep arriving after 100%.)"

cat <<EOT

Sirena is running; logs in var/demo/. Try:
  follow an alert:  curl -sN $base/v1/alerts/$id/events -H 'Authorization: Bearer $operator_key'
  deliveries:       curl -s '$base/v1/alerts/$id/deliveries?state=accepted&limit=5' -H 'Authorization: Bearer $operator_key' | jq .
  the CLI:          SIRENA_URL=$base SIRENA_KEY=$operator_key build/bin/sirena list
  metrics:          curl -s $base/metrics | grep ^sirena_
Stop everything with: ./scripts/demo.sh stop
EOT
