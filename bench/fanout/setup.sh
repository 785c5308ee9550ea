# shellcheck shell=bash
# The fan-out set-up that ab.sh and seq.sh share, as run.sh's: N push recipients generated
# (70% APNs, 30% FCM), Redis on a unix socket with the AOF (APPENDFSYNC), sirena-sim apns and
# fcm over h2c (APNs over TLS with TLS=1, a self-signed certificate that sirenad verifies),
# sirenad with the demo config pointed at them. Sourced after bench/lib.sh, with HERE, ROOT,
# WORK, N, SIM, APPENDFSYNC and FCM_RATE set; sets WANT_APNS, WANT_FCM, REDIS_PID, SIM_PIDS
# and the ports.

field() { node -e 'const o = JSON.parse(require("fs").readFileSync(0)); console.log(o[process.argv[1]] ?? "")' "$1"; }

mkdir -p "$WORK/recipients" "$WORK/redis"
read -r WANT_APNS WANT_FCM < <(node "$HERE/gen.js" recipients "$N" "$WORK/recipients" 50000)
redis-server --port 0 --unixsocket "$WORK/redis.sock" --unixsocketperm 700 --dir "$WORK/redis" --appendonly yes \
  --appendfsync "$APPENDFSYNC" --save "" --daemonize no --logfile "$WORK/redis.log" &
REDIS_PID=$!; PIDS+=("$REDIS_PID")
wait_for redis-server 30 "$REDIS_PID" redis-cli -s "$WORK/redis.sock" ping
APNS_PORT=$(free_port) APNS_ADMIN=$(free_port) FCM_PORT=$(free_port) FCM_ADMIN=$(free_port) PORT=$(free_port)

APNS_TLS=() APNS_SCHEME=http APNS_OVER=h2c SIRENAD_TLS=()
if [[ ${TLS:-} == 1 ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
  APNS_TLS=(--tls "$WORK/cert.pem" "$WORK/key.pem") APNS_SCHEME=https APNS_OVER=TLS SIRENAD_TLS=(SSL_CERT_FILE="$WORK/cert.pem")
fi

SIM_PIDS=()
start_sims() {  # start_sims [SIM]: the simulators, from $SIM unless another binary is named
  local sim=${1:-$SIM}
  "$sim" apns --listen "127.0.0.1:$APNS_PORT" --admin "127.0.0.1:$APNS_ADMIN" "${APNS_TLS[@]}" >>"$WORK/apns.log" 2>&1 &
  SIM_PIDS=("$!")
  "$sim" fcm --listen "127.0.0.1:$FCM_PORT" --admin "127.0.0.1:$FCM_ADMIN" >>"$WORK/fcm.log" 2>&1 & SIM_PIDS+=("$!")
  PIDS+=("${SIM_PIDS[@]}")
  wait_for "sirena-sim apns" 30 "${SIM_PIDS[0]}" curl -fs "http://127.0.0.1:$APNS_ADMIN/stats"
  wait_for "sirena-sim fcm" 30 "${SIM_PIDS[1]}" curl -fs "http://127.0.0.1:$FCM_ADMIN/stats"
}
stop_sims() { local p; for p in "${SIM_PIDS[@]}"; do stop_pid "$p"; forget_pid "$p"; done; SIM_PIDS=(); }
reset_sims() { local a; for a in "$APNS_ADMIN" "$FCM_ADMIN"; do curl -fs -X POST -o /dev/null "http://127.0.0.1:$a/reset"; done; }

start_sirenad() {  # start_sirenad BIN: as run.sh, the demo config, from the repository root
  (cd "$ROOT" && exec env SIRENA_HTTP_LISTEN="127.0.0.1:$PORT" SIRENA_REDIS_URL="unix://$WORK/redis.sock" \
    SIRENA_GATEWAYS_APNS_URL="$APNS_SCHEME://127.0.0.1:$APNS_PORT" "${SIRENAD_TLS[@]}" SIRENA_GATEWAYS_FCM_URL="http://127.0.0.1:$FCM_PORT" \
    SIRENA_GATEWAYS_FCM_TOKEN_URL="http://127.0.0.1:$FCM_PORT/token" SIRENA_GATEWAYS_FCM_RATE="$FCM_RATE" \
    SIRENA_TENANTS_SOLIERA_APPROVAL_MIN_RECIPIENTS=1000000000 "$1" --config config/demo.yaml) >>"$WORK/sirenad.log" 2>&1 &
  SIRENAD_PID=$!
  LOG=$WORK/sirenad.log wait_for sirenad 600 "$SIRENAD_PID" curl -fs "http://127.0.0.1:$PORT/readyz"
}
stop_sirenad() { stop_pid "$SIRENAD_PID"; SIRENAD_PID=""; }

import_recipients() {  # through the running sirenad, 50,000 a request
  local f
  for f in "$WORK"/recipients/*.ndjson; do
    curl -fs -o /dev/null -X POST -H 'Authorization: Bearer demo-soliera-operator' -H 'Content-Type: application/x-ndjson' \
      --data-binary "@$f" "http://127.0.0.1:$PORT/v1/recipients/import" || die "import of $f failed"
  done
}
