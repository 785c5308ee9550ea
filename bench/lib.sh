# shellcheck shell=bash disable=SC2034  # (HZ and PIDS are for the scripts that source this)
# Shell helpers shared by the benchmarks' run.sh scripts. Sourced, not run:
#
#   BENCH=sms; source "$ROOT/bench/lib.sh"; WORK=$(mktemp -d /tmp/sirena-sms.XXXXXX); trap cleanup EXIT
#
# The caller sets BENCH (the prefix of its messages) and WORK (its work directory), appends
# every process it starts to PIDS, and keeps the running sirenad in SIRENAD_PID (stopped
# first: it holds connections to the others). cleanup stops them all by pid, in reverse
# order, then removes WORK unless KEEP=1.

die() { echo "$BENCH: $*" >&2; exit 1; }
say() { echo "$BENCH: $*" >&2; }

PIDS=()
SIRENAD_PID=""
stop_pid() {  # stop_pid PID: TERM, up to 5 s, then KILL
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
forget_pid() {  # forget_pid PID: a process stopped and waited for here leaves PIDS
  local keep=() p
  for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
cleanup() {
  [[ -z $SIRENAD_PID ]] || stop_pid "$SIRENAD_PID"
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
  [[ -n ${WORK:-} ]] || return 0
  if [[ ${KEEP:-0} == 1 ]]; then say "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}

# copy_bins BIN...: copies sirenad builds to $WORK/bin, so that every round runs the same
# binaries even if a tree is rebuilt meanwhile; sets BINS (the copies) and NAMES (for tables).
copy_bins() {
  mkdir -p "$WORK/bin"
  BINS=() NAMES=()
  local b
  for b in "$@"; do
    [[ -x $b ]] || die "$b is not executable"
    BINS+=("$WORK/bin/sirenad-${#BINS[@]}"); cp "$b" "${BINS[-1]}"
    NAMES+=("$b (built $(date -u -r "$b" '+%H:%M UTC'))")
  done
}

# free_port: a port below the kernel's ephemeral range that binds now. The kernel hands
# ephemeral ports to every connect() and bind(0) (the simulators, redis-cli, curl), so a
# port it picked for us could be taken again before the daemon binds it ("address already
# in use" once in faults.short); below that range only an explicit bind takes it.
free_port() {
  python3 - <<'PY'
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(200):
    port = random.randrange(max(1024, low - 20000), low)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit("free_port: no free port below the ephemeral range")
PY
}
wait_for() {  # wait_for WHAT SECONDS PID CMD...: poll CMD every 50 ms while PID lives
  local what=$1 secs=$2 pid=$3; shift 3
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { [[ -z ${LOG:-} ]] || tail -n 5 "$LOG" >&2; die "$what exited during start-up"; }
    ((SECONDS < deadline)) || die "$what not ready after $secs s"
    sleep 0.05
  done
}

# CPU accounting from /proc, in clock ticks (HZ a second).
HZ=$(getconf CLK_TCK)
cpu_ticks() { local s; s=$(<"/proc/$1/stat"); set -- ${s##*) }; echo $(( ${12} + ${13} )); }  # utime + stime
busy_ticks() { local _c u n s i w x y z _r; read -r _c u n s i w x y z _r </proc/stat; echo $((u + n + s + x + y + z)); }

# settle_redis SOCK: rewrite Redis's AOF now and wait until no background save or rewrite
# runs: an import's rewrite, started by the AOF's growth, would otherwise share the cores
# with the alert being measured (its child process is not Redis's CPU in the tables).
# Then the rewrite's aftermath: Redis unlinks the replaced files in a background thread, and
# the kernel writes back the new one; an alert started meanwhile waited 20-30 ms more for
# its first fsyncs (seen in about one round in three of ab.sh).
redis_busy() {
  redis-cli -s "$1" info persistence | tr -d '\r' |
    awk -F: '/^(aof_rewrite_in_progress|aof_rewrite_scheduled|rdb_bgsave_in_progress):/ { busy += $2 } END { exit busy == 0 }'
}
settle_redis() {
  redis-cli -s "$1" bgrewriteaof >/dev/null 2>&1 || true  # refused while one runs: then that one is waited for
  local deadline=$((SECONDS + 300))
  while redis_busy "$1"; do ((SECONDS < deadline)) || die "Redis still rewriting its AOF after 300 s"; sleep 0.1; done
  local dir; dir=$(redis-cli -s "$1" config get dir | sed -n 2p)/$(redis-cli -s "$1" config get appenddirname | sed -n 2p)
  # The manifest, the base and the incremental file stay; the replaced ones go.
  while [[ -d $dir ]] && (($(find "$dir" -maxdepth 1 -type f | wc -l) > 3)); do
    ((SECONDS < deadline)) || die "Redis still removing its old AOF files after 300 s"; sleep 0.1
  done
  sync
}
