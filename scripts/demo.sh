#!/usr/bin/env bash
# The Sirena demo: builds, starts sirenad (which starts its private Redis) with
# config/demo.yaml, sends the sample Secchia flood alert and shows what was stored.
#
#   ./scripts/demo.sh          start (or restart) and send the sample alert
#   ./scripts/demo.sh stop     stop everything the demo started
#
# SIRENA_HTTP_LISTEN=127.0.0.1:PORT moves the API off the default 127.0.0.1:8080.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
run="$root/var/demo"
pidfile="$run/sirenad.pid"
listen=${SIRENA_HTTP_LISTEN:-127.0.0.1:8080}
base="http://$listen"
operator_key=demo-soliera-operator

say() { printf '\033[1m%s\033[0m\n' "$*"; }

stop_demo() {
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    say "Stopping sirenad (pid $pid) and its Redis..."
    kill -TERM "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then echo "sirenad did not stop within 30 s; see $run/sirenad.log" >&2; exit 1; fi
  fi
  rm -f "$pidfile"
}

if [ "${1:-}" = "stop" ]; then
  stop_demo
  say "Demo stopped. Alerts stay in var/redis for the next run."
  exit 0
fi

say "1/4 Installing missing packages and building..."
./scripts/deps.sh
cmake -S . -B build -G Ninja >/dev/null
ninja -C build sirenad >/dev/null

say "2/4 Starting sirenad with config/demo.yaml on $base (Redis data under var/redis)..."
stop_demo
mkdir -p "$run"
SIRENA_HTTP_LISTEN="$listen" nohup build/bin/sirenad --config config/demo.yaml >"$run/sirenad.log" 2>&1 &
echo $! >"$pidfile"
ready=0
for _ in $(seq 1 200); do
  if curl -fs "$base/readyz" >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$(cat "$pidfile")" 2>/dev/null || break
  sleep 0.1
done
if [ $ready -ne 1 ]; then
  echo "sirenad did not become ready; its log:" >&2
  tail -n 20 "$run/sirenad.log" >&2
  exit 1
fi

say "3/4 Sending the sample flood alert (config/examples/secchia-flood.cap.xml) as soliera's operator..."
# A fresh identifier and sent time per run, so each run is a new alert rather than a
# repeat of the last one (the same sender+identifier+sent is answered 200 with the old alert).
stamp=$(date -u +%Y%m%dT%H%M%S)
now=$(date -u +%Y-%m-%dT%H:%M:%S+00:00)
body=$(sed -e "s|<identifier>soliera-2026-secchia-0001</identifier>|<identifier>soliera-secchia-$stamp</identifier>|" \
           -e "s|<sent>[^<]*</sent>|<sent>$now</sent>|" config/examples/secchia-flood.cap.xml)
reply=$(curl -s -X POST "$base/v1/alerts" -H "Authorization: Bearer $operator_key" \
  -H 'Content-Type: application/cap+xml' --data-binary "$body")
echo "$reply" | jq .
id=$(echo "$reply" | jq -r '.id // empty')
[ -n "$id" ] || { echo "the alert was not accepted" >&2; exit 1; }

say "4/4 The stored alert:"
curl -s "$base/v1/alerts/$id" -H "Authorization: Bearer $operator_key" |
  jq '{id, state, status, msg_type, test, sender, identifier, sent, received_at, submitted_by,
       headline: .alert.infos[0].headline, areas: [.alert.infos[0].areas[].desc]}'

cat <<EOT

Sirena is running (pid $(cat "$pidfile")); log: var/demo/sirenad.log
  list alerts:   curl -s $base/v1/alerts -H 'Authorization: Bearer $operator_key' | jq .
  original CAP:  curl -s $base/v1/alerts/$id -H 'Authorization: Bearer $operator_key' -H 'Accept: application/cap+xml'
  cancel it:     curl -s -X POST $base/v1/alerts/$id/cancel -H 'Authorization: Bearer $operator_key' | jq .
  metrics:       curl -s $base/metrics | grep ^sirena_
Stop everything with: ./scripts/demo.sh stop
EOT
